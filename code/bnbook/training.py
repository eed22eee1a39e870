"""Run one model once: seed it, compile it, fit it, and record what happens during training.

The chapters define their models in full; these helpers only remove the
plumbing that would otherwise be written again on every page. Running many
variants side by side is :mod:`bnbook.sweeps`' job, which calls these.

* :func:`set_seed` and :data:`seed_lock`: reproducible weights and batch orders.
* :func:`compile_model`: any optimizer, with the book's loss and metric;
  :func:`compile_sgd`: the same with SGD (optionally with momentum).
* :class:`TabulatedRate`: a learning rate given step by step;
  :func:`decay_equivalent_rates`: the rates at which plain SGD trains weights
  before BN as SGD with weight decay does.
* :func:`fit`: ``model.fit`` with one printed line per epoch and epoch times.
* Callbacks: :class:`EpochLog` (times per epoch), :class:`StepRecorder`
  (probes every few optimizer steps), :class:`DivergenceStop` (end a run
  whose loss is no longer finite).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "STEPS_PER_EXECUTION",
    "DivergenceStop",
    "EpochLog",
    "FitResult",
    "Probe",
    "StepRecorder",
    "TabulatedRate",
    "compile_model",
    "compile_sgd",
    "decay_equivalent_rates",
    "fit",
    "seed_lock",
    "set_seed",
]

#: A probe maps the model being trained to a number or an array.
Probe = Callable[[keras.Model], Any]

#: Steps run inside one compiled call. 64 makes ``fit`` about twice as fast on a
#: CPU at batch 32 and gives the same numbers as 1 (the optimizer still updates
#: after every batch; only the Python round trips are batched).
STEPS_PER_EXECUTION = 64


#: The seed is process-wide. Threads that train side by side hold this lock from
#: ``set_seed`` until their model is built and their shuffled batches are made, so
#: that no other thread reseeds in between (:func:`bnbook.sweeps.run_sweep`).
seed_lock = threading.Lock()


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the backend, so a re-run gives the same numbers."""
    keras.utils.set_random_seed(seed)


def compile_model(model: keras.Model, optimizer: keras.optimizers.Optimizer, *,
                  loss_weights: Sequence[float] | None = None,
                  steps_per_execution: int = STEPS_PER_EXECUTION,
                  jit_compile: bool | str = False) -> keras.Model:
    """Compile ``model`` with ``optimizer``, sparse categorical cross-entropy and accuracy.

    ``optimizer`` is an optimizer instance (``keras.optimizers.Adam(1e-3)``,
    ``keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-2)``, ...), not a
    name: a name would silently use Keras' default learning rate. The loss
    expects a softmax output and integer labels, as in every model of the book;
    a model with several outputs (:func:`bnbook.models.side_by_side`) gets it
    on each output, the total being their sum, and an accuracy per output.
    ``loss_weights`` (one per output) multiplies each output's loss in that
    sum: with SGD, with or without momentum, a weight ``k`` trains that
    branch exactly as a learning rate ``k`` times larger would (Adam ignores a
    constant factor; an L2 penalty from a layer's regularizer is not weighted).
    Returns the model, compiled.
    """
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(f"optimizer must be a keras.optimizers.Optimizer instance, got "
                        f"{optimizer!r}; build it with its learning rate, e.g. "
                        "keras.optimizers.Adam(learning_rate=1e-3)")
    outputs = len(model.outputs) if getattr(model, "outputs", None) else 1
    if loss_weights is not None and len(loss_weights) != outputs:
        raise ValueError(f"loss_weights needs one weight per output: {outputs} outputs, "
                         f"{len(loss_weights)} weights")
    model.compile(
        optimizer=optimizer,
        loss=("sparse_categorical_crossentropy" if outputs == 1
              else ["sparse_categorical_crossentropy"] * outputs),
        loss_weights=list(loss_weights) if loss_weights is not None else None,
        metrics=["accuracy"] if outputs == 1 else [["accuracy"]] * outputs,
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    return model


def compile_sgd(model: keras.Model, learning_rate: float, *,
                momentum: float = 0.0,
                steps_per_execution: int = STEPS_PER_EXECUTION,
                jit_compile: bool | str = False) -> keras.Model:
    """Compile ``model`` with plain SGD (:func:`compile_model`).

    ``learning_rate`` is required and passed by its real name: the old
    ``SGD(lr=...)`` keyword is not an alias in Keras 3.
    """
    return compile_model(model, keras.optimizers.SGD(learning_rate=learning_rate,
                                                     momentum=momentum),
                         steps_per_execution=steps_per_execution,
                         jit_compile=jit_compile)


def _rate_table(rates: Sequence[float] | np.ndarray) -> np.ndarray:
    """``rates`` as a float64 array, checked: one-dimensional, non-empty, finite, >= 0."""
    values = np.asarray(rates, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"rates must be a non-empty 1-D sequence, got shape {values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("rates must be finite and at least 0")
    return values


@keras.saving.register_keras_serializable(package="bnbook")
class TabulatedRate(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate given for every step: ``rates[t]`` at optimizer step ``t``.

    Steps count from 0 (Keras' ``optimizer.iterations`` before the update);
    after the table ends, the last rate holds. ``rates`` is one-dimensional,
    finite and at least 0, e.g. the output of :func:`decay_equivalent_rates`.
    """

    def __init__(self, rates: Sequence[float] | np.ndarray) -> None:
        self.rates = _rate_table(rates).astype(np.float32)

    def __call__(self, step):
        index = keras.ops.minimum(keras.ops.cast(step, "int32"), len(self.rates) - 1)
        return keras.ops.take(keras.ops.convert_to_tensor(self.rates), index)

    def get_config(self) -> dict:
        return {"rates": self.rates.tolist()}


def decay_equivalent_rates(rates: Sequence[float] | np.ndarray,
                           weight_decay: float) -> np.ndarray:
    """Rates at which plain SGD moves scale-invariant weights as SGD with weight decay does.

    With decay ``lambda``, a step is ``w_{t+1} = (1 - eta_t lambda) w_t - eta_t g(w_t)``,
    and the weights shrink by ``c_t = prod_{s<t} (1 - eta_s lambda)``. For weights
    the loss sees only through their direction (a layer followed by BN, epsilon
    -> 0), ``g(c v) = g(v) / c``, so ``v_t = w_t / c_t`` follows plain SGD,
    ``v_{t+1} = v_t - eta'_t g(v_t)``, at the rate::

        eta'_t = eta_t / (c_t * c_{t+1})

    ``rates`` are the scheduled ``eta_t``, one per step, shape ``(T,)``; returns
    ``eta'``, shape ``(T,)``. ``weight_decay`` must keep every ``eta_t lambda`` below 1.
    """
    eta = _rate_table(rates)
    if weight_decay < 0 or np.any(eta * weight_decay >= 1):
        raise ValueError("need 0 <= rate * weight_decay < 1 at every step")
    shrink = np.concatenate([[1.0], np.cumprod(1.0 - eta * weight_decay)])   # c_0 .. c_T
    return eta / (shrink[:-1] * shrink[1:])


class EpochLog(keras.callbacks.Callback):
    """Record wall time per epoch and print one compact line per epoch.

    Keras' progress bar redraws itself hundreds of times, which bloats a built
    page; one line per epoch is progress enough live and stays short in print.
    """

    def __init__(self, label: str = "", verbose: bool = True) -> None:
        super().__init__()
        self.label = label
        self.verbose = verbose
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        if self.verbose:
            metrics = "  ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
            prefix = f"{self.label}: " if self.label else ""
            print(f"{prefix}epoch {epoch + 1:>2}  {metrics}  ({self.seconds[-1]:.1f} s)")


@dataclass
class FitResult:
    """What one ``fit`` call measured: the Keras history and seconds per epoch."""

    history: dict[str, list[float]]
    seconds_per_epoch: list[float] = field(default_factory=list)

    def final(self, metric: str) -> float:
        return float(self.history[metric][-1])


def fit(model: keras.Model, x: np.ndarray | tf.data.Dataset, y: np.ndarray | None = None, *,
        epochs: int, batch_size: int = 32,
        validation_data: tuple[np.ndarray, np.ndarray] | tf.data.Dataset | None = None,
        label: str = "", verbose: bool = True, shuffle: bool = True,
        steps_per_epoch: int | None = None,
        callbacks: Sequence[keras.callbacks.Callback] = ()) -> FitResult:
    """``model.fit`` with one printed line per epoch and the epoch times recorded.

    ``x`` is an array of inputs with labels ``y``, or a dataset of batches
    (``bnbook.data.image_batches``), which brings its own batch size and order;
    ``steps_per_epoch`` bounds an endless dataset (``repeated_batches``).
    ``callbacks`` run after the epoch log.
    """
    log = EpochLog(label, verbose)
    batching = ({"shuffle": False} if isinstance(x, tf.data.Dataset)  # it brings its own order
                else {"batch_size": batch_size, "shuffle": shuffle})
    history = model.fit(x, y, epochs=epochs, validation_data=validation_data,
                        steps_per_epoch=steps_per_epoch, callbacks=[log, *callbacks],
                        verbose=0, **batching)
    return FitResult({k: [float(v) for v in vals] for k, vals in history.history.items()},
                     log.seconds)


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

    A run whose loss stops being finite is ended by :class:`DivergenceStop`;
    list it before the recorder, which then records the step it stopped at.
    """

    def __init__(self, probes: Mapping[str, Probe], every: int, *,
                 log_metrics: Sequence[str] = ("loss", "accuracy")) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be a positive number of steps, got {every}")
        self.probes = dict(probes)
        self.every = int(every)
        self.log_metrics = tuple(log_metrics)
        self.records: dict[str, list[Any]] = {"step": [], "seconds": []}
        self.records.update({f"batch_{m}": [] for m in self.log_metrics})
        self.records.update({name: [] for name in self.probes})
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
                before = self._epoch_means.get(metric, 0.0) * self._epoch_steps
                total = mean * steps - before
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
        step = self._step()
        if step >= self._next or self.model.stop_training:
            self._record(step)
            while self._next <= step:
                self._next += self.every
        self._since = time.perf_counter()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._count:                # steps after the last multiple of every
            self._record(self._step())

    def arrays(self) -> dict[str, np.ndarray]:
        """The records as NumPy arrays (probe values stacked along axis 0)."""
        return {name: np.asarray(values) for name, values in self.records.items()}


class DivergenceStop(keras.callbacks.Callback):
    """End training when the training loss stops being finite, and remember that it did.

    A diverged run cannot come back, and going on only costs time. (Keras'
    ``TerminateOnNaN`` stops too, but does not report it.) ``losses`` names
    the logged losses to watch; training stops when *all* of them are no
    longer finite. For a model with several independent outputs
    (:func:`bnbook.models.side_by_side`) pass their losses
    (``"<name>_loss"``): one diverged branch must not end the others.
    """

    def __init__(self, losses: Sequence[str] = ("loss",)) -> None:
        super().__init__()
        if not losses:
            raise ValueError("DivergenceStop needs at least one loss to watch")
        self.losses = tuple(losses)
        self.diverged = False

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        values = [(logs or {}).get(name) for name in self.losses]
        if all(v is not None and not np.isfinite(float(v)) for v in values):
            self.diverged = True
            self.model.stop_training = True
