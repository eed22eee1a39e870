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
* :func:`build_lenet`: LeNet-5 as in d2l, with any normalization after its layers.
* :func:`build_resnet`: a small residual (or plain) ConvNet: post- or
  pre-activation blocks, BN or none, SkipInit; :func:`zero_residual_gammas`
  and :class:`SkipInitScale` go with it.
* :class:`NoisyShift`: a layer that injects a random shift after BN ("noisy BN");
  :func:`noise_at_mean` fixes every such layer of a model at its mean for a while.
* :class:`GhostBatchNormalization`: BN whose training statistics come from sub-batches.
* :func:`gaussian_kernels`: an initializer hook that redraws every Dense kernel.
* :func:`redraw_kernels`: every kernel afresh from its own initializer (a new seed, no rebuild).
* :func:`recompute_bn_statistics`: PreciseBN, population statistics into every BN layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

import keras
import numpy as np

from bnbook.measure import bn_layers, layer_input

__all__ = [
    "GhostBatchNormalization",
    "Normalization",
    "NoisyShift",
    "PaddingMask",
    "RENORM_CLIPPING",
    "SkipInitScale",
    "branch",
    "build_lenet",
    "build_mlp",
    "build_resnet",
    "build_sequence_classifier",
    "gaussian_kernels",
    "noise_at_mean",
    "normalization_layer",
    "recompute_bn_statistics",
    "redraw_kernels",
    "side_by_side",
    "zero_residual_gammas",
]

Normalization = Literal["none", "batch", "renorm", "layer", "group", "rms"]

#: Batch renormalization's clipping of ``r`` to [1/3, 3] and ``d`` to [-5, 5]: the
#: final values of Ioffe (2017), used from the first step (Keras has no schedule).
RENORM_CLIPPING = {"rmin": 1 / 3, "rmax": 3.0, "dmax": 5.0}


def normalization_layer(kind: Normalization, *, groups: int = 10,
                        momentum: float = 0.99, decay: float = 0.0, name: str | None = None
                        ) -> keras.layers.Layer | None:
    """The Keras layer for ``kind``; ``None`` for ``"none"``.

    ``"batch"``: ``BatchNormalization(momentum)``; ``"renorm"``: the same with
    batch renormalization (:data:`RENORM_CLIPPING`, its own moving averages
    with the same ``momentum``); ``"layer"``: ``LayerNormalization``;
    ``"group"``: ``GroupNormalization(groups)``, which must divide the
    number of features (channels) of its input; ``"rms"``:
    ``RMSNormalization`` (Zhang & Sennrich 2019), each example's features
    divided by their root mean square, times a learned scale, with no
    centring and no shift. ``decay`` puts weight decay on the layer's scale
    and shift (see :func:`build_mlp`).
    """
    regularizer = _decay(decay)
    if kind == "none":
        return None
    if kind == "batch":
        return keras.layers.BatchNormalization(momentum=momentum, name=name,
                                               gamma_regularizer=regularizer,
                                               beta_regularizer=regularizer)
    if kind == "renorm":
        return keras.layers.BatchNormalization(momentum=momentum, renorm=True,
                                               renorm_clipping=dict(RENORM_CLIPPING),
                                               renorm_momentum=momentum, name=name,
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
    raise ValueError(f"unknown normalization {kind!r}; "
                     "use 'none', 'batch', 'renorm', 'layer', 'group' or 'rms'")


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
def _lenet_groups(channels: int, max_groups: int) -> int:
    """The most groups, at most ``max_groups``, that divide ``channels`` evenly."""
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


def build_lenet(*, activation: str = "sigmoid", normalization: Normalization = "none",
                normalize_dense: bool = True, momentum: float = 0.99, max_groups: int = 4,
                num_classes: int = 10, input_shape: tuple[int, int] = (28, 28),
                name: str | None = None) -> keras.Sequential:
    """LeNet-5 (LeCun et al., 1998) in the layout of d2l's BN-LeNet, normalization optional.

    Layers and the shape of one example's output (28 x 28 grey images)::

        Reshape                      (28, 28, 1)
        Conv2D 6 @ 5x5, same         (28, 28, 6)   -> [norm] -> activation
        AveragePooling2D 2           (14, 14, 6)
        Conv2D 16 @ 5x5, valid       (10, 10, 16)  -> [norm] -> activation
        AveragePooling2D 2           (5, 5, 16)
        Flatten                      (400,)
        Dense 120                    (120,)        -> [norm] -> activation
        Dense 84                     (84,)         -> [norm] -> activation
        Dense 10, softmax            (10,)

    ``normalization`` (see :func:`normalization_layer`) sits between each
    convolution or hidden Dense layer and its activation, as in Ioffe &
    Szegedy (2015); a normalized layer drops its bias (the norm's shift
    replaces it). With ``normalize_dense=False`` only the two convolutions
    are normalized and the Dense layers keep their bias. ``momentum`` is BN's
    (and batch renormalization's). GroupNorm gets, per layer, the most groups
    up to ``max_groups`` that divide its channels (3, 4, 4 and 4 with the
    default). Kernels start from Keras' default, Glorot uniform. Parameters:
    61,706 without normalization, 62,384 with BN after all four layers.
    """
    if len(input_shape) != 2:
        raise ValueError(f"input_shape is (height, width) of grey images, got {input_shape}")
    layers: list[keras.layers.Layer] = [keras.Input(shape=input_shape),
                                        keras.layers.Reshape((*input_shape, 1))]

    def add(make_layer: Callable[[bool], keras.layers.Layer], channels: int,
            normalized: bool) -> None:
        norm = (normalization_layer(normalization, groups=_lenet_groups(channels, max_groups),
                                    momentum=momentum) if normalized else None)
        layers.append(make_layer(norm is None))
        if norm is not None:
            layers.append(norm)
        layers.append(keras.layers.Activation(activation))

    add(lambda bias: keras.layers.Conv2D(6, 5, padding="same", use_bias=bias), 6, True)
    layers.append(keras.layers.AveragePooling2D(2))
    add(lambda bias: keras.layers.Conv2D(16, 5, use_bias=bias), 16, True)
    layers.append(keras.layers.AveragePooling2D(2))
    layers.append(keras.layers.Flatten())
    add(lambda bias: keras.layers.Dense(120, use_bias=bias), 120, normalize_dense)
    add(lambda bias: keras.layers.Dense(84, use_bias=bias), 84, normalize_dense)
    layers.append(keras.layers.Dense(num_classes, activation="softmax"))
    return keras.Sequential(layers, name=name)


@keras.saving.register_keras_serializable(package="bnbook")
class SkipInitScale(keras.layers.Layer):
    """Multiply the input by one learned scalar ``alpha``, initialized to ``initial`` (0).

    Placed at the end of each residual branch of a network without
    normalization, it is SkipInit (De & Smith, 2020): at initialization every
    block is the identity, ``x + 0 * f(x)``, the effect that BN achieves by
    shrinking the residual branch relative to the skip path.
    """

    def __init__(self, initial: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.initial = float(initial)

    def build(self, input_shape) -> None:
        self.alpha = self.add_weight(shape=(), name="alpha",
                                     initializer=keras.initializers.Constant(self.initial))

    def call(self, inputs):
        return inputs * keras.ops.cast(self.alpha, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "initial": self.initial}


def build_resnet(widths: Sequence[int] = (8, 16, 32), blocks_per_stage: int = 1, *,
                 normalization: Literal["batch", "none"] = "batch",
                 block: Literal["post", "pre"] = "post",
                 residual: bool = True, skipinit: bool = False,
                 zero_last_gamma: bool = False, stem_stride: int = 2,
                 momentum: float = 0.99, num_classes: int = 10,
                 input_shape: tuple[int, int] = (28, 28),
                 name: str | None = None) -> keras.Model:
    """A small ResNet of basic blocks (He et al., 2016), or the same network without skips.

    ``stem`` (Conv 3x3, ``widths[0]`` channels, stride ``stem_stride``) is
    followed by one stage per width, each of ``blocks_per_stage`` blocks; the
    first block of every stage after the first halves the height and width
    (stride 2) and its shortcut is a 1x1 projection. Global average pooling
    and a softmax Dense layer end the network. With the defaults the feature
    maps are 14x14x8, 7x7x16 and 4x4x32, and there are 7 convolutions plus
    2 projections. Convolutions start from He normal and have a bias only
    without normalization.

    ``block="post"`` is the original block, ``relu(x + bn(conv(relu(bn(conv(x))))))``;
    ``"pre"`` is the pre-activation block of He et al. (2016b),
    ``x + conv(relu(bn(conv(relu(bn(x))))))``, with one more BN and ReLU after
    the last block. ``normalization="none"`` removes every BN layer.
    ``residual=False`` drops the skip connections (a plain network of the
    same layers). ``skipinit=True`` multiplies each residual branch by a
    :class:`SkipInitScale` that starts at 0 (De & Smith, 2020).
    ``zero_last_gamma=True`` starts the last BN of each residual branch with
    gamma = 0 (Goyal et al., 2017), as :func:`zero_residual_gammas` does.

    Layer names: ``s{stage}b{block}_conv1``, ``_conv2``, ``_proj``, ``_skipinit``;
    BN layers ``_bn1``, ``_bn2`` (ends the branch), ``_proj_bn`` in post-activation
    blocks, ``_bn_in``, ``_bn_mid`` in pre-activation ones; ``stem``, ``stem_bn``,
    ``final_bn``, ``classifier``.
    """
    if not widths or blocks_per_stage < 1 or stem_stride < 1:
        raise ValueError("need at least one width, one block per stage and a stride >= 1")
    if block not in ("post", "pre"):
        raise ValueError(f"block must be 'post' or 'pre', not {block!r}")
    if normalization not in ("batch", "none"):
        raise ValueError(f"normalization must be 'batch' or 'none', not {normalization!r}")
    if skipinit and not residual:
        raise ValueError("skipinit scales residual branches: it needs residual=True")
    if zero_last_gamma and (normalization != "batch" or block != "post"):
        raise ValueError("zero_last_gamma needs BN and post-activation blocks, whose "
                         "residual branch ends in a BN layer")
    use_bn = normalization == "batch"

    def conv(h, channels: int, size: int, stride: int, name: str):
        return keras.layers.Conv2D(channels, size, strides=stride, padding="same",
                                   use_bias=not use_bn, kernel_initializer="he_normal",
                                   name=name)(h)

    def bn(h, name: str, gamma: str = "ones"):
        if not use_bn:
            return h
        return keras.layers.BatchNormalization(momentum=momentum, gamma_initializer=gamma,
                                               name=name)(h)

    def relu(h):
        return keras.layers.Activation("relu")(h)

    inputs = keras.Input(shape=input_shape)
    h = keras.layers.Reshape((*input_shape, 1))(inputs)
    h = conv(h, widths[0], 3, stem_stride, "stem")
    if block == "post":
        h = relu(bn(h, "stem_bn"))
    channels = widths[0]
    for s, width in enumerate(widths):
        for b in range(blocks_per_stage):
            stride = 2 if s > 0 and b == 0 else 1
            p = f"s{s}b{b}"
            project = residual and (stride != 1 or width != channels)
            if block == "post":
                f = relu(bn(conv(h, width, 3, stride, p + "_conv1"), p + "_bn1"))
                f = bn(conv(f, width, 3, 1, p + "_conv2"), p + "_bn2",
                       "zeros" if zero_last_gamma else "ones")
                skip = (bn(conv(h, width, 1, stride, p + "_proj"), p + "_proj_bn")
                        if project else h)
            else:
                a = relu(bn(h, p + "_bn_in"))
                f = relu(bn(conv(a, width, 3, stride, p + "_conv1"), p + "_bn_mid"))
                f = conv(f, width, 3, 1, p + "_conv2")
                skip = conv(a, width, 1, stride, p + "_proj") if project else h
            if skipinit:
                f = SkipInitScale(name=p + "_skipinit")(f)
            h = keras.layers.Add()([f, skip]) if residual else f
            if block == "post":
                h = relu(h)
            channels = width
    if block == "pre":
        h = relu(bn(h, "final_bn"))
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(h)
    return keras.Model(inputs, outputs, name=name)


def redraw_kernels(model: keras.Model) -> int:
    """Draw every Dense and Conv2D kernel afresh from its layer's own initializer; return how many.

    Biases, BN parameters and moving statistics are left as they are (at
    initialization they are constants anyway). Each kernel is drawn by a copy
    of its initializer (same distribution and scale) seeded from NumPy's
    global generator, so seed first (:func:`bnbook.training.set_seed`): the
    same seed gives the same kernels. (The layer's own initializer would draw
    the same values again: in Keras 3 an initializer fixes its seed when it is
    made.) Drawing new kernels into one model is much cheaper than building a
    deep model again for every seed; :func:`gaussian_kernels` draws from a
    chosen scale instead.
    """
    layers = [layer for layer in model._flatten_layers(include_self=False)
              if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))]
    for layer in layers:
        config = {**layer.kernel_initializer.get_config(),
                  "seed": int(np.random.randint(2**31 - 1))}
        draw = type(layer.kernel_initializer).from_config(config)
        layer.kernel.assign(draw(tuple(layer.kernel.shape), dtype=layer.kernel.dtype))
    return len(layers)


def zero_residual_gammas(model: keras.Model) -> int:
    """Set gamma of the last BN of every residual branch to 0 (Goyal et al., 2017); return how many.

    The layers are those :func:`build_resnet` names ``s{stage}b{block}_bn2`` in
    post-activation blocks, where that BN ends the branch, so each block
    starts as ``relu(x + 0)``: the identity on its (non-negative) input, plus
    the projection where there is one. Use it as a :class:`~bnbook.sweeps.Variant`
    ``initialize`` hook to compare with gamma = 1 on one compiled model.
    """
    layers = [layer for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization)
              and layer.name.endswith("_bn2") and layer.name.startswith("s")]
    if not layers:
        raise ValueError("no residual-branch BN layers (named 's*_bn2') in this model: "
                         "build it with build_resnet(normalization='batch', block='post')")
    for layer in layers:
        layer.gamma.assign(np.zeros(layer.gamma.shape, dtype="float32"))
    return len(layers)


def gaussian_kernels(stddev: float, seed: int = 0) -> Callable[[keras.Model], None]:
    """An ``initialize`` hook for ``Variant``: each Dense kernel from N(0, stddev^2).

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

    The moving mean and variance are updated once per step, with
    ``moving_statistics="mean"`` (the default) from the mean of the ghost
    batches' means and variances (as ``tf.keras`` did with its
    ``virtual_batch_size``), with ``"first"`` from the first ghost batch's
    alone: what the moving statistics of unsynchronized BN hold after
    data-parallel training, where each replica updates its own copy and the
    first replica's is the one read and saved. Inference mode is the ordinary
    BN with the moving statistics. This is the "ghost batch normalization" of Hoffer et al.
    (2017): the gradient of a large batch with the statistics, and the noise,
    of small ones; it is also what unsynchronized BN computes on each device
    of data-parallel training. The batch size must be a multiple of
    ``virtual_batch_size`` (draw full batches, e.g. ``repeated_batches``).
    Statistics are taken over every axis but ``axis`` (the channels).

    With ``renorm=True`` (and ``renorm_clipping``, ``renorm_momentum`` as in
    Keras' ``BatchNormalization``) each ghost batch is batch-renormalized
    (Ioffe, 2017), with Keras' own corrections and updates::

        r_g   = clip(sqrt(var(x_g) + epsilon) / s, rmin, rmax)   # s: renorm_stddev
        d_g   = clip((mean(x_g) - m) / s, -dmax, dmax)           # m: renorm_mean
        out_g = gamma * (x_hat_g * r_g + d_g) + beta              # r_g, d_g held constant

    The renorm and moving statistics are updated once per step from the mean
    over the ghost batches of their means and variances. Either way, a ghost
    batch of the whole batch is Keras' layer.
    """

    def __init__(self, virtual_batch_size: int, *,
                 moving_statistics: Literal["mean", "first"] = "mean", **kwargs) -> None:
        super().__init__(**kwargs)
        if int(virtual_batch_size) < 1:
            raise ValueError(f"virtual_batch_size must be at least 1, got {virtual_batch_size}")
        if moving_statistics not in ("mean", "first"):
            raise ValueError(f"moving_statistics must be 'mean' (all ghost batches) or 'first' "
                             f"(the first ghost batch, as replica 0), got {moving_statistics!r}")
        self.virtual_batch_size = int(virtual_batch_size)
        self.moving_statistics = moving_statistics

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
        if self.renorm:   # one correction per ghost batch, a constant for the gradient
            r, d, _, _ = self._renorm_correction_and_moments(mean, variance)
            normalized = (normalized * keras.ops.stop_gradient(r)
                          + keras.ops.stop_gradient(d))
        if self.scale:
            normalized = normalized * self.gamma
        if self.center:
            normalized = normalized + self.beta
        momentum = self.momentum
        if self.moving_statistics == "first":             # replica 0's share alone
            mean, variance = mean[:1], variance[:1]
        batch_mean = keras.ops.reshape(keras.ops.mean(mean, axis=0), (-1,))
        batch_variance = keras.ops.reshape(keras.ops.mean(variance, axis=0), (-1,))
        if self.renorm:
            self._update_renorm_statistics(batch_mean, batch_variance)
        else:
            self.moving_mean.assign(self.moving_mean * momentum
                                    + batch_mean * (1.0 - momentum))
            self.moving_variance.assign(self.moving_variance * momentum
                                        + batch_variance * (1.0 - momentum))
        outputs = keras.ops.reshape(normalized, keras.ops.shape(inputs))
        return keras.ops.cast(outputs, self.compute_dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "virtual_batch_size": self.virtual_batch_size,
                "moving_statistics": self.moving_statistics}


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


@contextmanager
def noise_at_mean(model: keras.Model) -> Iterator[int]:
    """Within the block, every :class:`NoisyShift` layer of ``model`` is its mean map.

    Each such layer (among ``model.layers``) returns ``x * (scale_min + scale_max) / 2``
    in training mode, with no shift: the noise replaced by its expectation, so
    that a loss measured in training mode (BN on batch statistics) shows what
    the weights have learned without the random cost of the noise itself. The
    layers' settings are restored on leaving the block, also after an error.
    It acts on calls made inside the block (eager calls, such as a probe's); a
    training step compiled before keeps the noise it was traced with. Yields
    the number of layers fixed (0 for a model without noise).
    """
    noisy = [layer for layer in model.layers if isinstance(layer, NoisyShift)]
    kept = [(layer.shift, layer.scale_min, layer.scale_max) for layer in noisy]
    try:
        for layer in noisy:   # U(m, m) draws m
            mean = (layer.scale_min + layer.scale_max) / 2
            layer.shift, layer.scale_min, layer.scale_max = 0.0, mean, mean
        yield len(noisy)
    finally:
        for layer, (shift, low, high) in zip(noisy, kept):
            layer.shift, layer.scale_min, layer.scale_max = shift, low, high


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
