"""Create or change models: the book's configurable MLP, its layers and initializers, and PreciseBN.

The chapters write the models a reader must learn in full (see the
replication chapter). Experiments that compare many variants of one model --
with or without normalization, deeper, another initializer -- build them
here, so every variant differs only in the argument being studied. Every
function here either returns a new model or layer, or changes a model it is
given (its weights or its moving statistics), and says so; measuring a model
without changing it is :mod:`bnbook.measure`'s job.

* :func:`build_mlp`, :func:`normalization_layer`: the MLP and its normalization layers.
* :func:`side_by_side`, :func:`branch`: several networks in one model, trained
  as if apart (the variants of one seed in one run).
* :func:`build_sequence_classifier`, :class:`PaddingMask`: a small model of
  padded sequences (rows of an image as time steps), normalized per position.
* :class:`NoisyShift`: a layer that injects a random shift after BN ("noisy BN").
* :class:`GhostBatchNormalization`: BN whose training statistics come from sub-batches.
* :func:`gaussian_kernels`: an initializer hook that redraws every Dense kernel.
* :func:`recompute_bn_statistics`: PreciseBN, population statistics into every BN layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import keras
import numpy as np

from bnbook.measure import bn_layers, layer_input

__all__ = [
    "GhostBatchNormalization",
    "Normalization",
    "NoisyShift",
    "PaddingMask",
    "branch",
    "build_mlp",
    "build_sequence_classifier",
    "gaussian_kernels",
    "normalization_layer",
    "recompute_bn_statistics",
    "side_by_side",
]

Normalization = Literal["none", "batch", "layer", "group", "rms"]


def normalization_layer(kind: Normalization, *, groups: int = 10,
                        momentum: float = 0.99, decay: float = 0.0, name: str | None = None
                        ) -> keras.layers.Layer | None:
    """The Keras layer for ``kind``; ``None`` for ``"none"``.

    ``"rms"`` is ``keras.layers.RMSNormalization`` (Zhang & Sennrich 2019):
    each example's features divided by their root mean square, times a
    learned scale, with no centring and no shift. ``decay`` puts weight decay
    on the layer's scale and shift (see :func:`build_mlp`).
    """
    regularizer = _decay(decay)
    if kind == "none":
        return None
    if kind == "batch":
        return keras.layers.BatchNormalization(momentum=momentum, name=name,
                                               gamma_regularizer=regularizer,
                                               beta_regularizer=regularizer)
    if kind == "layer":
        return keras.layers.LayerNormalization(name=name, gamma_regularizer=regularizer,
                                               beta_regularizer=regularizer)
    if kind == "group":
        return keras.layers.GroupNormalization(groups=groups, name=name,
                                               gamma_regularizer=regularizer,
                                               beta_regularizer=regularizer)
    if kind == "rms":
        if decay:
            raise ValueError("decay is not supported for 'rms' (RMSNormalization has no "
                             "regularizer argument)")
        return keras.layers.RMSNormalization(name=name)
    raise ValueError(f"unknown normalization {kind!r}; use 'none', 'batch', 'layer', 'group' "
                     "or 'rms'")


def _decay(weight_decay: float) -> keras.regularizers.Regularizer | None:
    """The L2 penalty whose gradient step is SGD weight decay ``weight_decay``.

    A penalty ``(lambda / 2) * sum(w**2)`` adds ``lambda * w`` to the gradient,
    so plain SGD with rate ``eta`` shrinks ``w`` by the factor
    ``1 - eta * lambda`` per step besides its gradient step; Keras' ``L2(l2)``
    adds ``l2 * sum(w**2)``, hence ``l2 = lambda / 2``.
    """
    if weight_decay < 0:
        raise ValueError(f"weight decay must be at least 0, got {weight_decay}")
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


def build_mlp(hidden_units: Sequence[int] = (300, 100), *,
              activation: str = "relu",
              normalization: Normalization = "none",
              placement: Literal["before", "after"] = "before",
              kernel_initializer: str | keras.initializers.Initializer = "he_normal",
              dropout: float = 0.0,
              num_classes: int = 10,
              input_shape: tuple[int, ...] = (28, 28),
              input_normalization: bool = False,
              weight_decay: float = 0.0,
              normalization_decay: float = 0.0,
              name: str | None = None) -> keras.Sequential:
    """Flatten -> (BN) -> [Dense -> (norm) -> activation -> (norm) -> (Dropout)] * k -> softmax.

    ``placement="before"`` normalizes the Dense output before the activation,
    as Ioffe & Szegedy (2015) do, and drops the Dense bias (the norm's shift
    replaces it); ``"after"`` normalizes the activation's output. With
    ``normalization="none"`` the layers are Dense -> activation. A Dropout
    layer with rate ``dropout`` follows each hidden block when ``dropout > 0``.

    ``input_normalization=True`` puts a BN layer right after Flatten, as the
    original notebook's BN model has: a learned standardization of every
    pixel (784 features), whatever ``normalization`` is.

    ``weight_decay`` (lambda) puts an L2 penalty ``(lambda / 2) * ||W||^2`` on
    the *hidden* Dense kernels, so that plain SGD at rate ``eta`` shrinks them
    by ``1 - eta * lambda`` per step; ``normalization_decay`` does the same
    for the normalization layers' scale and shift (gamma, beta). The output
    layer is never decayed: with BN after every hidden kernel, these are the
    weights whose scale the function does not depend on.
    """
    if placement not in ("before", "after"):
        raise ValueError(f"placement must be 'before' or 'after', not {placement!r}")
    layers: list[keras.layers.Layer] = [keras.Input(shape=input_shape), keras.layers.Flatten()]
    if input_normalization:
        layers.append(keras.layers.BatchNormalization())
    for units in hidden_units:
        norm = normalization_layer(normalization, decay=normalization_decay)
        use_bias = norm is None or placement == "after"
        layers.append(keras.layers.Dense(units, use_bias=use_bias,
                                         kernel_initializer=kernel_initializer,
                                         kernel_regularizer=_decay(weight_decay)))
        if norm is not None and placement == "before":
            layers.append(norm)
        layers.append(keras.layers.Activation(activation))
        if norm is not None and placement == "after":
            layers.append(norm)
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(num_classes, activation="softmax",
                                     kernel_initializer=kernel_initializer))
    return keras.Sequential(layers, name=name)


def side_by_side(branches: Mapping[str, Callable[[], keras.Model]], *,
                 seed: int | None = None) -> keras.Model:
    """One model whose outputs are several independent networks on the same input.

    ``branches`` maps a name to a function that builds a fresh model (all with
    the same input shape). Each is built, after ``set_random_seed(seed)``
    when ``seed`` is given, so that layers they share start equal, exactly as
    separate builds from that seed; output ``i`` is branch ``i``, named by its
    key. Compiled with one loss for every output (Keras sums them, each with
    weight 1), one training step updates every branch with the gradient of
    its own loss alone, with the same batch: for optimizers that update each
    weight from its own gradient (SGD, momentum, Adam, weight decay) every
    branch trains exactly as it would alone, and the variants of one seed
    train in one run. A branch whose loss stops being finite does not touch
    the others. :func:`branch` takes one out again.
    """
    if not branches:
        raise ValueError("side_by_side needs at least one branch")
    for name in branches:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"branch name {name!r} is not a valid Keras name: use letters, "
                             "digits, '_', '.' and '-' (no spaces)")
    built = {}
    for name, build in branches.items():
        if seed is not None:
            keras.utils.set_random_seed(seed)
        net = build()
        net.name = f"{name}_net"
        built[name] = net
    first = next(iter(built.values()))
    shape = tuple(first.inputs[0].shape[1:])
    for name, net in built.items():
        if tuple(net.inputs[0].shape[1:]) != shape:
            raise ValueError(f"branch {name!r} takes inputs of shape "
                             f"{tuple(net.inputs[0].shape[1:])}, not {shape}")
    inputs = keras.Input(shape=shape)
    outputs = [keras.layers.Identity(name=name)(net(inputs)) for name, net in built.items()]
    return keras.Model(inputs, outputs, name="side_by_side")


def branch(model: keras.Model, name: str) -> keras.Model:
    """The network of ``model`` (made by :func:`side_by_side`) under ``name``; it shares the
    weights, so changing one changes the other."""
    try:
        return model.get_layer(f"{name}_net")
    except ValueError:
        names = [layer.name[:-4] for layer in model.layers if layer.name.endswith("_net")]
        raise ValueError(f"no branch {name!r}; the branches are {names}") from None


@keras.saving.register_keras_serializable(package="bnbook")
class PaddingMask(keras.layers.Layer):
    """``True`` at the time steps of a padded sequence that hold data, ``False`` at padding.

    Input ``(batch, time, features)``; output ``(batch, time)``, a step is
    padding when all its features equal ``pad_value`` (choose a value the data
    never takes, as for Keras' ``Masking`` layer). Layers that accept
    ``mask=`` (BN, average pooling) then use only the real steps.
    """

    def __init__(self, pad_value: float = -1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pad_value = float(pad_value)

    def call(self, inputs):
        return keras.ops.any(keras.ops.not_equal(inputs, self.pad_value), axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "pad_value": self.pad_value}


def build_sequence_classifier(normalization: Normalization | Literal["batch_masked"] = "none",
                              *, units: Sequence[int] = (64,), time_steps: int = 28,
                              features: int = 28, pad_value: float = -1.0,
                              num_classes: int = 10) -> keras.Model:
    """Padded sequences -> [Dense -> (norm) -> ReLU] per time step -> masked mean -> softmax.

    The input is ``(batch, time_steps, features)``, padded at the end with
    steps whose features all equal ``pad_value``. Every hidden block acts on
    each time step alone; the mean over time counts only the real steps, so
    without normalization the padding cannot change the output.

    ``normalization`` as in :func:`normalization_layer`, with one twist for
    BN, which computes its statistics over the batch *and* the time steps:

    * ``"batch"``: over every step, padding included (what a BN layer does
      that is not given the mask, e.g. PyTorch's ``BatchNorm1d`` on a padded
      tensor);
    * ``"batch_masked"``: over the real steps only (Keras' BN given
      ``mask=``).

    LayerNorm and RMSNorm normalize each step over its own features, so the
    padding cannot reach the real steps.
    """
    inputs = keras.Input(shape=(time_steps, features))
    mask = PaddingMask(pad_value, name="padding_mask")(inputs)
    x = inputs
    for width in units:
        norm = normalization_layer("batch" if normalization == "batch_masked" else normalization)
        x = keras.layers.Dense(width, use_bias=norm is None)(x)
        if norm is not None:
            x = norm(x, mask=mask) if normalization == "batch_masked" else norm(x)
        x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x, mask=mask)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"sequences_{normalization}")


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


@keras.saving.register_keras_serializable(package="bnbook")
class GhostBatchNormalization(keras.layers.BatchNormalization):
    """Batch normalization with statistics over *ghost batches* of ``virtual_batch_size``.

    In training mode the batch of ``N`` examples is cut into ``N / v``
    consecutive sub-batches of ``v = virtual_batch_size``; each is normalized
    by its own mean and (biased) variance, then scaled by the shared ``gamma``
    and shifted by ``beta``::

        x_g     = x[g*v : (g+1)*v]                       # one ghost batch, (v, ..., C)
        x_hat_g = (x_g - mean(x_g)) / sqrt(var(x_g) + epsilon)
        out_g   = gamma * x_hat_g + beta

    The moving mean and variance are updated once per step, with the mean of
    the ghost batches' means and variances (as ``tf.keras`` did with its
    ``virtual_batch_size``). Inference mode is the ordinary BN with the moving
    statistics. This is the "ghost batch normalization" of Hoffer et al.
    (2017): the gradient of a large batch with the statistics, and the noise,
    of small ones; it is also what unsynchronized BN computes on each device
    of data-parallel training. The batch size must be a multiple of
    ``virtual_batch_size`` (draw full batches, e.g. ``repeated_batches``).
    Statistics are taken over every axis but ``axis`` (the channels).
    """

    def __init__(self, virtual_batch_size: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if int(virtual_batch_size) < 1:
            raise ValueError(f"virtual_batch_size must be at least 1, got {virtual_batch_size}")
        if kwargs.get("renorm"):
            raise ValueError("GhostBatchNormalization does not combine with renorm")
        self.virtual_batch_size = int(virtual_batch_size)

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable):
            return super().call(inputs, training=False, mask=mask)
        ndim = len(inputs.shape)
        axis = self.axis % ndim
        size = self.virtual_batch_size
        inputs = keras.ops.cast(inputs, "float32")
        ghosts = keras.ops.reshape(inputs, (-1, size, *inputs.shape[1:]))   # (G, v, ...)
        reduce = [1] + [i + 1 for i in range(1, ndim) if i != axis]
        mean = keras.ops.mean(ghosts, axis=reduce, keepdims=True)
        variance = keras.ops.var(ghosts, axis=reduce, keepdims=True)
        normalized = (ghosts - mean) / keras.ops.sqrt(variance + self.epsilon)
        if self.scale:
            normalized = normalized * self.gamma
        if self.center:
            normalized = normalized + self.beta
        momentum = self.momentum
        batch_mean = keras.ops.reshape(keras.ops.mean(mean, axis=0), (-1,))
        batch_variance = keras.ops.reshape(keras.ops.mean(variance, axis=0), (-1,))
        self.moving_mean.assign(self.moving_mean * momentum + batch_mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum
                                    + batch_variance * (1.0 - momentum))
        outputs = keras.ops.reshape(normalized, keras.ops.shape(inputs))
        return keras.ops.cast(outputs, self.compute_dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "virtual_batch_size": self.virtual_batch_size}


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
