"""Unit tests of bnbook.reference: gradients, agreement with Keras, folding, errors.

The NumPy reference is checked three ways: against central differences in
float64, against ``keras.layers.BatchNormalization`` and ``tf.GradientTape``
in float32, and against its own two backward passes.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from bnbook import reference as ref  # noqa: E402

KERAS_TOL = 1e-5       # float32 agreement with Keras / TensorFlow
GRADCHECK_TOL = 1e-7   # float64 agreement with central differences


def _problem(shape, dtype, seed=0):
    """Inputs with a non-trivial mean and scale per feature, gamma, beta, dout."""
    rng = np.random.default_rng(seed)
    features = shape[-1]
    x = rng.normal(loc=rng.uniform(-2, 2, features), scale=rng.uniform(0.5, 3, features),
                   size=shape)
    gamma = rng.uniform(0.5, 2.0, features)
    beta = rng.normal(size=features)
    dout = rng.normal(size=shape)
    return tuple(a.astype(dtype) for a in (x, gamma, beta, dout))


def _keras_bn(gamma, beta, shape, momentum=0.99):
    layer = keras.layers.BatchNormalization(momentum=momentum, epsilon=ref.DEFAULT_EPSILON)
    layer.build(shape)
    features = shape[-1]
    layer.set_weights([gamma, beta, np.zeros(features, "float32"), np.ones(features, "float32")])
    return layer


def _keras_grads(layer, x, dout):
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        out = layer(x_t, training=True)
        loss = tf.reduce_sum(out * dout)
    dx, dgamma, dbeta = tape.gradient(loss, [x_t, layer.gamma.value, layer.beta.value])
    return out.numpy(), dx.numpy(), dgamma.numpy(), dbeta.numpy()


# ------------------------------------------------------------------ gradient check

@pytest.mark.parametrize("backward", [ref.batch_norm_backward, ref.batch_norm_backward_compact])
def test_gradient_check_float64(backward):
    x, gamma, beta, dout = _problem((6, 4), np.float64)
    _, cache = ref.batch_norm_forward(x, gamma, beta)
    dx, dgamma, dbeta = backward(dout, cache)

    def loss(x_=x, gamma_=gamma, beta_=beta):
        return np.sum(ref.batch_norm_forward(x_, gamma_, beta_)[0] * dout)

    assert ref.relative_error(dx, ref.numeric_gradient(lambda v: loss(x_=v), x)) < GRADCHECK_TOL
    assert ref.relative_error(dgamma, ref.numeric_gradient(lambda v: loss(gamma_=v), gamma)) \
        < GRADCHECK_TOL
    assert ref.relative_error(dbeta, ref.numeric_gradient(lambda v: loss(beta_=v), beta)) \
        < GRADCHECK_TOL


def test_gradient_check_detects_a_wrong_gradient():
    """The check must be able to fail: drop the variance path and it does."""
    x, gamma, beta, dout = _problem((6, 4), np.float64)
    _, cache = ref.batch_norm_forward(x, gamma, beta)
    wrong = gamma * cache.inv_std * (dout - dout.mean(axis=0))  # ignores d(var)/dx
    numeric = ref.numeric_gradient(
        lambda v: np.sum(ref.batch_norm_forward(v, gamma, beta)[0] * dout), x)
    assert ref.relative_error(wrong, numeric) > 1e-3


def test_staged_and_compact_backward_agree():
    x, gamma, beta, dout = _problem((32, 10), np.float64, seed=1)
    _, cache = ref.batch_norm_forward(x, gamma, beta)
    for a, b in zip(ref.batch_norm_backward(dout, cache),
                    ref.batch_norm_backward_compact(dout, cache)):
        assert a.shape == b.shape
        assert ref.relative_error(a, b) < 1e-12


def test_dx_columns_sum_to_zero():
    """Shifting every example of a feature by the same amount changes nothing."""
    x, gamma, beta, dout = _problem((16, 5), np.float64, seed=2)
    _, cache = ref.batch_norm_forward(x, gamma, beta)
    dx, _, _ = ref.batch_norm_backward(dout, cache)
    np.testing.assert_allclose(dx.sum(axis=0), 0.0, atol=1e-10)


# ------------------------------------------------------------------ forward

def test_forward_statistics_are_beta_and_gamma():
    x, gamma, beta, _ = _problem((256, 7), np.float64, seed=3)
    out, cache = ref.batch_norm_forward(x, gamma, beta)
    np.testing.assert_allclose(out.mean(axis=0), beta, atol=1e-12)
    # The standard deviation is gamma * sigma / sqrt(sigma^2 + eps): just below gamma.
    expected_std = gamma * np.sqrt(cache.var / (cache.var + ref.DEFAULT_EPSILON))
    np.testing.assert_allclose(out.std(axis=0), expected_std, rtol=1e-12)
    np.testing.assert_allclose(cache.x_hat.mean(axis=0), 0.0, atol=1e-12)


def test_identity_is_expressible():
    """gamma = sqrt(var + eps), beta = mean gives back the input."""
    x, _, _, _ = _problem((64, 3), np.float64, seed=4)
    mean, var = ref.moments(x)
    out, _ = ref.batch_norm_forward(x, np.sqrt(var + ref.DEFAULT_EPSILON), mean)
    np.testing.assert_allclose(out, x, atol=1e-12)


def test_forward_keeps_float32():
    x, gamma, beta, _ = _problem((8, 3), np.float32)
    out, cache = ref.batch_norm_forward(x, gamma, beta)
    assert out.dtype == np.float32 and cache.x_hat.dtype == np.float32


def test_cache_nbytes_counts_its_arrays():
    x, gamma, beta, _ = _problem((10, 4), np.float64)
    _, cache = ref.batch_norm_forward(x, gamma, beta)
    # x, x_centered, x_hat: 3 * N * D; mean, var, std, inv_std, gamma: 5 * D.
    assert cache.nbytes == 8 * (3 * 10 * 4 + 5 * 4)


# ------------------------------------------------------------------ Keras agreement

@pytest.mark.parametrize("shape", [(16, 6), (4, 5, 5, 3)])
def test_forward_and_gradients_match_keras(shape):
    x, gamma, beta, dout = _problem(shape, np.float32, seed=5)
    layer = _keras_bn(gamma, beta, shape)
    keras_out, keras_dx, keras_dgamma, keras_dbeta = _keras_grads(layer, x, dout)
    if len(shape) == 2:
        out, cache = ref.batch_norm_forward(x, gamma, beta)
        dx, dgamma, dbeta = ref.batch_norm_backward(dout, cache)
    else:
        out, cache = ref.batch_norm_forward_nhwc(x, gamma, beta)
        dx, dgamma, dbeta = ref.batch_norm_backward_nhwc(dout, cache)
    assert np.max(np.abs(out - keras_out)) < KERAS_TOL
    assert np.max(np.abs(dx - keras_dx)) < KERAS_TOL
    assert np.max(np.abs(dgamma - keras_dgamma)) < KERAS_TOL
    assert np.max(np.abs(dbeta - keras_dbeta)) < KERAS_TOL


@pytest.mark.parametrize("momentum", [0.99, 0.9])
def test_moving_statistics_match_keras(momentum):
    shape = (32, 6)
    x, gamma, beta, _ = _problem(shape, np.float32, seed=6)
    layer = _keras_bn(gamma, beta, shape, momentum=momentum)
    moving_mean, moving_var = np.zeros(6, np.float32), np.ones(6, np.float32)
    for step in range(3):
        batch = x + np.float32(step)  # a drifting input
        layer(batch, training=True)
        mean, var = ref.moments(batch)  # biased variance
        moving_mean = ref.update_moving(moving_mean, mean, momentum)
        moving_var = ref.update_moving(moving_var, var, momentum)
    np.testing.assert_allclose(layer.moving_mean.numpy(), moving_mean, atol=KERAS_TOL)
    np.testing.assert_allclose(layer.moving_variance.numpy(), moving_var, atol=KERAS_TOL)
    # Inference mode uses those moving statistics.
    expected = ref.batch_norm_inference(x, gamma, beta, moving_mean, moving_var)
    np.testing.assert_allclose(layer(x, training=False).numpy(), expected, atol=KERAS_TOL)


def test_keras_stores_the_biased_variance():
    shape = (8, 4)
    x, gamma, beta, _ = _problem(shape, np.float32, seed=10)
    layer = _keras_bn(gamma, beta, shape, momentum=0.0)  # moving = last batch statistic
    layer(x, training=True)
    biased = x.var(axis=0)
    unbiased = x.var(axis=0, ddof=1)  # what PyTorch stores
    np.testing.assert_allclose(layer.moving_variance.numpy(), biased, rtol=1e-5)
    assert np.all(np.abs(layer.moving_variance.numpy() - unbiased) > 1e-3 * unbiased)


def test_update_moving_formula():
    new = ref.update_moving(np.array([0.0, 1.0]), np.array([1.0, 3.0]), momentum=0.99)
    np.testing.assert_allclose(new, [0.01, 1.02])


def test_inference_on_images_is_per_channel():
    x, gamma, beta, _ = _problem((2, 3, 3, 4), np.float32, seed=7)
    mean, var = ref.moments(x)
    assert mean.shape == (4,)
    np.testing.assert_allclose(mean, x.reshape(-1, 4).mean(axis=0), rtol=1e-5)
    out = ref.batch_norm_inference(x, gamma, beta, mean, var)
    train_out, _ = ref.batch_norm_forward_nhwc(x, gamma, beta)
    np.testing.assert_allclose(out, train_out, atol=1e-5)  # same statistics, same output


# ------------------------------------------------------------------ folding

@pytest.mark.parametrize("with_bias", [True, False])
def test_fold_numpy(with_bias):
    rng = np.random.default_rng(8)
    kernel = rng.normal(size=(5, 4))
    bias = rng.normal(size=4) if with_bias else None
    gamma, beta = rng.uniform(0.5, 2, 4), rng.normal(size=4)
    mean, var = rng.normal(size=4), rng.uniform(0.1, 3, 4)
    x = rng.normal(size=(7, 5))
    z = x @ kernel + (bias if with_bias else 0.0)
    expected = ref.batch_norm_inference(z, gamma, beta, mean, var)
    new_kernel, new_bias = ref.fold_batch_norm(kernel, bias, gamma, beta, mean, var)
    np.testing.assert_allclose(x @ new_kernel + new_bias, expected, atol=1e-12)


@pytest.mark.parametrize("with_bias", [True, False])
def test_fold_into_next_numpy(with_bias):
    rng = np.random.default_rng(11)
    kernel = rng.normal(size=(4, 3))
    bias = rng.normal(size=3) if with_bias else None
    gamma, beta = rng.uniform(0.5, 2, 4), rng.normal(size=4)
    mean, var = rng.normal(size=4), rng.uniform(0.1, 3, 4)
    x = rng.normal(size=(7, 4))
    expected = ref.batch_norm_inference(x, gamma, beta, mean, var) @ kernel
    if with_bias:
        expected = expected + bias
    new_kernel, new_bias = ref.fold_batch_norm_into_next(gamma, beta, mean, var, kernel, bias)
    np.testing.assert_allclose(x @ new_kernel + new_bias, expected, atol=1e-12)


def test_fold_keras_model_gives_identical_predictions():
    keras.utils.set_random_seed(0)
    dense = keras.layers.Dense(8, use_bias=True)
    bn = keras.layers.BatchNormalization()
    model = keras.Sequential([keras.Input((5,)), dense, bn, keras.layers.Activation("relu")])
    x = np.random.default_rng(9).normal(size=(64, 5)).astype(np.float32)
    for _ in range(5):  # give the moving statistics values other than 0 and 1
        model(x * 2 + 1, training=True)
    bn.set_weights([np.linspace(0.5, 2, 8, dtype="float32"),
                    np.linspace(-1, 1, 8, dtype="float32"), *bn.get_weights()[2:]])
    folded_dense = keras.layers.Dense(8)
    folded = keras.Sequential([keras.Input((5,)), folded_dense, keras.layers.Activation("relu")])
    folded_dense.set_weights(ref.fold_batch_norm(*dense.get_weights(), *bn.get_weights(),
                                                 epsilon=bn.epsilon))
    diff = np.max(np.abs(model(x, training=False).numpy() - folded(x, training=False).numpy()))
    assert diff < KERAS_TOL
    # and the unfolded Dense alone is not the same map
    plain = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8),
                              keras.layers.Activation("relu")])
    plain.set_weights(dense.get_weights())
    unfolded = plain(x, training=False).numpy()
    assert np.max(np.abs(model(x, training=False).numpy() - unfolded)) > 0.1


# ------------------------------------------------------------------ convolutions

def _conv_bn_model(padding="same", strides=1, seed=0):
    """Conv2D -> BN with non-trivial gamma, beta and moving statistics."""
    keras.utils.set_random_seed(seed)
    conv = keras.layers.Conv2D(4, 3, padding=padding, strides=strides, use_bias=True)
    bn = keras.layers.BatchNormalization(momentum=0.9)
    model = keras.Sequential([keras.Input((7, 7, 3)), conv, bn])
    x = np.random.default_rng(seed).normal(1.0, 2.0, size=(16, 7, 7, 3)).astype("float32")
    for _ in range(3):
        model(x, training=True)
    rng = np.random.default_rng(seed + 1)
    bn.gamma.assign(rng.uniform(0.5, 2, 4).astype("float32"))
    bn.beta.assign(rng.normal(size=4).astype("float32"))
    return model, conv, bn, x


def test_bn_after_conv2d_matches_keras_forward_gradients_and_moving_statistics():
    """The NHWC reference on a Conv2D's output: outputs, dx, dgamma, dbeta, moving averages."""
    keras.utils.set_random_seed(3)
    conv = keras.layers.Conv2D(5, 3, kernel_initializer="he_normal")
    x = np.random.default_rng(3).normal(size=(6, 9, 9, 2)).astype("float32")
    maps = conv(x).numpy()                                   # (6, 7, 7, 5)
    _, gamma, beta, dout = _problem(maps.shape, np.float32, seed=4)
    layer = _keras_bn(gamma, beta, maps.shape, momentum=0.9)
    keras_out, keras_dx, keras_dgamma, keras_dbeta = _keras_grads(layer, maps, dout)
    out, cache = ref.batch_norm_forward_nhwc(maps, gamma, beta)
    dx, dgamma, dbeta = ref.batch_norm_backward_nhwc(dout, cache)
    for ours, theirs in [(out, keras_out), (dx, keras_dx), (dgamma, keras_dgamma),
                         (dbeta, keras_dbeta)]:
        assert ref.relative_error(ours, theirs) < KERAS_TOL
    assert cache.mean.shape == (5,) and cache.x.shape == (6 * 7 * 7, 5)
    mean, var = ref.moments(maps)                            # over N, H and W
    np.testing.assert_allclose(layer.moving_mean.numpy(),
                               ref.update_moving(np.zeros(5), mean, 0.9), atol=KERAS_TOL)
    np.testing.assert_allclose(layer.moving_variance.numpy(),
                               ref.update_moving(np.ones(5), var, 0.9), rtol=KERAS_TOL)
    inference = ref.batch_norm_inference(maps, gamma, beta, layer.moving_mean.numpy(),
                                         layer.moving_variance.numpy())
    assert ref.relative_error(inference, layer(maps, training=False).numpy()) < KERAS_TOL


def test_nhwc_statistics_are_not_per_position():
    """Per channel over N, H, W: a per-position (N-only) normalization differs."""
    x, gamma, beta, _ = _problem((4, 3, 3, 2), np.float64, seed=12)
    x = x + np.arange(9).reshape(1, 3, 3, 1)                 # position-dependent mean
    out, _ = ref.batch_norm_forward_nhwc(x, gamma, beta)
    per_position = ref.batch_norm_forward(x.reshape(4, -1), np.ones(18), np.zeros(18))[0]
    assert np.abs(out.mean(axis=(0, 1, 2)) - beta).max() < 1e-12
    assert np.abs(per_position.reshape(x.shape) * gamma + beta - out).max() > 0.1


@pytest.mark.parametrize("padding, strides", [("same", 1), ("valid", 1), ("same", 2)])
def test_fold_into_preceding_conv2d_is_exact(padding, strides):
    model, conv, bn, x = _conv_bn_model(padding, strides)
    folded_conv = keras.layers.Conv2D(4, 3, padding=padding, strides=strides)
    folded = keras.Sequential([keras.Input((7, 7, 3)), folded_conv])
    folded_conv.set_weights(ref.fold_batch_norm(*conv.get_weights(), *bn.get_weights(),
                                                epsilon=bn.epsilon))
    expected = model(x, training=False).numpy()
    assert ref.relative_error(folded(x).numpy(), expected) < KERAS_TOL
    assert ref.relative_error(conv(x).numpy(), expected) > 0.01   # BN is not the identity


def _bn_conv(padding):
    """BN -> Conv2D in inference mode, and the folded Conv2D."""
    rng = np.random.default_rng(13)
    gamma, beta = rng.uniform(0.5, 2, 3), rng.normal(2.0, 1.0, 3)
    mean, var = rng.normal(size=3), rng.uniform(0.1, 3, 3)
    keras.utils.set_random_seed(13)
    conv = keras.layers.Conv2D(4, 3, padding=padding)
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    normalized = ref.batch_norm_inference(x, gamma.astype("float32"), beta.astype("float32"),
                                          mean.astype("float32"), var.astype("float32"))
    expected = conv(normalized).numpy()
    folded_conv = keras.layers.Conv2D(4, 3, padding=padding)
    folded_conv.build(x.shape)
    folded_conv.set_weights(ref.fold_batch_norm_into_next(gamma, beta, mean, var,
                                                          *conv.get_weights()))
    scale = gamma / np.sqrt(var + ref.DEFAULT_EPSILON)
    return expected, folded_conv(x).numpy(), folded_conv, x, (beta - mean * scale) / scale


def test_fold_into_next_conv2d_is_exact_without_padding():
    expected, folded, *_ = _bn_conv("valid")
    assert ref.relative_error(folded, expected) < KERAS_TOL


def test_fold_into_next_conv2d_with_zero_padding_errs_on_the_border_only():
    expected, folded, folded_conv, x, zero_point = _bn_conv("same")
    error = np.abs(folded - expected).max(axis=(0, 3))       # (H, W)
    assert error[1:-1, 1:-1].max() < 1e-4                   # interior: exact
    assert error[0].min() > 1e-2 and error[:, -1].min() > 1e-2   # every border position off
    # Padding with the input that BN maps to 0 makes it exact again.
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    padded[:, [0, -1], :, :] = -zero_point.astype("float32")
    padded[:, :, [0, -1], :] = -zero_point.astype("float32")
    valid = keras.layers.Conv2D(4, 3, padding="valid")
    valid.build(padded.shape)
    valid.set_weights(folded_conv.get_weights())
    assert ref.relative_error(valid(padded).numpy(), expected) < KERAS_TOL


def test_normalization_noise():
    rng = np.random.default_rng(14)
    dense = rng.normal(3.0, 2.0, size=(256, 5))
    images = rng.normal(3.0, 2.0, size=(256, 6, 6, 5))
    assert ref.normalization_noise(dense, 256) < 1e-12             # the population itself
    # A batch of one example: every value normalizes to 0, i.e. the noise is the RMS of
    # the population-normalized values, 1 up to epsilon.
    assert ref.normalization_noise(dense, 1) == pytest.approx(1.0, abs=1e-3)
    noises = [ref.normalization_noise(dense, m) for m in (2, 8, 32)]
    assert noises[0] > noises[1] > noises[2] > 0
    # Per channel over 36 positions, a single image is as good as dozens of examples.
    assert ref.normalization_noise(images, 1) < ref.normalization_noise(dense, 8)


# ------------------------------------------------------------------ helpers

def test_numeric_gradient_of_a_known_function():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    before = x.copy()
    grad = ref.numeric_gradient(lambda v: np.sum(v ** 3), x)
    np.testing.assert_allclose(grad, 3 * x ** 2, rtol=1e-8)
    np.testing.assert_array_equal(x, before)  # x is left untouched


def test_relative_error():
    a = np.array([1.0, -2.0, 0.0])
    assert ref.relative_error(a, a) == 0.0
    assert ref.relative_error(a, a + np.array([0.0, 0.0, 0.4])) == pytest.approx(0.1)
    assert ref.relative_error(np.zeros(3), np.zeros(3)) == 0.0


# ------------------------------------------------------------------ clear errors

@pytest.mark.parametrize("call, error, match", [
    (lambda: ref.batch_norm_forward(np.zeros((2, 3, 4)), np.ones(4), np.zeros(4)),
     ValueError, r"shape \(N, D\)"),
    (lambda: ref.batch_norm_forward(np.zeros((2, 4, 4, 3)), np.ones(3), np.zeros(3)),
     ValueError, "batch_norm_forward_nhwc"),
    (lambda: ref.batch_norm_forward(np.zeros((2, 3)), np.ones(4), np.zeros(3)),
     ValueError, r"gamma must have shape \(3,\)"),
    (lambda: ref.batch_norm_forward(np.zeros((2, 3)), np.ones(3), np.zeros((3, 1))),
     ValueError, "beta must have shape"),
    (lambda: ref.batch_norm_forward(np.zeros((0, 3)), np.ones(3), np.zeros(3)),
     ValueError, "at least one example"),
    (lambda: ref.batch_norm_forward(np.zeros((2, 3), int), np.ones(3), np.zeros(3)),
     TypeError, "floating-point"),
    (lambda: ref.batch_norm_forward(np.zeros((2, 3)), np.ones(3), np.zeros(3), eps=0.0),
     ValueError, "eps must be positive"),
    (lambda: ref.batch_norm_backward(np.zeros((3, 3)),
                                     ref.batch_norm_forward(np.ones((2, 3)), np.ones(3),
                                                            np.zeros(3))[1]),
     ValueError, "dout must have the shape"),
    (lambda: ref.batch_norm_backward(np.zeros((2, 3)), None), TypeError, "BatchNormCache"),
    (lambda: ref.batch_norm_forward_nhwc(np.zeros((2, 3)), np.ones(3), np.zeros(3)),
     ValueError, r"\(N, H, W, C\)"),
    (lambda: ref.update_moving(np.zeros(3), np.zeros(4)), ValueError, "same shape"),
    (lambda: ref.update_moving(np.zeros(3), np.zeros(3), momentum=1.5),
     ValueError, "momentum"),
    (lambda: ref.batch_norm_inference(np.zeros((2, 3)), np.ones(3), np.zeros(3),
                                      np.zeros(2), np.ones(3)),
     ValueError, "moving_mean must have shape"),
    (lambda: ref.fold_batch_norm(np.zeros(4), None, None, None, np.zeros(4), np.ones(4)),
     ValueError, r"kernel must have shape \(inputs, units\)"),
    (lambda: ref.fold_batch_norm(np.zeros((3, 4)), np.zeros(3), None, None, np.zeros(4),
                                 np.ones(4)),
     ValueError, r"bias must have shape \(4,\)"),
    (lambda: ref.fold_batch_norm_into_next(None, None, np.zeros(3), np.ones(3),
                                           np.zeros((4, 2)), None),
     ValueError, r"moving_mean must have shape \(4,\)"),
    (lambda: ref.fold_batch_norm(np.zeros((3, 3, 2)), None, None, None, np.zeros(2),
                                 np.ones(2)),
     ValueError, r"\(kh, kw, in_channels, out_channels\)"),
    (lambda: ref.fold_batch_norm_into_next(None, None, np.zeros(3), np.ones(3),
                                           np.zeros((3, 3, 2, 4)), None),
     ValueError, r"moving_mean must have shape \(2,\)"),
    (lambda: ref.normalization_noise(np.zeros((4, 3)), 5), ValueError, "batch_size"),
    (lambda: ref.normalization_noise(np.zeros((4, 3, 2)), 2), ValueError, r"\(N, D\)"),
    (lambda: ref.relative_error(np.zeros(2), np.zeros(3)), ValueError, "same shape"),
    (lambda: ref.numeric_gradient(np.sum, np.zeros(2), h=0.0), ValueError, "h must be positive"),
])
def test_bad_inputs_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
