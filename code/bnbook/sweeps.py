"""Run many variants of a model: the book's one runner, side by side in threads of one kernel.

The chapters that test what batch normalization is claimed to do train many
small variants of one model, over several seeds, and compare them.
:func:`run_sweep` trains a list of :class:`Variant` objects and returns a
*tidy table*: one ``dict`` per variant with its settings and what it
measured (per-epoch history, accuracy and loss in inference mode, time,
divergence). :func:`column` and :func:`rows_where` read the table.

Why threads: a small model at batch size 32 keeps only about one core busy;
each step is too short for TensorFlow to spread over two. TensorFlow runs a
compiled training step without holding Python's global interpreter lock, so
threads of the same process, each training its own model, really train side
by side, and they share one copy of TensorFlow and of the data (a second
process would cost another 500 MB for its own TensorFlow alone).

Why the numbers do not depend on the threads: each variant is seeded, built
and given its shuffled batches under :data:`bnbook.training.seed_lock`, so it
gives the same numbers whichever thread trains it, the same with
``workers=1``, and the same as a plain ``model.fit`` on the arrays (the tests
check all three). Two variants with the same ``seed`` start from the same
initial weights (for the layers they share) and see the batches in the same
order: they are *paired*, as :mod:`bnbook.stats` assumes.

Set ``BNBOOK_WORKERS`` to choose the number of threads (default: one more than
the number of cores, so that no core idles while a thread waits for its next
batches or for Python; on 2 cores, 3 threads measured about 10 % faster than 2).
"""

from __future__ import annotations

import gc
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bnbook.data import as_tensor, image_batches, repeated_batches
from bnbook.measure import evaluate_outputs
from bnbook.memory import release_memory
from bnbook.models import branch
from bnbook.training import (DivergenceStop, Probe, StepRecorder, compile_model, fit, seed_lock,
                             set_seed)

__all__ = ["Variant", "column", "default_workers", "rows_where", "run_sweep"]

Split = tuple[np.ndarray, np.ndarray]


def default_workers() -> int:
    """``BNBOOK_WORKERS`` if set, else one more than the number of cores."""
    env = os.environ.get("BNBOOK_WORKERS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"BNBOOK_WORKERS must be a whole number of threads, got {env!r}") from None
    return (os.cpu_count() or 1) + 1


@dataclass
class Variant:
    """One model to train in a sweep.

    ``build`` returns a fresh, uncompiled model; it is called after seeding,
    so the same seed gives the same initial weights. ``settings`` are copied
    into the variant's row of the table (e.g. ``{"norm": "batch", "lr": 0.1}``).
    With ``record_every > 0`` a :class:`~bnbook.training.StepRecorder` records
    the mini-batch loss and accuracy and evaluates ``probes`` every
    ``record_every`` steps; its records land in the row under ``"curve"``.
    Choose ``record_every`` as a multiple of 64 or a divisor of it: the model
    is compiled with ``steps_per_execution = gcd(64, record_every)``, and few
    steps per execution make training slower.

    Variants with the same ``arch`` (any hashable name for "this architecture")
    share one compiled model: :func:`run_sweep` builds and compiles it once,
    and before each of them restores the initial weights (or lets
    ``initialize(model)`` set them), resets the optimizer and assigns the
    learning rate. Results are the same as building afresh from the same
    seed, but Keras traces the training step once instead of once per
    variant, which in a sweep of small models saves most of the time.

    ``seed``, when given, replaces the sweep's seed for this variant (initial
    weights and batch order), so one sweep can repeat a model over seeds.

    ``optimizer``, when given, makes the optimizer: it is called with the
    variant's ``learning_rate`` and returns a fresh instance, for example
    ``lambda lr: keras.optimizers.Adam(learning_rate=lr)`` or an SGD with
    ``weight_decay``. Without it the variant trains with SGD and ``momentum``
    (give one or the other, not both). Variants of one ``arch`` share a
    compiled model only when they share the same factory object, so define
    each factory once and pass that object to every variant that uses it.

    A factory may give the optimizer a learning-rate schedule built from the
    rate (``lambda lr: keras.optimizers.SGD(CosineDecay(lr, steps))``); it
    starts again for each variant, and variants that share a compiled model
    must then share the rate too.

    ``loss_weights``, for a side-by-side model, weights each branch's loss
    (:func:`bnbook.training.compile_model`): with SGD, with or without
    momentum, branch ``i`` then trains at the learning rate
    ``learning_rate * loss_weights[i]``, so one run can sweep the rate.

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
    optimizer: Callable[[float], keras.optimizers.Optimizer] | None = None
    loss_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.optimizer is not None and self.momentum:
            raise ValueError(f"variant {self.label!r}: give the momentum to the optimizer "
                             "factory, not as Variant(momentum=...), when a factory is given")
        if self.loss_weights is not None:
            self.loss_weights = tuple(float(w) for w in self.loss_weights)

    def compile(self, model: keras.Model, steps_per_execution: int) -> keras.Model:
        """Compile ``model`` with this variant's optimizer (SGD with ``momentum`` by default)
        and ``loss_weights``."""
        optimizer = (self.optimizer(self.learning_rate) if self.optimizer is not None else
                     keras.optimizers.SGD(learning_rate=self.learning_rate,
                                          momentum=self.momentum))
        return compile_model(model, optimizer, loss_weights=self.loss_weights,
                             steps_per_execution=steps_per_execution)


def run_sweep(variants: Iterable[Variant], train: Split, *,
              valid: Split | None = None, test: Split | None = None,
              seed: int = 0, stop_on_nan: bool = True, shuffle: bool = True,
              evaluate_train: bool = True, validate_each_epoch: bool = False,
              keep_models: bool = False, keep_weights: bool = False,
              verbose: bool = True,
              workers: int | None = None,
              eval_batch_size: int | None = None) -> list[dict[str, Any]]:
    """Train each variant (SGD unless its ``optimizer`` says otherwise) and return
    one row per variant, in the order given.

    Each row holds ``label``, the variant's ``settings``, ``seed``,
    ``learning_rate``, ``epochs``, ``batch_size``, ``steps`` (optimizer steps
    actually taken), ``seconds`` (wall time of ``fit``), ``seconds_per_epoch``,
    ``history`` (Keras' per-epoch history), ``diverged`` (the training loss
    stopped being finite), and ``{split}_loss`` / ``{split}_accuracy``
    measured in inference mode by :func:`bnbook.measure.evaluate` for
    ``train`` (unless ``evaluate_train=False``, which saves time in large
    sweeps) and, when given, ``valid`` and ``test``. With
    ``validate_each_epoch``, Keras also evaluates ``valid`` after every epoch
    (``val_loss``, ``val_accuracy`` in the history, for learning curves).
    With probes, ``curve`` holds the recorder's arrays; with ``keep_models``,
    ``model`` holds the trained model (do not combine with a shared ``arch``:
    later variants retrain that model); with ``keep_weights``, ``weights``
    holds the trained weights (``model.get_weights()``, fine with a shared
    ``arch``: a later experiment can start from them with ``initialize``).

    Images may be the loader's uint8 grey levels (a quarter of the memory of
    float32; each batch is scaled as drawn) or floats. Training accuracy is
    measured again after training, in inference mode, and not read from
    Keras' history (an average over the epoch, computed with batch statistics
    while the weights were still changing).

    A variant whose model has several outputs (:func:`bnbook.models.side_by_side`:
    the variants of one seed as branches of one model, trained in one run on
    the same batches) gives one row per output, in order, each with
    ``branch`` (the output's name) and its own history, scores, divergence,
    curve (``batch_loss`` and ``batch_accuracy`` its own, probes shared) and
    weights; a diverged branch does not stop the others.
    ``eval_batch_size`` is the chunk the inference-mode evaluations feed
    the model at once (default: :func:`bnbook.measure.predict`'s 2,048); it
    does not change the results, only the memory: a convolutional network's
    feature maps for 2,048 images take tens of megabytes per layer, and the
    process keeps that memory once it has had it.

    Variants that share no compiled model train side by side, in up to
    ``workers`` threads (default :func:`default_workers`); threads take them
    in the order given, so list the longest first. Only ``seconds`` depends
    on the threads: it counts time shared with the others.
    """
    variants = list(variants)
    release_memory()   # what earlier cells freed, before the threads allocate their own
    groups: dict[Any, list[int]] = {}
    for index, variant in enumerate(variants):
        key = _shared_model_key(variant) or ("alone", index)
        groups.setdefault(key, []).append(index)
    sweep = _Sweep(train, valid=valid, test=test, seed=seed, stop_on_nan=stop_on_nan,
                   shuffle=shuffle, evaluate_train=evaluate_train,
                   validate_each_epoch=validate_each_epoch, keep_models=keep_models,
                   keep_weights=keep_weights, verbose=verbose,
                   eval_batch_size=eval_batch_size)
    rows: dict[int, list[dict[str, Any]]] = {}
    workers = min(workers or default_workers(), len(groups)) or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(sweep.run_group, [variants[i] for i in indices]): indices
                   for indices in groups.values()}
        for future in as_completed(futures):
            rows.update(zip(futures[future], future.result()))
    del sweep
    keras.backend.clear_session(free_memory=False)
    release_memory()   # the traced functions of many short-lived models add up
    return [row for i in range(len(variants)) for row in rows[i]]


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
    return (variant.arch, variant.momentum, variant.optimizer, variant.loss_weights,
            _steps_per_execution(variant))


class _Sweep:
    """Trains the variants of one :func:`run_sweep` call; its threads share one instance."""

    def __init__(self, train: Split, *, valid: Split | None, test: Split | None,
                 seed: int, stop_on_nan: bool, shuffle: bool, evaluate_train: bool,
                 validate_each_epoch: bool, keep_models: bool, keep_weights: bool,
                 verbose: bool, eval_batch_size: int | None = None) -> None:
        if validate_each_epoch and valid is None:
            raise ValueError("validate_each_epoch needs valid=(x, y)")
        # tensors once for all variants: tf.data then feeds Keras without copies
        self.train = train
        self.train_tensors = (as_tensor(train[0]), as_tensor(train[1]))
        self.valid_tensors = ((as_tensor(valid[0]), as_tensor(valid[1]))
                              if validate_each_epoch else None)
        self.valid, self.test, self.seed = valid, test, seed
        self.stop_on_nan, self.shuffle = stop_on_nan, shuffle
        self.evaluate_train, self.verbose = evaluate_train, verbose
        self.keep_models, self.keep_weights = keep_models, keep_weights
        self.eval_batch_size = eval_batch_size
        self.thread_state = threading.local()
        self.start = time.perf_counter()

    def run_group(self, variants: list[Variant]) -> list[list[dict[str, Any]]]:
        """Train ``variants`` one after the other; a group shares one compiled model."""
        if getattr(self.thread_state, "trained", False):
            release_memory()   # free this thread's previous model and traced steps
        self.thread_state.trained = True
        model: keras.Model | None = None
        initial_weights: dict[int, list[np.ndarray]] = {}
        rows = []
        for variant in variants:
            with seed_lock:   # seed, build and shuffle as one step
                model = self._prepare(variant, model, initial_weights)
                batches = self._batches(variant, len(model.outputs))
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
            variant.compile(model, _steps_per_execution(variant))
            model.bnbook_rate = variant.learning_rate
            initial_weights[variant_seed] = model.get_weights()
        else:
            if variant_seed not in initial_weights:   # this seed's weights, uncompiled
                set_seed(variant_seed)
                initial_weights[variant_seed] = variant.build().get_weights()
            model.set_weights(initial_weights[variant_seed])
            _reset_optimizer(model.optimizer, variant.learning_rate)
            rate_changed = variant.learning_rate != model.bnbook_rate
            if _has_schedule(model.optimizer) and rate_changed:
                raise ValueError(f"variant {variant.label!r}: its optimizer follows a "
                                 "learning-rate schedule, which a shared model cannot "
                                 "change; give variants with other rates another arch")
        if variant.initialize is not None:
            variant.initialize(model)
        return model

    def _batches(self, variant: Variant,
                 outputs: int = 1) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
        """The variant's training batches (the same order for every variant of a
        seed), and the validation batches when validating each epoch; with several
        ``outputs``, the labels once for each."""
        variant_seed = self._seed_of(variant)
        set_seed(variant_seed)
        if variant.steps:
            train = repeated_batches(*self.train_tensors, variant.batch_size,
                                     shuffle=self.shuffle, seed=variant_seed)
        else:
            train = image_batches(*self.train_tensors, batch_size=variant.batch_size,
                                  shuffle=self.shuffle)
        valid = (image_batches(*self.valid_tensors, batch_size=variant.batch_size)
                 if self.valid_tensors is not None else None)
        if outputs > 1:
            def labels_for_each_output(x, y):
                return x, (y,) * outputs
            train = train.map(labels_for_each_output)
            valid = valid.map(labels_for_each_output) if valid is not None else None
        return train, valid

    def _train(self, variant: Variant, model: keras.Model,
               batches: tuple[tf.data.Dataset, tf.data.Dataset | None],
               ) -> list[dict[str, Any]]:
        """Fit, then measure: the variant's row, or a row per output of a side-by-side
        model."""
        train, valid = batches
        names = list(model.output_names) if len(model.outputs) > 1 else []
        losses = [f"{name}_loss" for name in names] or ["loss"]
        stop = DivergenceStop(losses)
        callbacks: list[keras.callbacks.Callback] = [stop] if self.stop_on_nan else []
        metrics = [m for name in names for m in (f"{name}_loss", f"{name}_accuracy")]
        recorder = (StepRecorder(variant.probes, variant.record_every,
                                 log_metrics=metrics or ("loss", "accuracy"))
                    if variant.record_every else None)
        if recorder is not None:
            callbacks.append(recorder)    # after the stop: records the last step
        start = time.perf_counter()
        result = fit(model, train, epochs=1 if variant.steps else variant.epochs,
                     steps_per_epoch=variant.steps, validation_data=valid,
                     callbacks=callbacks, verbose=False)
        seconds = time.perf_counter() - start
        epochs = (variant.steps * variant.batch_size / len(self.train[0])
                  if variant.steps else variant.epochs)
        common: dict[str, Any] = {"label": variant.label, **variant.settings,
                                  "seed": self._seed_of(variant),
                                  "learning_rate": variant.learning_rate,
                                  "epochs": epochs, "batch_size": variant.batch_size,
                                  "steps": int(model.optimizer.iterations.numpy()),
                                  "seconds": seconds,
                                  "seconds_per_epoch": result.seconds_per_epoch}
        rows = [{**common, "branch": name} for name in names] or [dict(common)]
        for split, data in (("train", self.train if self.evaluate_train else None),
                            ("valid", self.valid), ("test", self.test)):
            if data is not None:
                scores_per_output = evaluate_outputs(model, *data,
                                                     batch_size=self.eval_batch_size)
                for row, scores in zip(rows, scores_per_output, strict=True):
                    row[f"{split}_loss"], row[f"{split}_accuracy"] = scores
        curve = recorder.arrays() if recorder is not None else None
        for index, row in enumerate(rows):
            name = names[index] if names else None
            row["history"] = _own_history(result.history, name)
            evaluated = [row[k] for k in ("train_loss", "valid_loss", "test_loss")
                         if k in row]
            stopped = stop.diverged or (name is not None and not math.isfinite(
                row["history"].get("loss", [0.0])[-1]))
            finite = all(math.isfinite(v) for v in evaluated)
            row["diverged"] = bool(stopped or not finite)
            if curve is not None:
                row["curve"] = _own_curve(curve, name, names)
            if self.keep_models:
                row["model"] = model
            if self.keep_weights:
                row["weights"] = (branch(model, name) if name else model).get_weights()
            if self.verbose:
                shown = "  ".join(
                    f"{k} {row[k]:.3f}" for k in
                    ("train_accuracy", "valid_accuracy", "test_accuracy") if k in row)
                status = "  diverged" if row["diverged"] else ""
                label = f"{variant.label} / {name}" if name else variant.label
                print(f"[{time.perf_counter() - self.start:5.0f} s] {label:<28} {shown}"
                      f"  ({seconds:.1f} s){status}")
        return rows


def _own_history(history: Mapping[str, list[float]], name: str | None) -> dict[str, list[float]]:
    """One output's part of a Keras history (``a_loss`` -> ``loss``), or all of it."""
    if name is None:
        return dict(history)
    return {prefix + metric: history[f"{prefix}{name}_{metric}"]
            for prefix in ("", "val_") for metric in ("loss", "accuracy")
            if f"{prefix}{name}_{metric}" in history}


def _own_curve(curve: Mapping[str, np.ndarray], name: str | None,
               names: Sequence[str]) -> dict[str, np.ndarray]:
    """A step record for one output: its own ``batch_loss``, ``batch_accuracy``; steps,
    seconds and probes shared."""
    if name is None:
        return dict(curve)
    own = {key: values for key, values in curve.items()
           if not any(key.startswith(f"batch_{other}_") for other in names)}
    for metric in ("loss", "accuracy"):
        own[f"batch_{metric}"] = curve[f"batch_{name}_{metric}"]
    return own


def _has_schedule(optimizer: keras.optimizers.Optimizer) -> bool:
    return isinstance(optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule)


def _reset_optimizer(optimizer: keras.optimizers.Optimizer, learning_rate: float) -> None:
    """Zero the step counter and every slot (momentum), then set the learning rate; a
    schedule starts again from step 0."""
    schedule = _has_schedule(optimizer)
    for variable in optimizer.variables:
        if schedule or variable is not optimizer.learning_rate:
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    if not schedule:
        optimizer.learning_rate.assign(learning_rate)


def column(rows: Sequence[Mapping[str, Any]], key: str, **where: Any) -> np.ndarray:
    """The values of ``key`` in the rows that match every ``where`` setting, in order."""
    return np.asarray([row[key] for row in rows_where(rows, **where)])


def rows_where(rows: Sequence[Mapping[str, Any]], **where: Any) -> list[Mapping[str, Any]]:
    """The rows whose settings equal every keyword given (``rows_where(t, norm="batch")``)."""
    return [row for row in rows if all(row.get(k) == v for k, v in where.items())]
