"""Probes: measurements of a network that Keras does not offer out of the box.

The chapters on BN's limitations and on *why* BN works need to look inside a
trained network in ways that ``fit``/``evaluate`` do not:

* run a model **in training mode** with a chosen evaluation batch size, without
  touching its moving statistics (:func:`predict_training_mode`);
* **recompute the population statistics** of every BN layer with the weights
  frozen, the "PreciseBN" of Wu & Johnson (2021) (:func:`recompute_bn_statistics`);
* read the **input of any layer** in either mode (:func:`layer_input`);
* inject a random, per-step **shift and scale** after a BN layer, the "noisy BN"
  of Santurkar et al. (2018) (:class:`NoisyShift`);
* probe the **smoothness of the loss along the gradient** (loss range, gradient
  change and effective beta-smoothness, as in Santurkar et al.)
  (:func:`smoothness_along_gradient`);
* time calls **warm** and fairly between several, interleaved
  (:func:`warm_times`), time compiled training steps (:func:`compiled_train_steps`), and
  count the floats a forward pass produces per example (:func:`activation_floats`).

The read-only probes (training-mode predictions, layer inputs, smoothness) leave
the model as they found it (weights, moving statistics and random-generator
states), so they can run in the middle of an experiment. Two functions change
the model on purpose: ``recompute_bn_statistics`` (its moving statistics) and
the function returned by ``compiled_train_steps`` (it trains).
The functions assume the TensorFlow backend, as the rest of the book does.
"""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from bnbook.training import predict_proba

__all__ = [
    "NoisyShift",
    "Smoothness",
    "accuracy_training_mode",
    "activation_floats",
    "bn_layers",
    "compiled_train_steps",
    "layer_input",
    "predict_training_mode",
    "recompute_bn_statistics",
    "smoothness_along_gradient",
    "warm_times",
]


# --------------------------------------------------------------------------- #
# Small utilities
# --------------------------------------------------------------------------- #

def bn_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The model's ``BatchNormalization`` layers, in the order of ``model.layers``."""
    return [layer for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


class _KeepState:
    """Context manager: restore the given variables' values on exit."""

    def __init__(self, variables: Sequence[keras.Variable]) -> None:
        self.variables = list(variables)
        self.saved: list[np.ndarray] = []

    def __enter__(self) -> _KeepState:
        self.saved = [np.array(v.numpy()) for v in self.variables]
        return self

    def __exit__(self, *exc: object) -> None:
        for variable, value in zip(self.variables, self.saved):
            variable.assign(value)


#: One compiled training-mode forward pass per model, reused across calls.
_TRAINING_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _training_forward(model: keras.Model) -> Callable:
    """A compiled ``(k, b, ...) -> (k, b, ...)``: ``k`` batches of ``b``, each in training mode.

    The batches run one after the other inside the graph (``tf.map_fn``), so
    thousands of tiny batches cost one call from Python instead of thousands.
    Models with several outputs return the same structure, stacked per batch.
    """
    forward = _TRAINING_FORWARD.get(model)
    if forward is None:
        ref = weakref.ref(model)  # the cache must not keep the model alive

        def run(chunks):
            net = ref()
            example = keras.KerasTensor((None, *chunks.shape[2:]), dtype=chunks.dtype)
            signature = tf.nest.map_structure(
                lambda spec: tf.TensorSpec((None, *spec.shape[1:]), spec.dtype),
                net.compute_output_spec(example))
            return tf.map_fn(lambda xb: net(xb, training=True), chunks,
                             fn_output_signature=signature, parallel_iterations=1)

        forward = tf.function(run, reduce_retracing=True)
        _TRAINING_FORWARD[model] = forward
    return forward


# --------------------------------------------------------------------------- #
# Training-mode evaluation and population statistics
# --------------------------------------------------------------------------- #

def predict_training_mode(model: keras.Model, x: np.ndarray, *,
                          batch_size: int = 256) -> np.ndarray:
    """Outputs of ``model(x_batch, training=True)`` for consecutive batches of ``x``.

    Each batch of ``batch_size`` examples (the last one may be smaller) is
    normalized by its **own** mean and variance, as during training, so the
    result depends on the evaluation batch size; with ``batch_size=1`` every BN
    layer on a Dense output returns its ``beta``. Any other layer that behaves
    differently in training (Dropout, :class:`NoisyShift`) is in training mode
    as well. The model's moving statistics and random states are restored
    afterwards: this is a read-only probe. A model with several outputs gives
    a list of arrays.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    forward = _training_forward(model)
    n_full = len(x) // batch_size * batch_size
    per_call = max(1, 4096 // batch_size)  # batches per compiled call
    pieces = []
    with _KeepState(model.non_trainable_variables):
        for start in range(0, n_full, per_call * batch_size):
            part = x[start:min(n_full, start + per_call * batch_size)]
            chunks = part.reshape(-1, batch_size, *x.shape[1:])
            result = forward(tf.constant(chunks))
            pieces.append(tf.nest.map_structure(
                lambda r, n=len(part): np.asarray(r).reshape(n, *r.shape[2:]), result))
        if n_full < len(x):  # the last, smaller batch
            result = forward(tf.constant(x[None, n_full:]))
            pieces.append(tf.nest.map_structure(lambda r: np.asarray(r)[0], result))
    return tf.nest.map_structure(lambda *arrays: np.concatenate(arrays), *pieces)


def accuracy_training_mode(model: keras.Model, x: np.ndarray, y: np.ndarray, *,
                           batch_size: int = 256) -> float:
    """Accuracy when every batch of ``batch_size`` is normalized by its own statistics.

    See :func:`predict_training_mode`; ``bnbook.training.accuracy`` is the
    inference-mode counterpart (moving statistics).
    """
    probs = predict_training_mode(model, x, batch_size=batch_size)
    return float(np.mean(np.argmax(probs, axis=-1) == y))


def layer_input(model: keras.Model, layer: keras.layers.Layer | int, x: np.ndarray, *,
                training: bool = False, batch_size: int = 1024) -> np.ndarray:
    """What ``layer`` (a layer of ``model``, or its index in ``model.layers``) receives
    when ``model`` is applied to ``x``.

    ``training=False`` runs the layers before it in inference mode (BN uses its
    moving statistics, Dropout is off); ``training=True`` runs them as during
    training (each batch of ``batch_size`` normalized by its own statistics,
    Dropout on), with the model's state restored afterwards. An ``x`` of at
    most ``batch_size`` examples is one batch, run eagerly: nothing is
    compiled, so it is cheap to call at every probe of a training run. For an
    MLP built as Dense -> BN -> Activation, the input of an ``Activation``
    layer is the pre-activation the nonlinearity sees, the quantity Ioffe &
    Szegedy (2015, Fig. 1) plot. The model must have a defined input (built
    from ``keras.Input``), so that ``layer.input`` exists.
    """
    if isinstance(layer, int):
        if not -len(model.layers) <= layer < len(model.layers):
            raise IndexError(f"model has {len(model.layers)} layers; index {layer} is out of range")
        layer = model.layers[layer]
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    probe = keras.Model(inputs, layer.input)
    if len(x) <= batch_size:
        with _KeepState(model.non_trainable_variables if training else []):
            return np.asarray(probe(x, training=training))
    if training:
        return predict_training_mode(probe, x, batch_size=batch_size)
    return predict_proba(probe, x, batch_size=batch_size)  # eager: a probe model is used once


def recompute_bn_statistics(model: keras.Model, x: np.ndarray, *,
                            batch_size: int = 1024) -> dict[str, float]:
    """PreciseBN: replace every BN layer's moving statistics by population statistics.

    With the weights frozen, the layers are visited in order. For each BN
    layer, its input is computed on all of ``x`` in inference mode (so the BN
    layers before it already use their recomputed statistics), and its
    ``moving_mean`` and ``moving_variance`` are set to the exact mean and
    (biased, as in Keras) variance of that input over ``x``, per feature
    (over every axis but ``layer.axis``). Dropout is off, as at inference.

    Wu & Johnson (2021) recompute the statistics in this spirit after training,
    instead of trusting the exponential moving average, which mixes statistics
    of many older weights; 10^3 to 10^4 examples are enough.

    Returns, per layer name, the mean absolute change of the moving variance
    relative to its new value (a measure of how stale the average was).
    """
    changes: dict[str, float] = {}
    for layer in bn_layers(model):
        inputs = layer_input(model, layer, x, training=False, batch_size=batch_size)
        axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
        axis = axis % inputs.ndim
        reduce = tuple(i for i in range(inputs.ndim) if i != axis)
        values = inputs.astype(np.float64)
        mean = values.mean(axis=reduce)
        variance = values.var(axis=reduce)
        old_variance = np.asarray(layer.moving_variance.numpy(), dtype=np.float64)
        changes[layer.name] = float(np.mean(np.abs(old_variance - variance)
                                            / (variance + layer.epsilon)))
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(variance.astype(np.float32))
    return changes


# --------------------------------------------------------------------------- #
# Noisy BN
# --------------------------------------------------------------------------- #

@keras.saving.register_keras_serializable(package="bnbook")
class NoisyShift(keras.layers.Layer):
    """Random per-feature scale and shift, redrawn at every training step.

    In training mode the layer returns ``x * a + b`` where, for each feature
    ``j``, ``a_j ~ U(scale_min, scale_max)`` and ``b_j ~ U(-shift, shift)`` are
    drawn afresh at every call, the same for all examples of the batch. Placed
    after a BN layer, it makes the distribution that the next layer sees move
    at every step: the "noisy BN" of Santurkar et al. (2018), an injected
    internal covariate shift of non-zero mean and non-unit variance. At
    inference the layer is the identity.
    """

    def __init__(self, shift: float = 0.5, scale_min: float = 1.0,
                 scale_max: float = 1.5, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if shift < 0 or not 0 < scale_min <= scale_max:
            raise ValueError("need shift >= 0 and 0 < scale_min <= scale_max")
        self.shift = float(shift)
        self.scale_min = float(scale_min)
        self.scale_max = float(scale_max)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        features = inputs.shape[-1]
        scale = keras.random.uniform((features,), self.scale_min, self.scale_max,
                                     seed=self.seed_generator, dtype=inputs.dtype)
        shift = keras.random.uniform((features,), -self.shift, self.shift,
                                     seed=self.seed_generator, dtype=inputs.dtype)
        return inputs * scale + shift

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "shift": self.shift, "scale_min": self.scale_min,
                "scale_max": self.scale_max, "seed": self.seed}


# --------------------------------------------------------------------------- #
# Landscape probes
# --------------------------------------------------------------------------- #

@dataclass
class Smoothness:
    """The loss and gradient at points ``theta - eta * g`` along the gradient ``g``.

    ``step_sizes`` are the ``eta``; ``losses[i]`` and ``gradient_changes[i]``
    (``||grad(theta - eta_i g) - g||``) belong to ``step_sizes[i]``, and
    ``distances[i] = eta_i ||g||``. The summaries are Santurkar et al.'s:
    the range of the loss, the largest change of the gradient, and the
    effective beta-smoothness, the largest gradient change per unit distance.
    """

    step_sizes: np.ndarray
    loss_at_start: float
    gradient_norm: float
    losses: np.ndarray
    gradient_changes: np.ndarray
    distances: np.ndarray

    @property
    def loss_range(self) -> float:
        values = np.append(self.losses, self.loss_at_start)
        return float(np.max(values) - np.min(values))

    @property
    def max_gradient_change(self) -> float:
        return float(np.max(self.gradient_changes))

    @property
    def effective_beta(self) -> float:
        return float(np.max(self.gradient_changes / np.maximum(self.distances, 1e-12)))


def _flat(tensors: Sequence[tf.Tensor]) -> tf.Tensor:
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)


#: One compiled loss-and-gradient function per model (default loss only).
_LOSS_AND_GRADIENT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _loss_and_gradient(model: keras.Model, loss: Callable | None) -> Callable:
    """A compiled ``(x, y) -> (loss, flat gradient)`` in training mode."""
    if loss is None and model in _LOSS_AND_GRADIENT:
        return _LOSS_AND_GRADIENT[model]
    loss_fn = loss or keras.losses.SparseCategoricalCrossentropy()
    ref = weakref.ref(model)

    @tf.function(reduce_retracing=True)
    def loss_and_gradient(xb, yb):
        net = ref()
        with tf.GradientTape() as tape:
            value = loss_fn(yb, net(xb, training=True))
        return value, _flat(tape.gradient(value, net.trainable_variables))

    if loss is None:
        _LOSS_AND_GRADIENT[model] = loss_and_gradient
    return loss_and_gradient


def smoothness_along_gradient(model: keras.Model, x: np.ndarray, y: np.ndarray,
                              step_sizes: Sequence[float], *,
                              loss: Callable | None = None) -> Smoothness:
    """Probe the loss landscape along the gradient of one batch ``(x, y)``.

    The loss and its gradient with respect to the trainable weights are
    computed in training mode (BN uses the statistics of ``x``) at the current
    weights ``theta`` and at ``theta - eta * g`` for every ``eta`` in
    ``step_sizes``. ``loss`` defaults to sparse categorical cross-entropy on
    probabilities (the book's models end in a softmax). The weights and the
    moving statistics are restored afterwards.
    """
    loss_and_gradient = _loss_and_gradient(model, loss)
    variables = model.trainable_variables
    xb, yb = tf.constant(x), tf.constant(y)

    with _KeepState(list(model.trainable_variables) + list(model.non_trainable_variables)):
        start = [np.array(v.numpy()) for v in variables]
        loss0, grad0 = loss_and_gradient(xb, yb)
        sizes = [int(np.prod(v.shape)) for v in variables]
        pieces = np.split(grad0.numpy(), np.cumsum(sizes)[:-1])
        losses, changes = [], []
        for eta in step_sizes:
            for variable, value, g in zip(variables, start, pieces):
                variable.assign(value - eta * g.reshape(value.shape))
            value, grad = loss_and_gradient(xb, yb)
            losses.append(float(value))
            changes.append(float(tf.norm(grad - grad0)))
    norm = float(tf.norm(grad0))
    etas = np.asarray(step_sizes, dtype=float)
    return Smoothness(etas, float(loss0), norm, np.array(losses), np.array(changes),
                      etas * norm)


# --------------------------------------------------------------------------- #
# Cost
# --------------------------------------------------------------------------- #

def compiled_train_steps(model: keras.Model, x: np.ndarray, y: np.ndarray,
                         steps: int) -> Callable[[], None]:
    """A function that runs ``steps`` training steps on the batch ``(x, y)`` in one compiled call.

    Each step is Keras' own ``model.train_step`` (forward, loss, gradients,
    optimizer update, metrics), the function ``fit`` runs for every batch, so
    timing the returned function measures the step itself, without the
    per-call work of ``fit`` (data iterators, callbacks). The model must be
    compiled and have been trained at least once (``fit`` builds the optimizer
    and the metrics). Calling the function trains the model.
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    xb, yb = tf.constant(x), tf.constant(y)

    @tf.function
    def run() -> None:
        for _ in tf.range(steps):
            model.train_step((xb, yb))

    return lambda: run()


def warm_times(functions: Mapping[str, Callable[[], object]], *, repeats: int = 7,
               warmup: int = 2, keep: Literal["median", "fastest"] = "median") -> dict[str, float]:
    """Wall seconds of one call of each function, warm, measured fairly between them.

    After ``warmup`` untimed calls of each (tracing, compilation, caches), runs
    ``repeats`` rounds in which every function is called once, in turn, so a
    slow phase of the machine (another process, a frequency change) hits all
    of them alike. Keeps per function the median of its rounds (robust to the
    odd slow call) or, with ``keep="fastest"``, its fastest round (the least
    disturbed; the most stable *ratio* on a busy machine).
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    pick = min if keep == "fastest" else statistics.median
    return {name: float(pick(values)) for name, values in times.items()}


def activation_floats(model: keras.Model) -> dict[str, int]:
    """Floats each layer outputs per example (the batch dimension left out).

    Backpropagation keeps (roughly) these outputs alive between the forward and
    the backward pass, so their sum, times the batch size and 4 bytes, is a
    proxy for the activation memory of a training step.
    """
    counts = {}
    for layer in model.layers:
        shape = layer.output.shape[1:]
        counts[layer.name] = int(np.prod(shape))
    return counts
