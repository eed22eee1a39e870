"""Run a claim's experiment: sweeps over model variants, step-level records, timing.

The chapters that test what batch normalization is claimed to do train many
small variants of one model and compare them. This module holds the parts
those chapters share, so that none writes its own loop twice:

* :func:`run_sweep` trains a list of :class:`Variant` objects, each from the
  same seed, and returns a *tidy table*: one ``dict`` per variant with its
  settings and its measured results (accuracy and loss in inference mode on
  the training, validation and test data, time, divergence). Variants that
  share no compiled model train side by side in threads, with the numbers
  of a run one at a time.
* :class:`StepRecorder` is a Keras callback that evaluates probes every
  ``every`` optimizer steps (validation accuracy, percentiles of a hidden
  unit, ...) and keeps the training time spent so far, without the probe time.
* :func:`evaluate` measures loss and accuracy in **inference mode** (BN uses
  its moving statistics), without compiling anything, and survives a diverged
  model whose weights are NaN.
* :func:`gaussian_kernels` redraws a model's kernels at a chosen scale, and
  :func:`kernel_gradient_norms` measures the gradient reaching each layer.
* :func:`interleaved_step_times` times training steps, fairly between
  models on a busy machine.
* :func:`steps_to_reach`, :func:`column` and :func:`rows_where` are small
  helpers for reading results.

Everything here is plain NumPy and Keras; tables are lists of dicts, so no
data-frame library is needed.
"""

from __future__ import annotations

import gc
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bnbook.parallel import default_workers
from bnbook.probes import warm_times
from bnbook.training import compile_sgd, image_batches, predict_proba, seed_lock, set_seed

__all__ = [
    "Probe",
    "StepRecorder",
    "Variant",
    "column",
    "evaluate",
    "gaussian_kernels",
    "interleaved_step_times",
    "kernel_gradient_norms",
    "rows_where",
    "run_sweep",
    "steps_to_reach",
]

#: A probe maps the model being trained to a number or an array.
Probe = Callable[[keras.Model], Any]

Split = tuple[np.ndarray, np.ndarray]


# --------------------------------------------------------------------------- evaluation
def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray, *,
             batch_size: int = 2048) -> tuple[float, float]:
    """``(loss, accuracy)`` of a softmax classifier in inference mode.

    The loss is the mean sparse categorical cross-entropy. A model whose
    outputs are not finite (a diverged run) gets ``loss = nan`` and the
    accuracy of its arg-max, which for all-NaN outputs is the share of class 0.
    """
    probs = predict_proba(model, x, batch_size=batch_size)
    picked = probs[np.arange(len(y)), np.asarray(y, dtype=np.int64)]
    if not np.all(np.isfinite(probs)):
        loss = math.nan
    else:
        loss = float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))
    acc = float(np.mean(np.argmax(probs, axis=-1) == y))
    return loss, acc


# --------------------------------------------------------------------------- recording
class StepRecorder(keras.callbacks.Callback):
    """Evaluate ``probes`` every ``every`` optimizer steps (and before step 1).

    ``records`` maps names to lists, one entry per evaluation:

    * ``"step"``: optimizer steps taken so far;
    * ``"seconds"``: training wall time so far, *excluding* the time spent in
      the probes, so curves can be drawn against steps or against seconds;
    * ``"batch_loss"``, ``"batch_accuracy"`` (for each name in ``log_metrics``,
      prefixed with ``batch_``): the mean of that training metric over the
      mini-batches since the previous record, as the optimizer saw them
      (batch statistics, weights changing); ``nan`` at step 0;
    * one entry per probe.

    Keras calls batch-level callbacks once per ``steps_per_execution`` steps,
    so the recorder reads the step count from ``optimizer.iterations`` and
    evaluates whenever it has passed the next multiple of ``every``. Compile
    with ``steps_per_execution`` dividing ``every`` to record exactly on the
    multiples. Keras logs a running mean over the epoch; the recorder turns it
    back into means over the steps between two records.

    Set ``stop_on_nan`` to end training as soon as the training loss is not
    finite: a diverged run cannot come back, and going on only costs time.
    """

    def __init__(self, probes: Mapping[str, Probe], every: int, *,
                 log_metrics: Sequence[str] = ("loss", "accuracy"),
                 stop_on_nan: bool = False) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be a positive number of steps, got {every}")
        self.probes = dict(probes)
        self.every = int(every)
        self.log_metrics = tuple(log_metrics)
        self.stop_on_nan = stop_on_nan
        self.records: dict[str, list[Any]] = {"step": [], "seconds": []}
        self.records.update({f"batch_{m}": [] for m in self.log_metrics})
        self.records.update({name: [] for name in self.probes})
        self.diverged = False
        self._next = 0
        self._train_seconds = 0.0
        self._since = 0.0
        self._epoch_steps = 0                      # steps logged so far in this epoch
        self._epoch_means: dict[str, float] = {}   # Keras' running means at that point
        self._sums = dict.fromkeys(self.log_metrics, 0.0)
        self._count = 0

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def _record(self, step: int) -> None:
        self.records["step"].append(step)
        self.records["seconds"].append(self._train_seconds)
        for metric in self.log_metrics:
            mean = self._sums[metric] / self._count if self._count else math.nan
            self.records[f"batch_{metric}"].append(mean)
        self._sums = dict.fromkeys(self.log_metrics, 0.0)
        self._count = 0
        for name, probe in self.probes.items():
            self.records[name].append(probe(self.model))

    def _accumulate(self, batch: int, logs: Mapping[str, Any]) -> None:
        """Add the steps since the last call to the sums, from Keras' running means."""
        steps = batch + 1
        new = steps - self._epoch_steps
        if new <= 0:
            return
        for metric in self.log_metrics:
            if metric in logs:
                mean = float(logs[metric])
                total = mean * steps - self._epoch_means.get(metric, 0.0) * self._epoch_steps
                self._sums[metric] += total
                self._epoch_means[metric] = mean
        self._count += new
        self._epoch_steps = steps

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._since = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_steps = 0
        self._epoch_means = {}

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if not self.records["step"]:
            self._record(self._step())          # the untrained model
            self._next = self._step() + self.every
            self._since = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now = time.perf_counter()
        self._train_seconds += now - self._since
        logs = logs or {}
        self._accumulate(batch, logs)
        loss = logs.get("loss")
        if self.stop_on_nan and loss is not None and not np.isfinite(float(loss)):
            self.diverged = True
            self.model.stop_training = True
        step = self._step()
        if step >= self._next or self.model.stop_training:
            self._record(step)
            while self._next <= step:
                self._next += self.every
        self._since = time.perf_counter()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._count:                          # steps after the last multiple of every
            self._record(self._step())

    def arrays(self) -> dict[str, np.ndarray]:
        """The records as NumPy arrays (probe values stacked along axis 0)."""
        return {name: np.asarray(values) for name, values in self.records.items()}


class _NanStop(keras.callbacks.Callback):
    """End training when the loss stops being finite, and remember that it did
    (Keras' ``TerminateOnNaN`` stops too, but does not report it)."""

    def __init__(self) -> None:
        super().__init__()
        self.diverged = False

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.diverged = True
            self.model.stop_training = True


# --------------------------------------------------------------------------- sweeps
@dataclass
class Variant:
    """One model to train in a sweep.

    ``build`` returns a fresh, uncompiled model; it is called after seeding,
    so the same seed gives the same initial weights. ``settings`` are copied
    into the variant's row of the table (e.g. ``{"norm": "batch", "lr": 0.1}``).
    With ``record_every > 0`` a :class:`StepRecorder` records the mini-batch
    loss and accuracy and evaluates ``probes`` every ``record_every`` steps;
    its records land in the row under ``"curve"``. Choose ``record_every`` as a
    multiple of 64 or a divisor of it: the model is compiled with
    ``steps_per_execution = gcd(64, record_every)``, and few steps per
    execution make training slower.

    Variants with the same ``arch`` (any hashable name for "this architecture")
    share one compiled model: :func:`run_sweep` builds and compiles it once,
    and before each of them restores the initial weights (or lets
    ``initialize(model)`` set them), resets the optimizer and assigns the
    learning rate. Results are the same as building afresh from the same
    seed, but Keras traces the training step once instead of once per
    variant, which in a sweep of small models saves most of the time.

    ``seed``, when given, replaces the sweep's seed for this variant (initial
    weights and batch order), so one sweep can repeat a model over seeds and
    still share its compiled training step.

    ``steps`` trains for exactly that many optimizer steps (make it a multiple
    of 64 for speed: steps per execution must divide it), in one Keras epoch
    over the training data repeated (reshuffled on each pass), instead of
    ``epochs`` passes. Use it for many short epochs, such as full-batch
    training (``batch_size`` = the number of examples), where Keras' fixed
    cost per epoch would dominate.
    """

    label: str
    build: Callable[[], keras.Model]
    learning_rate: float
    epochs: int = 1
    batch_size: int = 32
    settings: dict[str, Any] = field(default_factory=dict)
    probes: Mapping[str, Probe] = field(default_factory=dict)
    record_every: int = 0
    momentum: float = 0.0
    arch: Any = None
    initialize: Callable[[keras.Model], None] | None = None
    steps: int | None = None
    seed: int | None = None


def run_sweep(variants: Iterable[Variant], train: Split, *,
              valid: Split | None = None, test: Split | None = None,
              seed: int = 0, stop_on_nan: bool = True, shuffle: bool = True,
              evaluate_train: bool = True, keep_models: bool = False,
              verbose: bool = True, workers: int | None = None) -> list[dict[str, Any]]:
    """Train each variant from ``seed`` with SGD and return one row per variant.

    Each row holds ``label``, the variant's ``settings``, ``seed``, ``learning_rate``,
    ``epochs``, ``batch_size``, ``steps`` (optimizer steps actually taken),
    ``seconds`` (wall time of ``fit``), ``diverged`` (the training loss stopped
    being finite), and ``{split}_loss`` / ``{split}_accuracy`` measured in
    inference mode by :func:`evaluate` for ``train`` (unless
    ``evaluate_train=False``, which saves time in large sweeps) and, when
    given, ``valid`` and ``test``. With probes, ``curve`` holds the recorder's arrays;
    with ``keep_models``, ``model`` holds the trained model (do not combine
    with a shared ``arch``: later variants retrain that model).

    Training accuracy is measured again after training, in inference mode, and
    not read from Keras' history (an average over the epoch, computed with
    batch statistics while the weights were still changing).

    Variants that share no compiled model train side by side, in up to
    ``workers`` threads (default :func:`bnbook.parallel.default_workers`):
    a small model keeps about one core busy. Each variant is seeded, built
    and given its shuffled batches under one lock, so its numbers are the same
    whichever thread trains it, and the same with ``workers=1``; only
    ``seconds`` then counts time shared with the other threads.
    """
    variants = list(variants)
    groups: dict[Any, list[int]] = {}
    for index, variant in enumerate(variants):
        groups.setdefault(_shared_model_key(variant) or ("alone", index), []).append(index)
    sweep = _Sweep(train, valid=valid, test=test, seed=seed, stop_on_nan=stop_on_nan,
                   shuffle=shuffle, evaluate_train=evaluate_train,
                   keep_models=keep_models, verbose=verbose)
    rows: dict[int, dict[str, Any]] = {}
    workers = min(workers or default_workers(), len(groups)) or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(sweep.run_group, [variants[i] for i in indices])
                   for indices in groups.values()]
        for indices, future in zip(groups.values(), futures):
            rows.update(zip(indices, future.result()))
    del sweep
    keras.backend.clear_session(free_memory=False)
    gc.collect()   # the traced functions of many short-lived models add up (~0.2 s per collection)
    return [rows[i] for i in range(len(variants))]


def _steps_per_execution(variant: Variant) -> int:
    """64, or less so that it divides ``record_every`` and ``steps``: Keras would run a whole
    execution past a record or past ``steps_per_epoch``."""
    steps_per_execution = 64
    if variant.record_every:
        steps_per_execution = math.gcd(steps_per_execution, variant.record_every)
    if variant.steps:
        steps_per_execution = math.gcd(steps_per_execution, variant.steps)
    return steps_per_execution


def _shared_model_key(variant: Variant) -> tuple | None:
    """Variants with the same key train one compiled model, one after the other."""
    if variant.arch is None:
        return None
    return (variant.arch, variant.momentum, _steps_per_execution(variant))


class _Sweep:
    """Trains the variants of one :func:`run_sweep` call; its threads share one instance."""

    def __init__(self, train: Split, *, valid: Split | None, test: Split | None, seed: int,
                 stop_on_nan: bool, shuffle: bool, evaluate_train: bool, keep_models: bool,
                 verbose: bool) -> None:
        self.train = train   # tensors once for all variants: tf.data then feeds Keras without copies
        self.train_tensors = (tf.convert_to_tensor(train[0]), tf.convert_to_tensor(train[1]))
        self.valid, self.test, self.seed = valid, test, seed
        self.stop_on_nan, self.shuffle = stop_on_nan, shuffle
        self.evaluate_train, self.keep_models, self.verbose = evaluate_train, keep_models, verbose
        self.thread_state = threading.local()

    def run_group(self, variants: list[Variant]) -> list[dict[str, Any]]:
        """Train ``variants`` one after the other; those of a group share one compiled model."""
        if getattr(self.thread_state, "trained", False):
            gc.collect()   # this thread's previous model and its traced steps: free them first
        self.thread_state.trained = True
        model: keras.Model | None = None
        initial_weights: dict[int, list[np.ndarray]] = {}
        rows = []
        for variant in variants:
            with seed_lock:   # seed, build and shuffle as one step
                model = self._prepare(variant, model, initial_weights)
                batches = self._batches(variant)
            rows.append(self._train(variant, model, batches))
        return rows

    def _seed_of(self, variant: Variant) -> int:
        return self.seed if variant.seed is None else variant.seed

    def _prepare(self, variant: Variant, model: keras.Model | None,
                 initial_weights: dict[int, list[np.ndarray]]) -> keras.Model:
        """The variant's model with its initial weights, compiled, optimizer reset."""
        variant_seed = self._seed_of(variant)
        if model is None:
            set_seed(variant_seed)
            model = variant.build()
            compile_sgd(model, variant.learning_rate, momentum=variant.momentum,
                        steps_per_execution=_steps_per_execution(variant))
            initial_weights[variant_seed] = model.get_weights()
        else:
            if variant_seed not in initial_weights:   # draw this seed's weights, uncompiled
                set_seed(variant_seed)
                initial_weights[variant_seed] = variant.build().get_weights()
            model.set_weights(initial_weights[variant_seed])
            _reset_optimizer(model.optimizer, variant.learning_rate)
        if variant.initialize is not None:
            variant.initialize(model)
        return model

    def _batches(self, variant: Variant) -> Any:
        """The variant's training batches; the same order for every variant of a seed."""
        variant_seed = self._seed_of(variant)
        set_seed(variant_seed)
        if variant.steps:
            return _repeated(self.train_tensors, variant.batch_size, shuffle=self.shuffle,
                             seed=variant_seed)
        return image_batches(*self.train_tensors, batch_size=variant.batch_size,
                             shuffle=self.shuffle)

    def _train(self, variant: Variant, model: keras.Model, batches: Any) -> dict[str, Any]:
        """Fit, then measure: the variant's row."""
        recorder = (StepRecorder(variant.probes, variant.record_every, stop_on_nan=self.stop_on_nan)
                    if variant.record_every else None)
        nan_stop = _NanStop()
        callbacks: list[keras.callbacks.Callback] = [recorder] if recorder else []
        if self.stop_on_nan and recorder is None:
            callbacks.append(nan_stop)
        start = time.perf_counter()
        if variant.steps:
            model.fit(batches, steps_per_epoch=variant.steps, epochs=1, shuffle=False,
                      callbacks=callbacks, verbose=0)
            epochs = variant.steps * variant.batch_size / len(self.train[0])
        else:
            model.fit(batches, epochs=variant.epochs, shuffle=False, callbacks=callbacks, verbose=0)
            epochs = variant.epochs
        seconds = time.perf_counter() - start
        row: dict[str, Any] = {"label": variant.label, **variant.settings,
                               "seed": self._seed_of(variant),
                               "learning_rate": variant.learning_rate,
                               "epochs": epochs, "batch_size": variant.batch_size,
                               "steps": int(model.optimizer.iterations.numpy()),
                               "seconds": seconds}
        losses = []
        for split, data in (("train", self.train if self.evaluate_train else None),
                            ("valid", self.valid), ("test", self.test)):
            if data is not None:
                row[f"{split}_loss"], row[f"{split}_accuracy"] = evaluate(model, *data)
                losses.append(row[f"{split}_loss"])
        row["diverged"] = bool(nan_stop.diverged or (recorder is not None and recorder.diverged)
                               or not all(math.isfinite(loss) for loss in losses))
        if recorder is not None:
            row["curve"] = recorder.arrays()
        if self.keep_models:
            row["model"] = model
        if self.verbose:
            shown = "  ".join(f"{k} {row[k]:.3f}" for k in
                              ("train_accuracy", "valid_accuracy", "test_accuracy") if k in row)
            status = "  diverged" if row["diverged"] else ""
            print(f"{variant.label:<28} {shown}  ({seconds:.1f} s){status}")
        return row


def _repeated(data: tuple[Any, Any], batch_size: int, *, shuffle: bool, seed: int) -> Any:
    """An endless ``tf.data`` pipeline of batches: full batches, or reshuffled passes."""
    x, y = data
    if batch_size >= len(x):
        return tf.data.Dataset.from_tensors((x, y)).repeat()
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return dataset.repeat().batch(batch_size, drop_remainder=True)


def _reset_optimizer(optimizer: keras.optimizers.Optimizer, learning_rate: float) -> None:
    """Zero the step counter and every slot (momentum), then set the learning rate."""
    for variable in optimizer.variables:
        if variable is not optimizer.learning_rate:
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    optimizer.learning_rate.assign(learning_rate)


def column(rows: Sequence[Mapping[str, Any]], key: str, **where: Any) -> np.ndarray:
    """The values of ``key`` in the rows that match every ``where`` setting, in order."""
    return np.asarray([row[key] for row in rows_where(rows, **where)])


def rows_where(rows: Sequence[Mapping[str, Any]], **where: Any) -> list[Mapping[str, Any]]:
    """The rows whose settings equal every keyword given (``rows_where(t, norm="batch")``)."""
    return [row for row in rows if all(row.get(k) == v for k, v in where.items())]


# --------------------------------------------------------------------------- reading results
def steps_to_reach(steps: Sequence[float], values: Sequence[float], target: float) -> float:
    """The first ``steps[i]`` at which ``values[i] >= target``; ``inf`` if never.

    Works for any monotone x axis: pass recorded seconds instead of steps to
    get the time to reach the target.
    """
    for step, value in zip(steps, values):
        if np.isfinite(value) and value >= target:
            return float(step)
    return math.inf


def interleaved_step_times(models: Mapping[str, keras.Model], x: np.ndarray, y: np.ndarray, *,
                           batch_size: int = 32, steps: int = 64,
                           repeats: int = 7) -> dict[str, float]:
    """Seconds per optimizer step of each compiled model, comparable with each other.

    Each timed call is one ``fit`` of ``steps`` steps on the first
    ``steps * batch_size`` examples; :func:`bnbook.probes.warm_times` warms
    every model up once, then interleaves ``repeats`` rounds and keeps each
    model's **fastest** round, so the *ratio* of two models' times is stable
    on a busy machine. The models train while timed: time a copy, or measure
    last.
    """
    n = min(len(x), steps * batch_size)
    x, y = x[:n], y[:n]
    steps = math.ceil(n / batch_size)
    runs = {name: (lambda m=model: m.fit(x, y, batch_size=batch_size, epochs=1,
                                         verbose=0, shuffle=False))
            for name, model in models.items()}
    seconds = warm_times(runs, repeats=repeats, warmup=1, keep="fastest")
    return {name: s / steps for name, s in seconds.items()}


def gaussian_kernels(stddev: float, seed: int = 0) -> Callable[[keras.Model], None]:
    """An ``initialize`` hook for :class:`Variant`: every Dense kernel from N(0, stddev^2).

    The returned function draws each ``Dense`` layer's kernel, in layer order,
    from a NumPy generator seeded with ``seed`` and leaves every other weight
    (biases, BN parameters) as it is. Use it to sweep the weight scale while
    sharing one compiled model between variants.

    (Building the layers with ``keras.initializers.RandomNormal(stddev=s)``
    instead has a trap: in Keras 3 an initializer that is unseeded or seeded
    with an integer draws the *same* values on every call, so one instance
    shared by equally shaped layers starts them identical.)
    """
    if not stddev > 0:
        raise ValueError(f"stddev must be positive, got {stddev}")

    def initialize(model: keras.Model) -> None:
        rng = np.random.default_rng(seed)
        for layer in model.layers:
            if isinstance(layer, keras.layers.Dense):
                shape = tuple(layer.kernel.shape)
                layer.kernel.assign(rng.normal(0.0, stddev, shape).astype("float32"))

    return initialize


def kernel_gradient_norms(model: keras.Model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The L2 norm of the loss gradient for each Dense kernel, in layer order.

    The loss is the mean sparse categorical cross-entropy of ``model`` on
    ``(x, y)`` in training mode, as in one optimizer step (BN uses the
    statistics of ``x``). The moving statistics are restored afterwards, so
    the model is left as it was. Small norms in the first layers of a deep
    network are the vanishing-gradient problem, measured.
    """
    saved = [w.numpy() for w in model.non_trainable_weights]
    kernels = [layer.kernel for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    with tf.GradientTape() as tape:
        probs = model(x, training=True)
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, probs))
    grads = tape.gradient(loss, kernels)
    for weight, value in zip(model.non_trainable_weights, saved):
        weight.assign(value)
    return np.array([float(np.linalg.norm(np.asarray(g))) for g in grads])
