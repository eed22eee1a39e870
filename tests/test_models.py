"""bnbook.models: the MLP each argument asks for (counted from first principles), its layers
(noisy BN, ghost BN), the initializer hook and PreciseBN."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnbook import measure
from bnbook.models import (GhostBatchNormalization, NoisyShift, build_mlp, gaussian_kernels,
                           normalization_layer, recompute_bn_statistics)
from tiny import bn_model, features, mlp

RNG = np.random.default_rng(0)


def dense_params(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


@pytest.mark.parametrize("hidden", [(300, 100), (64,), (32, 32, 32)])
def test_plain_mlp_parameter_count(hidden: tuple[int, ...]) -> None:
    widths = (784, *hidden, 10)
    expected = sum(dense_params(a, b) for a, b in zip(widths, widths[1:]))
    assert build_mlp(hidden).count_params() == expected


def test_batch_norm_before_activation_drops_the_bias_and_adds_four_vectors() -> None:
    model = build_mlp((300, 100), normalization="batch", placement="before")
    expected = (dense_params(784, 300, bias=False) + 4 * 300
                + dense_params(300, 100, bias=False) + 4 * 100 + dense_params(100, 10))
    assert model.count_params() == expected
    non_trainable = sum(int(w.shape[0]) for w in model.non_trainable_weights)
    assert non_trainable == 2 * (300 + 100)  # moving mean and variance
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Flatten", "Dense", "BatchNormalization", "Activation",
                     "Dense", "BatchNormalization", "Activation", "Dense"]


def test_normalization_after_activation_keeps_the_bias() -> None:
    model = build_mlp((50,), normalization="layer", placement="after", dropout=0.5)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Flatten", "Dense", "Activation", "LayerNormalization", "Dropout", "Dense"]
    assert model.layers[1].use_bias


@pytest.mark.parametrize("kind, cls", [("batch", keras.layers.BatchNormalization),
                                       ("layer", keras.layers.LayerNormalization),
                                       ("group", keras.layers.GroupNormalization)])
def test_normalization_layer_kinds(kind: str, cls: type) -> None:
    assert isinstance(normalization_layer(kind), cls)
    assert normalization_layer("none") is None


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown normalization"):
        normalization_layer("instance")
    with pytest.raises(ValueError, match="placement"):
        build_mlp(placement="between")


# ----------------------------------------------------------------------------- evaluation


def test_gaussian_kernels_scale_independence_and_determinism():
    model = mlp(hidden=(64, 64))
    gaussian_kernels(0.02, seed=1)(model)
    kernels = [layer.kernel.numpy() for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    for k in kernels:
        assert k.std() == pytest.approx(0.02, rel=0.1)
    assert not np.allclose(kernels[1][:, :2], kernels[0][:64, :2])   # layers differ
    again = mlp(hidden=(64, 64))
    gaussian_kernels(0.02, seed=1)(again)
    np.testing.assert_array_equal(again.layers[1].kernel.numpy(), kernels[0])
    with pytest.raises(ValueError):
        gaussian_kernels(0.0)


def test_noisy_shift_identity_at_inference_affine_in_training() -> None:
    layer = NoisyShift(shift=0.5, scale_min=1.0, scale_max=2.0, seed=1)
    x = features(50, 8)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    first = layer(x, training=True).numpy()
    second = layer(x, training=True).numpy()
    assert not np.allclose(first, second)  # redrawn at every call
    # Per feature, output = a * x + b with a in [1, 2] and b in [-0.5, 0.5].
    for j in range(x.shape[1]):
        a, b = np.polyfit(x[:, j], first[:, j], 1)
        assert 1.0 - 1e-4 <= a <= 2.0 + 1e-4 and -0.5 - 1e-4 <= b <= 0.5 + 1e-4
    with pytest.raises(ValueError):
        NoisyShift(scale_min=2.0, scale_max=1.0)


def test_noisy_shift_serializes() -> None:
    model = keras.Sequential([keras.Input((3,)), NoisyShift(0.2, 1.0, 1.2, seed=3)])
    clone = keras.models.model_from_json(model.to_json())
    config = clone.layers[0].get_config()
    assert (config["shift"], config["scale_max"], config["seed"]) == (0.2, 1.2, 3)
    assert json.loads(model.to_json())


def test_recompute_bn_statistics_sets_population_statistics() -> None:
    model, x = bn_model(), features(64)
    bn = model.get_layer("bn")
    inputs = x @ model.layers[0].kernel.numpy()
    changes = recompute_bn_statistics(model, x, batch_size=16)
    assert set(changes) == {"bn"} and changes["bn"] > 0
    np.testing.assert_allclose(bn.moving_mean.numpy(), inputs.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), inputs.var(0), rtol=1e-4)
    # Now inference on the whole set equals training mode with the whole set as one batch.
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               measure.predict(model, x, training=True, batch_size=len(x)),
                               rtol=1e-4, atol=1e-4)


def test_ghost_batch_normalization_normalizes_each_ghost_batch() -> None:
    layer = GhostBatchNormalization(4, momentum=0.5)
    x = features(12, 3)
    x[4:8] += 10.0                                   # the second ghost batch sits far away
    out = layer(x, training=True).numpy()
    for g in range(3):
        part = x[4 * g:4 * g + 4]
        expected = (part - part.mean(0)) / np.sqrt(part.var(0) + layer.epsilon)
        np.testing.assert_allclose(out[4 * g:4 * g + 4], expected, rtol=1e-4, atol=1e-4)
    means = np.mean([x[4 * g:4 * g + 4].mean(0) for g in range(3)], axis=0)
    variances = np.mean([x[4 * g:4 * g + 4].var(0) for g in range(3)], axis=0)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.5 * means, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.5 + 0.5 * variances, rtol=1e-5)
    moving = (x - layer.moving_mean.numpy()) / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
    np.testing.assert_allclose(layer(x, training=False).numpy(), moving, rtol=1e-4, atol=1e-4)


def test_ghost_batch_of_the_whole_batch_is_batch_normalization() -> None:
    x = features(16, 5)
    ghost, plain = GhostBatchNormalization(16), keras.layers.BatchNormalization()
    np.testing.assert_allclose(ghost(x, training=True).numpy(), plain(x, training=True).numpy(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ghost.moving_variance.numpy(), plain.moving_variance.numpy(), rtol=1e-5)
    images = RNG.normal(size=(8, 3, 3, 2)).astype("float32")      # per channel, over N, H, W
    np.testing.assert_allclose(GhostBatchNormalization(8)(images, training=True).numpy(),
                               keras.layers.BatchNormalization()(images, training=True).numpy(),
                               rtol=1e-4, atol=1e-5)
    clone = keras.layers.deserialize(keras.layers.serialize(GhostBatchNormalization(4)))
    assert clone.virtual_batch_size == 4
    with pytest.raises(ValueError):
        GhostBatchNormalization(0)


def test_ghost_batch_renormalization_of_the_whole_batch_is_keras_renorm() -> None:
    clipping = {"rmin": 0.5, "rmax": 2.0, "dmax": 1.0}
    ghost = GhostBatchNormalization(16, renorm=True, renorm_clipping=clipping, momentum=0.5,
                                    renorm_momentum=0.5)
    plain = keras.layers.BatchNormalization(renorm=True, renorm_clipping=clipping, momentum=0.5,
                                            renorm_momentum=0.5)
    for _ in range(3):   # after the first step the corrections are no longer 1 and 0
        x = features(16, 5)
        np.testing.assert_allclose(ghost(x, training=True).numpy(),
                                   plain(x, training=True).numpy(), rtol=1e-4, atol=1e-5)
    for name in ("renorm_mean", "renorm_stddev", "moving_mean", "moving_variance"):
        np.testing.assert_allclose(getattr(ghost, name).numpy(), getattr(plain, name).numpy(),
                                   rtol=1e-5, err_msg=name)


def test_ghost_batch_renormalization_corrects_each_ghost_batch_toward_the_averages() -> None:
    clipping = {"rmin": 0.5, "rmax": 2.0, "dmax": 1.0}
    layer = GhostBatchNormalization(4, renorm=True, renorm_clipping=clipping)
    layer.build((None, 3))
    mean, stddev = np.array([0.5, -1.0, 2.0]), np.array([2.0, 3.0, 0.5])
    layer.renorm_mean.assign(mean.astype("float32"))
    layer.renorm_stddev.assign(stddev.astype("float32"))
    x = features(8, 3)
    out = layer(x, training=True).numpy()
    for g in range(2):
        part = x[4 * g:4 * g + 4].astype(np.float64)
        sd = np.sqrt(part.var(0) + layer.epsilon)
        r = np.clip(sd / stddev, 0.5, 2.0)
        d = np.clip((part.mean(0) - mean) / stddev, -1.0, 1.0)
        expected = (part - part.mean(0)) / sd * r + d   # gamma 1, beta 0
        np.testing.assert_allclose(out[4 * g:4 * g + 4], expected, rtol=1e-4, atol=1e-4)
    # The gradient flows through the ghost statistics, not through r and d.
    with tf.GradientTape() as tape:
        inputs = tf.constant(x)
        tape.watch(inputs)
        total = tf.reduce_sum(layer(inputs, training=True))
    gradient = tape.gradient(total, inputs).numpy()
    np.testing.assert_allclose(gradient, 0.0, atol=1e-4)   # a sum of normalized values is constant
