"""Measure a model without changing it: predictions, accuracy and loss, layer inputs, gradients, smoothness.

Everything here leaves the model as it found it (weights, moving statistics,
random-generator states), so a measurement can run in the middle of an
experiment. Functions that change a model on purpose live in
:mod:`bnbook.models`; functions that time one live in :mod:`bnbook.timing`.

* :func:`predict` and :func:`evaluate`: outputs, then ``(loss, accuracy)``,
  in **inference mode** (BN uses its moving statistics) or in **training
  mode** (each evaluation batch normalized by its own statistics);
  :func:`accuracy` is the one accuracy function of the book;
  :func:`evaluate_outputs` does the same for each output of a model with
  several (:func:`bnbook.models.side_by_side`).
* :func:`unit_weight_norms`, :func:`scale_invariant_layers`,
  :func:`effective_learning_rates`: the weights BN makes scale-invariant, their
  norms, and the learning rate their direction effectively sees.
* :func:`layer_input`: what any layer receives, in either mode.
* :func:`kernel_gradient_norms`: the gradient reaching each Dense or Conv kernel.
* :func:`smoothness_along_gradient`: the loss and gradient along the gradient
  direction, as in Santurkar et al. (2018).
* :func:`dead_relu_share`: how many ReLUs output zero for every example.
* :func:`activation_floats`, :func:`bn_layers`, :func:`steps_to_reach`:
  counting and reading helpers.

The functions assume the TensorFlow backend, as the rest of the book does.
Images may be float32 in [0, 1] or the loader's uint8 grey levels, which
are scaled one chunk at a time (:func:`bnbook.data.scale_pixels`).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from bnbook.data import scale_pixels

__all__ = [
    "Smoothness",
    "accuracy",
    "activation_floats",
    "bn_layers",
    "dead_relu_share",
    "effective_learning_rates",
    "evaluate",
    "evaluate_outputs",
    "kernel_gradient_norms",
    "layer_input",
    "predict",
    "scale_invariant_layers",
    "smoothness_along_gradient",
    "steps_to_reach",
    "unit_weight_norms",
]

#: Examples per eager call in inference mode (the result does not depend on it).
INFERENCE_CHUNK = 2048
#: The evaluation batch in training mode, where each batch's own statistics matter.
TRAINING_BATCH = 256


def bn_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The model's ``BatchNormalization`` layers, in the order of ``model.layers``."""
    return [layer for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


class KeepState:
    """Context manager: restore the given variables' values on exit."""

    def __init__(self, variables: Sequence[keras.Variable]) -> None:
        self.variables = list(variables)
        self.saved: list[np.ndarray] = []

    def __enter__(self) -> KeepState:
        self.saved = [np.array(v.numpy()) for v in self.variables]
        return self

    def __exit__(self, *exc: object) -> None:
        for variable, value in zip(self.variables, self.saved):
            variable.assign(value)


def _floats(x: np.ndarray) -> np.ndarray:
    """Images as the models see them: uint8 grey levels scaled to [0, 1], floats as they are."""
    return scale_pixels(x) if x.dtype == np.uint8 else x


# --------------------------------------------------------------------------- predictions
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


def _predict_training_mode(model: keras.Model, x: np.ndarray, batch_size: int):
    forward = _training_forward(model)
    n_full = len(x) // batch_size * batch_size
    per_call = max(1, 4096 // batch_size)  # batches per compiled call
    pieces = []
    with KeepState(model.non_trainable_variables):
        for start in range(0, n_full, per_call * batch_size):
            part = _floats(x[start:min(n_full, start + per_call * batch_size)])
            chunks = part.reshape(-1, batch_size, *x.shape[1:])
            result = forward(tf.constant(chunks))
            pieces.append(tf.nest.map_structure(
                lambda r, n=len(part): np.asarray(r).reshape(n, *r.shape[2:]), result))
        if n_full < len(x):  # the last, smaller batch
            result = forward(tf.constant(_floats(x[None, n_full:])))
            pieces.append(tf.nest.map_structure(lambda r: np.asarray(r)[0], result))
    return tf.nest.map_structure(lambda *arrays: np.concatenate(arrays), *pieces)


def predict(model: keras.Model, x: np.ndarray, *, training: bool = False,
            batch_size: int | None = None) -> np.ndarray:
    """The model's outputs on ``x`` as a NumPy array, in inference or training mode.

    * ``training=False`` (inference): BN uses its moving statistics, Dropout is
      off. The model is called eagerly in chunks of ``batch_size`` (default
      2,048), not through ``model.predict``: nothing is traced or compiled,
      which matters in sweeps of dozens of short-lived models; the outputs
      are those of ``model.predict``. The chunk size does not change them.
    * ``training=True``: each batch of ``batch_size`` examples (default 256;
      the last may be smaller) is normalized by its **own** mean and variance,
      as during training, so the result depends on the evaluation batch
      size; with ``batch_size=1`` a BN layer on a Dense output returns its
      ``beta``. Dropout and other training-only layers are on too. The
      model's moving statistics and random states are restored afterwards.

    A model with several outputs gives a structure of arrays.
    """
    size = batch_size if batch_size is not None else (TRAINING_BATCH if training else INFERENCE_CHUNK)
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    if training:
        return _predict_training_mode(model, x, size)
    chunks = [model(_floats(x[i:i + size]), training=False) for i in range(0, len(x), size)]
    return tf.nest.map_structure(lambda *parts: np.concatenate([np.asarray(p) for p in parts]),
                                 *chunks)


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray, *, training: bool = False,
             batch_size: int | None = None) -> tuple[float, float]:
    """``(loss, accuracy)`` of a softmax classifier, in inference mode unless ``training``.

    The loss is the mean sparse categorical cross-entropy. A model whose
    outputs are not finite (a diverged run) gets ``loss = nan`` and the
    accuracy of its arg-max, which for all-NaN outputs is the share of class 0.
    ``training`` and ``batch_size`` as in :func:`predict`. For a model with
    several outputs, use :func:`evaluate_outputs`.
    """
    probs = predict(model, x, training=training, batch_size=batch_size)
    if not isinstance(probs, np.ndarray):
        raise ValueError("the model has several outputs: use evaluate_outputs, which scores "
                         "each of them")
    return _loss_and_accuracy(probs, y)


def evaluate_outputs(model: keras.Model, x: np.ndarray, y: np.ndarray, *,
                     training: bool = False,
                     batch_size: int | None = None) -> list[tuple[float, float]]:
    """:func:`evaluate` for each output of a model with one or several softmax outputs,
    in the order of ``model.outputs``; all from one pass over ``x``."""
    probs = predict(model, x, training=training, batch_size=batch_size)
    outputs = [probs] if isinstance(probs, np.ndarray) else list(probs)
    return [_loss_and_accuracy(p, y) for p in outputs]


def _loss_and_accuracy(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    labels = np.asarray(y, dtype=np.int64)
    if not np.all(np.isfinite(probs)):
        loss = math.nan
    else:
        picked = probs[np.arange(len(labels)), labels]
        loss = float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))
    return loss, float(np.mean(np.argmax(probs, axis=-1) == labels))


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, *, training: bool = False,
             batch_size: int | None = None) -> float:
    """Share of ``x`` classified as ``y``: inference mode (moving statistics) unless ``training``."""
    return evaluate(model, x, y, training=training, batch_size=batch_size)[1]


# --------------------------------------------------------------------------- inside the network
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
        with KeepState(model.non_trainable_variables if training else []):
            return np.asarray(probe(_floats(x), training=training))
    return predict(probe, x, training=training, batch_size=batch_size)


def _kernel_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))]


def kernel_gradient_norms(model: keras.Model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The L2 norm of the loss gradient for each Dense or Conv2D kernel, in layer order.

    The loss is the mean sparse categorical cross-entropy of ``model`` on
    ``(x, y)`` in training mode, as in one optimizer step (BN uses the
    statistics of ``x``). The moving statistics are restored afterwards, so
    the model is left as it was. Small norms in the first layers of a deep
    network are the vanishing-gradient problem, measured; large ones the
    exploding gradients of deep plain BN networks at initialization.
    """
    kernels = [layer.kernel for layer in _kernel_layers(model)]
    with KeepState(model.non_trainable_variables):
        with tf.GradientTape() as tape:
            probs = model(_floats(x), training=True)
            loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, probs))
        grads = tape.gradient(loss, kernels)
    return np.array([float(np.linalg.norm(np.asarray(g))) for g in grads])


def unit_weight_norms(layer: keras.layers.Layer) -> np.ndarray:
    """The L2 norm of each output unit's incoming weights: ``||W[..., j]||`` for every ``j``.

    For a Dense kernel of shape ``(inputs, units)`` these are the column
    norms, shape ``(units,)``; for a convolution, one norm per output channel
    over the kernel's other axes.
    """
    kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
    return np.sqrt(np.sum(kernel ** 2, axis=tuple(range(kernel.ndim - 1))))


def scale_invariant_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The Dense and Conv2D layers of ``model.layers`` whose output goes straight into BN.

    With the batch statistics of training, ``BN(c * W x) = BN(W x)`` for every
    ``c > 0``, and each unit's column ``W[:, j]`` can be scaled alone: the
    function does not depend on these weights' norms, only on their
    directions (Ioffe & Szegedy 2015, section 3.3). The layer must have no
    bias, or one scaled with it; the book's models drop it before BN.
    """
    layers = model.layers
    return [layer for layer, after in zip(layers, layers[1:])
            if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))
            and isinstance(after, keras.layers.BatchNormalization)]


def effective_learning_rates(model: keras.Model, learning_rate: float) -> dict[str, np.ndarray]:
    """``learning_rate / ||w_j||^2`` for each unit ``j`` of each scale-invariant layer.

    For a weight vector ``w`` that the function sees only through its
    direction ``w / ||w||``, the gradient is orthogonal to ``w`` and shrinks
    as ``1 / ||w||``; an SGD step of rate ``eta`` turns the direction by about
    ``eta * ||grad at unit norm|| / ||w||^2``: the direction learns at the
    *effective* rate ``eta / ||w||^2`` (van Laarhoven 2017; Zhang et al. 2019).
    Growing norms slow it down; weight decay, which shrinks them, speeds it
    up. Keys are layer names (:func:`scale_invariant_layers`), values have
    shape ``(units,)``.
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    return {layer.name: learning_rate / unit_weight_norms(layer) ** 2
            for layer in scale_invariant_layers(model)}


def activation_floats(model: keras.Model) -> dict[str, int]:
    """Floats each layer outputs per example (the batch dimension left out).

    Backpropagation keeps (roughly) these outputs alive between the forward and
    the backward pass, so their sum, times the batch size and 4 bytes, is a
    proxy for the activation memory of a training step.
    """
    return {layer.name: int(np.prod(layer.output.shape[1:])) for layer in model.layers}


_RELU_OUTPUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _is_relu(layer: keras.layers.Layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return True
    return (isinstance(layer, keras.layers.Activation)
            and getattr(layer.activation, "__name__", "") == "relu")


def dead_relu_share(model: keras.Model, x: np.ndarray) -> float:
    """The largest share, over the ReLU layers of ``model``, of dead units on ``x``.

    A unit is dead on ``x`` when it outputs 0 for every example (shape
    ``(examples, ...)``), in inference mode; no gradient flows through it, so
    training cannot revive it from these examples. The ReLU layers are the
    ``Activation("relu")`` and ``ReLU`` layers among ``model.layers``; for each
    the share is (dead units) / (units), and the largest is returned, from 0.0
    (none dead) to 1.0 (some layer entirely dead: everything after it sees the
    same input for every example). The probe model is made once per model.
    """
    if model not in _RELU_OUTPUTS:
        relus = [layer for layer in model.layers if _is_relu(layer)]
        if not relus:
            raise ValueError("the model has no ReLU layer (Activation('relu') or ReLU) "
                             "among model.layers; dead_relu_share has nothing to count")
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        _RELU_OUTPUTS[model] = keras.Model(inputs, [layer.output for layer in relus])
    outputs = predict(_RELU_OUTPUTS[model], x)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return max(float(np.mean(np.all(np.asarray(o) <= 0, axis=0))) for o in outputs)


# --------------------------------------------------------------------------- landscape
@dataclass
class Smoothness:
    """The loss and gradient at points ``theta - eta * g`` along the gradient ``g``.

    ``step_sizes`` are the ``eta``; ``losses[i]`` and ``gradient_changes[i]``
    (``||grad(theta - eta_i g) - g||``) belong to ``step_sizes[i]``, and
    ``distances[i] = eta_i ||g||``. The summaries are Santurkar et al.'s:
    the range of the loss, the largest change of the gradient, and the
    effective smoothness, the largest gradient change per unit distance.
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
    def effective_smoothness(self) -> float:
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
    xb, yb = tf.constant(_floats(x)), tf.constant(y)

    with KeepState(list(model.trainable_variables) + list(model.non_trainable_variables)):
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


# --------------------------------------------------------------------------- reading curves
def steps_to_reach(steps: Sequence[float], values: Sequence[float], target: float) -> float:
    """The first ``steps[i]`` at which ``values[i] >= target``; ``inf`` if never.

    Works for any monotone x axis: pass recorded seconds instead of steps to
    get the time to reach the target.
    """
    for step, value in zip(steps, values):
        if np.isfinite(value) and value >= target:
            return float(step)
    return math.inf
