"""Batch normalization from scratch in NumPy: the reference the book checks Keras against.

Every function states its formula, its defaults and the shapes it accepts, so
that a page can put an equation, this code and ``keras.layers.BatchNormalization``
side by side and show that the three agree. The defaults are Keras' defaults
(``epsilon=1e-3``, ``momentum=0.99``); the variance is always the *biased*
batch variance (divide by ``N``), as in Keras and in Ioffe & Szegedy (2015).

Training mode, for ``x`` of shape ``(N, D)`` (``N`` examples, ``D`` features)::

    mu      = mean(x, axis=0)                        # (D,)
    var     = mean((x - mu) ** 2, axis=0)            # (D,), biased
    x_hat   = (x - mu) / sqrt(var + epsilon)         # (N, D)
    out     = gamma * x_hat + beta                   # (N, D)

Inference mode replaces ``mu`` and ``var`` by the moving averages, updated
after every training step as::

    moving = momentum * moving + (1 - momentum) * batch_statistic

Functions
---------
``batch_norm_forward`` / ``batch_norm_backward`` / ``batch_norm_backward_compact``
    Training-mode forward pass on ``(N, D)`` and its two backward passes: one
    staged along the computational graph, one in closed form.
``batch_norm_forward_nhwc`` / ``batch_norm_backward_nhwc``
    The same for images ``(N, H, W, C)``, normalized per channel over N, H and W.
``moments``, ``update_moving``, ``batch_norm_inference``
    Batch statistics, the moving-average update and the inference-mode forward.
``fold_batch_norm`` / ``fold_batch_norm_into_next``
    Fold an inference-mode BN layer into the Dense or Conv2D layer before it
    (layer -> BN) or after it (BN -> layer, as when BN follows an activation;
    for a convolution exact only without zero padding).
``normalization_noise``
    How far batch statistics move a normalized value from where population
    statistics would put it, for a given batch size.
``numeric_gradient``, ``relative_error``
    Central-difference gradients and the error measure of the gradient checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

__all__ = [
    "DEFAULT_EPSILON",
    "DEFAULT_MOMENTUM",
    "BatchNormCache",
    "batch_norm_backward",
    "batch_norm_backward_compact",
    "batch_norm_backward_nhwc",
    "batch_norm_forward",
    "batch_norm_forward_nhwc",
    "batch_norm_inference",
    "fold_batch_norm",
    "fold_batch_norm_into_next",
    "moments",
    "normalization_noise",
    "numeric_gradient",
    "relative_error",
    "update_moving",
]

#: Keras' default ``epsilon`` of ``BatchNormalization`` (PyTorch uses 1e-5).
DEFAULT_EPSILON = 1e-3
#: Keras' default ``momentum``: the weight of the *old* moving average.
DEFAULT_MOMENTUM = 0.99


# --------------------------------------------------------------------------- checks

def _as_float_array(value: object, name: str) -> np.ndarray:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {array.dtype}; "
                        f"convert it first, e.g. {name}.astype('float32').")
    return array


def _check_features(vector: object, name: str, features: int, dtype: np.dtype) -> np.ndarray:
    array = _as_float_array(vector, name)
    if array.shape != (features,):
        raise ValueError(f"{name} must have shape ({features},), one value per feature "
                         f"of x, got shape {array.shape}.")
    return array.astype(dtype, copy=False)


def _check_epsilon(eps: float) -> float:
    if not eps > 0:
        raise ValueError(f"eps must be positive (it keeps sqrt(var + eps) away from 0), got {eps}.")
    return float(eps)


def _check_2d(x: object, where: str) -> np.ndarray:
    array = _as_float_array(x, "x")
    if array.ndim != 2:
        hint = " For images use batch_norm_forward_nhwc." if array.ndim == 4 else ""
        raise ValueError(f"{where} expects x of shape (N, D), got shape {array.shape}.{hint}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{where} needs at least one example and one feature, "
                         f"got shape {array.shape}.")
    return array


# --------------------------------------------------------------------------- forward

@dataclass(frozen=True)
class BatchNormCache:
    """What the training-mode forward pass keeps for the backward pass.

    The staged backward pass reads every intermediate of the graph; the
    compact one needs only ``x_hat``, ``inv_std`` and ``gamma``. ``nbytes``
    is the memory this cache holds, the real memory cost of a BN layer
    during training (the moving averages are only ``2 * D`` numbers).

    Shapes: ``x``, ``x_centered``, ``x_hat``: ``(N, D)``; ``mean``, ``var``,
    ``std``, ``inv_std``, ``gamma``: ``(D,)``; ``eps``: float.
    """

    x: np.ndarray
    mean: np.ndarray
    x_centered: np.ndarray
    var: np.ndarray
    std: np.ndarray
    inv_std: np.ndarray
    x_hat: np.ndarray
    gamma: np.ndarray
    eps: float

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays of the cache."""
        return int(sum(getattr(self, f.name).nbytes for f in fields(self)
                       if isinstance(getattr(self, f.name), np.ndarray)))


def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and **biased** variance over every axis but the last.

    For ``x`` of shape ``(N, D)`` the statistics are over the ``N`` examples;
    for ``(N, H, W, C)`` they are over ``N * H * W`` values per channel::

        mean = x.mean(axis=all but last)
        var  = ((x - mean) ** 2).mean(axis=all but last)   # divide by the count, not count - 1

    Returns two arrays of shape ``(D,)`` (or ``(C,)``) in ``x``'s dtype.
    """
    array = _as_float_array(x, "x")
    if array.ndim < 2:
        raise ValueError(f"moments expects x with a batch axis and a feature axis, "
                         f"got shape {array.shape}.")
    axes = tuple(range(array.ndim - 1))
    mean = array.mean(axis=axes)
    var = ((array - mean) ** 2).mean(axis=axes)
    return mean, var


def batch_norm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                       eps: float = DEFAULT_EPSILON,
                       ) -> tuple[np.ndarray, BatchNormCache]:
    """Batch normalization in training mode: normalize with the batch's own statistics.

    Args:
        x: inputs of shape ``(N, D)``, a floating dtype (the computation stays
            in that dtype: float32 for comparisons with Keras, float64 for
            gradient checks).
        gamma: scale, shape ``(D,)`` (Keras initializes it to ones).
        beta: shift, shape ``(D,)`` (Keras initializes it to zeros).
        eps: added to the variance before the square root; default ``1e-3``
            as in Keras.

    Returns:
        ``(out, cache)`` with ``out`` of shape ``(N, D)``::

            mu    = mean(x, axis=0)
            var   = mean((x - mu) ** 2, axis=0)
            x_hat = (x - mu) / sqrt(var + eps)
            out   = gamma * x_hat + beta

        and ``cache`` a ``BatchNormCache`` for ``batch_norm_backward``.

    Raises:
        ValueError: ``x`` is not 2-D, ``gamma``/``beta`` are not ``(D,)``, or
            ``eps <= 0``. TypeError: an integer array.
    """
    x = _check_2d(x, "batch_norm_forward")
    features = x.shape[1]
    gamma = _check_features(gamma, "gamma", features, x.dtype)
    beta = _check_features(beta, "beta", features, x.dtype)
    eps = _check_epsilon(eps)
    # The computational graph, one node per line (the backward pass walks it back).
    mean = x.mean(axis=0)                      # 1. mu
    x_centered = x - mean                      # 2. x - mu
    var = (x_centered ** 2).mean(axis=0)       # 3-4. sigma^2 (biased)
    std = np.sqrt(var + x.dtype.type(eps))     # 5. sqrt(sigma^2 + eps)
    inv_std = 1 / std                          # 6. 1 / sqrt(...)
    x_hat = x_centered * inv_std               # 7. normalized input
    out = gamma * x_hat + beta                 # 8. scale and shift
    cache = BatchNormCache(x, mean, x_centered, var, std, inv_std, x_hat, gamma, eps)
    return out, cache


def _check_dout(dout: object, cache: BatchNormCache) -> np.ndarray:
    if not isinstance(cache, BatchNormCache):
        raise TypeError("cache must be the BatchNormCache returned by batch_norm_forward.")
    array = _as_float_array(dout, "dout")
    if array.shape != cache.x.shape:
        raise ValueError(f"dout must have the shape of the forward input {cache.x.shape}, "
                         f"got {array.shape}.")
    return array


def batch_norm_backward(dout: np.ndarray, cache: BatchNormCache
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass staged along the computational graph of ``batch_norm_forward``.

    Walks the eight nodes of the forward pass in reverse and applies the chain
    rule at each one (the derivation of the book's *working principle* page)::

        dbeta      = sum(dout, axis=0)
        dgamma     = sum(dout * x_hat, axis=0)
        dx_hat     = dout * gamma
        dinv_std   = sum(dx_hat * x_centered, axis=0)
        dstd       = -dinv_std / std ** 2
        dvar       = dstd / (2 * std)
        dx_centered = dx_hat * inv_std + 2 * x_centered * dvar / N
        dmean      = -sum(dx_centered, axis=0)
        dx         = dx_centered + dmean / N

    Args:
        dout: upstream gradient dL/d(out), shape ``(N, D)``.
        cache: the cache returned by ``batch_norm_forward``.

    Returns:
        ``(dx, dgamma, dbeta)`` with shapes ``(N, D)``, ``(D,)``, ``(D,)``.
    """
    dout = _check_dout(dout, cache)
    n = cache.x.shape[0]
    dbeta = dout.sum(axis=0)                                  # node 8
    dgamma = (dout * cache.x_hat).sum(axis=0)                 # node 8
    dx_hat = dout * cache.gamma                               # node 8
    dinv_std = (dx_hat * cache.x_centered).sum(axis=0)        # node 7
    dx_centered = dx_hat * cache.inv_std                      # node 7, first path
    dstd = -dinv_std / cache.std ** 2                         # node 6
    dvar = dstd / (2 * cache.std)                             # node 5
    dsquares = np.broadcast_to(dvar / n, cache.x.shape)       # node 4 (the mean)
    dx_centered = dx_centered + 2 * cache.x_centered * dsquares  # node 3, second path
    dmean = -dx_centered.sum(axis=0)                          # node 2
    dx = dx_centered + dmean / n                              # nodes 2 and 1
    return dx, dgamma, dbeta


def batch_norm_backward_compact(dout: np.ndarray, cache: BatchNormCache
                                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same gradients as ``batch_norm_backward``, in closed form.

    With ``g = dout`` and ``N`` the batch size::

        dbeta  = sum(g, axis=0)
        dgamma = sum(g * x_hat, axis=0)
        dx     = gamma * inv_std / N * (N * g - dbeta - x_hat * dgamma)

    It reads only ``x_hat``, ``inv_std`` and ``gamma`` from the cache.

    Returns:
        ``(dx, dgamma, dbeta)`` with shapes ``(N, D)``, ``(D,)``, ``(D,)``.
    """
    dout = _check_dout(dout, cache)
    n = cache.x.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * cache.x_hat).sum(axis=0)
    dx = (cache.gamma * cache.inv_std / n) * (n * dout - dbeta - cache.x_hat * dgamma)
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------- images

def _check_nhwc(x: object, where: str) -> np.ndarray:
    array = _as_float_array(x, "x")
    if array.ndim != 4:
        raise ValueError(f"{where} expects x of shape (N, H, W, C) (channels last), "
                         f"got shape {array.shape}.")
    return array


def batch_norm_forward_nhwc(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                            eps: float = DEFAULT_EPSILON
                            ) -> tuple[np.ndarray, BatchNormCache]:
    """Training-mode BN for images ``(N, H, W, C)``: one mean and variance per channel.

    The statistics of channel ``c`` are taken over all ``N * H * W`` values of
    that channel (the convolutional rule of Ioffe & Szegedy, Sec. 3.2). It is
    the 2-D forward pass on ``x.reshape(N * H * W, C)``, reshaped back.

    Args:
        x: shape ``(N, H, W, C)``; gamma, beta: shape ``(C,)``; eps: as in
            ``batch_norm_forward``.

    Returns:
        ``(out, cache)``, ``out`` of shape ``(N, H, W, C)``; the cache is that of
        the 2-D pass (use ``batch_norm_backward_nhwc``).
    """
    x = _check_nhwc(x, "batch_norm_forward_nhwc")
    out, cache = batch_norm_forward(x.reshape(-1, x.shape[-1]), gamma, beta, eps)
    return out.reshape(x.shape), cache


def batch_norm_backward_nhwc(dout: np.ndarray, cache: BatchNormCache
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``batch_norm_forward_nhwc``: ``(dx, dgamma, dbeta)``, dx of dout's shape."""
    dout = _check_nhwc(dout, "batch_norm_backward_nhwc")
    dx, dgamma, dbeta = batch_norm_backward_compact(dout.reshape(-1, dout.shape[-1]), cache)
    return dx.reshape(dout.shape), dgamma, dbeta


# --------------------------------------------------------------------------- inference

def update_moving(moving: np.ndarray, batch: np.ndarray,
                  momentum: float = DEFAULT_MOMENTUM) -> np.ndarray:
    """One step of Keras' moving average of a batch statistic.

    ::

        new_moving = momentum * moving + (1 - momentum) * batch

    ``momentum`` is the weight of the **old** value (Keras default 0.99). PyTorch's
    ``momentum`` is the weight of the **new** value, so Keras ``momentum=m``
    equals PyTorch ``momentum=1 - m``. Keras feeds the *biased* batch variance;
    PyTorch feeds the unbiased one (times ``N / (N - 1)``).

    Args:
        moving: current moving statistic, shape ``(D,)``.
        batch: the batch's statistic, same shape.
        momentum: in ``[0, 1]``.

    Returns:
        A new array (the inputs are not modified).
    """
    moving = _as_float_array(moving, "moving")
    batch = _as_float_array(batch, "batch")
    if moving.shape != batch.shape:
        raise ValueError(f"moving {moving.shape} and batch {batch.shape} must have the same shape.")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {momentum}.")
    return momentum * moving + (1.0 - momentum) * batch


def batch_norm_inference(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                         moving_mean: np.ndarray, moving_variance: np.ndarray,
                         eps: float = DEFAULT_EPSILON) -> np.ndarray:
    """Inference-mode BN: normalize with the moving statistics, not the batch's.

    ::

        out = gamma * (x - moving_mean) / sqrt(moving_variance + eps) + beta

    Each example is transformed independently of the others (a fixed affine
    map per feature), so a batch of one is fine.

    Args:
        x: shape ``(..., D)``: ``(N, D)`` or ``(N, H, W, C)``; the last axis is
            the feature (channel) axis.
        gamma, beta, moving_mean, moving_variance: shape ``(D,)``.
        eps: default ``1e-3``.

    Returns:
        An array of ``x``'s shape and dtype.
    """
    x = _as_float_array(x, "x")
    if x.ndim < 1:
        raise ValueError("x must have a feature axis.")
    features = x.shape[-1]
    gamma = _check_features(gamma, "gamma", features, x.dtype)
    beta = _check_features(beta, "beta", features, x.dtype)
    mean = _check_features(moving_mean, "moving_mean", features, x.dtype)
    var = _check_features(moving_variance, "moving_variance", features, x.dtype)
    eps = _check_epsilon(eps)
    return gamma * (x - mean) / np.sqrt(var + x.dtype.type(eps)) + beta


def _check_kernel(kernel: object) -> np.ndarray:
    array = _as_float_array(kernel, "kernel")
    if array.ndim not in (2, 4):
        raise ValueError(f"kernel must have shape (inputs, units) (Dense) or (kh, kw, "
                         f"in_channels, out_channels) (Conv2D), got {array.shape}.")
    return array


def fold_batch_norm(kernel: np.ndarray, bias: np.ndarray | None,
                    gamma: np.ndarray | None, beta: np.ndarray | None,
                    moving_mean: np.ndarray, moving_variance: np.ndarray,
                    epsilon: float = DEFAULT_EPSILON) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference-mode BN layer into the Dense or Conv2D layer that precedes it.

    ``Dense(kernel, bias) -> BN`` or ``Conv2D(kernel, bias) -> BN`` in
    inference mode is one affine map per output unit (channel), so it equals
    a single layer of the same kind with::

        scale       = gamma / sqrt(moving_variance + epsilon)     # (units,)
        new_kernel  = kernel * scale                               # last axis scaled
        new_bias    = (bias - moving_mean) * scale + beta

    For a convolution each output channel is scaled, whatever the padding and
    strides: the fold is exact for every position, the border included.

    Args:
        kernel: Dense kernel ``(inputs, units)`` or Conv2D kernel
            ``(kh, kw, in_channels, units)`` (Keras' layouts).
        bias: bias ``(units,)``, or ``None`` for ``use_bias=False``.
        gamma: BN scale ``(units,)``, or ``None`` for ``scale=False`` (ones).
        beta: BN shift ``(units,)``, or ``None`` for ``center=False`` (zeros).
        moving_mean, moving_variance: BN moving statistics, shape ``(units,)``.
        epsilon: the BN layer's epsilon (Keras default 1e-3).

    Returns:
        ``(new_kernel, new_bias)`` in the kernel's dtype (computed in float64).
        With Keras layers::

            kernel, *rest = layer.get_weights()
            bias = rest[0] if rest else None
            gamma, beta, mean, var = bn.get_weights()
            folded.set_weights(fold_batch_norm(kernel, bias, gamma, beta, mean, var,
                                               bn.epsilon))

    Raises:
        ValueError: a shape does not match ``kernel.shape[-1]`` or ``epsilon <= 0``.
    """
    kernel = _check_kernel(kernel)
    units = kernel.shape[-1]
    f64 = np.dtype(np.float64)
    bias = (np.zeros(units) if bias is None else _check_features(bias, "bias", units, f64))
    gamma = (np.ones(units) if gamma is None else _check_features(gamma, "gamma", units, f64))
    beta = (np.zeros(units) if beta is None else _check_features(beta, "beta", units, f64))
    mean = _check_features(moving_mean, "moving_mean", units, f64)
    var = _check_features(moving_variance, "moving_variance", units, f64)
    epsilon = _check_epsilon(epsilon)
    scale = gamma / np.sqrt(var + epsilon)
    new_kernel = kernel.astype(np.float64) * scale
    new_bias = (bias - mean) * scale + beta
    return new_kernel.astype(kernel.dtype), new_bias.astype(kernel.dtype)


def fold_batch_norm_into_next(gamma: np.ndarray | None, beta: np.ndarray | None,
                              moving_mean: np.ndarray, moving_variance: np.ndarray,
                              kernel: np.ndarray, bias: np.ndarray | None,
                              epsilon: float = DEFAULT_EPSILON) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference-mode BN layer into the Dense or Conv2D layer that follows it.

    In inference mode BN is ``x -> scale * x + shift`` per feature (channel),
    so ``BN -> Dense(kernel, bias)`` equals one Dense layer with::

        scale       = gamma / sqrt(moving_variance + epsilon)     # (inputs,)
        shift       = beta - moving_mean * scale                   # (inputs,)
        new_kernel  = scale[:, None] * kernel                      # each row scaled
        new_bias    = bias + shift @ kernel

    and ``BN -> Conv2D(kernel, bias)`` with a kernel ``(kh, kw, in, out)``::

        new_kernel[i, j, c, o] = scale[c] * kernel[i, j, c, o]
        new_bias[o]            = bias[o] + sum_{i, j, c} shift[c] * kernel[i, j, c, o]

    This is the case of a BN layer placed after an activation (or on the
    input), which cannot be folded backwards through the nonlinearity.

    For a convolution, the new bias assumes that every one of the
    ``kh * kw`` taps of an output position reads a BN output. That holds with
    ``padding="valid"``, and the fold is exact. With ``padding="same"`` the
    taps that fall on the zero padding of the border read 0 in the original
    network (zeros padded *after* BN), but the folded bias adds their
    ``shift * kernel`` anyway: the border positions are off by the sum of
    ``shift[c] * kernel[i, j, c, o]`` over the padded taps (the interior is
    exact). Pad the input by hand with the value ``-shift / scale`` per
    channel, which BN maps to 0, to make it exact again.

    Args:
        gamma, beta: BN scale and shift ``(inputs,)``, or ``None`` (ones, zeros).
        moving_mean, moving_variance: BN moving statistics ``(inputs,)``.
        kernel: the next layer's kernel, Dense ``(inputs, units)`` or Conv2D
            ``(kh, kw, inputs, units)``; bias: ``(units,)`` or ``None``.
        epsilon: the BN layer's epsilon.

    Returns:
        ``(new_kernel, new_bias)`` in the kernel's dtype (computed in float64).
    """
    kernel = _check_kernel(kernel)
    inputs, units = kernel.shape[-2:]
    f64 = np.dtype(np.float64)
    bias = (np.zeros(units) if bias is None else _check_features(bias, "bias", units, f64))
    gamma = (np.ones(inputs) if gamma is None
             else _check_features(gamma, "gamma", inputs, f64))
    beta = (np.zeros(inputs) if beta is None else _check_features(beta, "beta", inputs, f64))
    mean = _check_features(moving_mean, "moving_mean", inputs, f64)
    var = _check_features(moving_variance, "moving_variance", inputs, f64)
    epsilon = _check_epsilon(epsilon)
    scale = gamma / np.sqrt(var + epsilon)
    shift = beta - mean * scale
    kernel64 = kernel.astype(np.float64)
    new_kernel = scale[:, None] * kernel64
    taps = kernel64.reshape(-1, inputs, units).sum(axis=0)      # (inputs, units)
    new_bias = bias + shift @ taps
    return new_kernel.astype(kernel.dtype), new_bias.astype(kernel.dtype)


def normalization_noise(x: np.ndarray, batch_size: int, *, seed: int = 0,
                        eps: float = DEFAULT_EPSILON) -> float:
    """RMS distance between values normalized with batch statistics and with population ones.

    The ``N`` examples of ``x`` are shuffled (by ``seed``) and cut into batches
    of ``batch_size`` (a remainder is dropped). Each batch is normalized per
    feature with its own statistics, over every axis but the last (``B``
    values per feature for ``(N, D)``, ``B * H * W`` per channel for
    ``(N, H, W, C)``), and compared with the same values normalized with the
    statistics of all ``N`` examples::

        x_hat_batch = (x - mean_batch) / sqrt(var_batch + eps)
        x_hat_pop   = (x - mean_all) / sqrt(var_all + eps)
        noise       = sqrt(mean((x_hat_batch - x_hat_pop) ** 2))

    0 means the batch's statistics are the population's; a batch of one
    example on ``(N, D)`` gives ``x_hat_batch = 0`` and a noise near 1. It is
    the noise BN adds in training and the mismatch it meets at inference.

    Args:
        x: ``(N, D)`` or ``(N, H, W, C)``, a floating dtype (computed in float64).
        batch_size: examples per batch, from 1 to ``N``.

    Returns:
        The noise as a float.
    """
    array = _as_float_array(x, "x").astype(np.float64)
    if array.ndim not in (2, 4):
        raise ValueError(f"x must have shape (N, D) or (N, H, W, C), got {array.shape}.")
    if not 1 <= batch_size <= len(array):
        raise ValueError(f"batch_size must lie between 1 and N = {len(array)}, got {batch_size}.")
    eps = _check_epsilon(eps)
    order = np.random.default_rng(seed).permutation(len(array))
    n_full = len(array) // batch_size * batch_size
    batches = array[order[:n_full]].reshape(-1, batch_size, *array.shape[1:])
    axes = tuple(range(1, batches.ndim - 1))
    mean, var = batches.mean(axis=axes, keepdims=True), batches.var(axis=axes, keepdims=True)
    by_batch = (batches - mean) / np.sqrt(var + eps)
    pop_mean, pop_var = moments(array)
    population = (batches - pop_mean) / np.sqrt(pop_var + eps)
    return float(np.sqrt(np.mean((by_batch - population) ** 2)))


# --------------------------------------------------------------------------- checking

def numeric_gradient(f: Callable[[np.ndarray], float], x: np.ndarray,
                     h: float = 1e-5) -> np.ndarray:
    """Gradient of the scalar function ``f`` at ``x`` by central differences.

    ::

        grad[i] = (f(x + h e_i) - f(x - h e_i)) / (2 h)

    The error is of order ``h**2`` (truncation) plus ``machine_eps * |f| / h``
    (round-off): use float64, where ``h = 1e-5`` balances the two. ``f`` is
    called ``2 * x.size`` times on a perturbed copy; ``x`` is not modified.

    Args:
        f: maps an array shaped like ``x`` to a scalar (e.g. ``sum(out * dout)``,
            whose gradient is the backward pass for upstream gradient ``dout``).
        x: the point, any shape, a floating dtype.
        h: the step.

    Returns:
        An array of ``x``'s shape and dtype.
    """
    x = np.array(_as_float_array(x, "x"), copy=True)
    if not h > 0:
        raise ValueError(f"h must be positive, got {h}.")
    grad = np.zeros_like(x)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)
    for i in range(flat_x.size):
        original = flat_x[i]
        flat_x[i] = original + h
        plus = float(f(x))
        flat_x[i] = original - h
        minus = float(f(x))
        flat_x[i] = original
        flat_grad[i] = (plus - minus) / (2 * h)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference, relative to the largest magnitude involved.

    ::

        relative_error(a, b) = max |a - b| / max(max(|a| + |b|), tiny)

    A single scale for the whole array keeps entries that are nearly zero
    (common in ``dx``, whose columns sum to zero) from inflating the error,
    which an element-wise ratio would do. Identical arrays give 0; errors
    below about 1e-7 in float64 mean a correct gradient.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a {a.shape} and b {b.shape} must have the same shape.")
    if a.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(a) + np.abs(b))), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - b)) / scale)
