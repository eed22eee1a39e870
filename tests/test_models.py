"""bnbook.models: the MLP each argument asks for (counted from first principles), its layers
(noisy BN, ghost BN), the initializer hook and PreciseBN."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnbook import measure
from bnbook.models import (GhostBatchNormalization, NoisyShift, PaddingMask, SkipInitScale,
                           branch, build_lenet, build_mlp, build_resnet,
                           build_sequence_classifier, gaussian_kernels, noise_at_mean,
                           normalization_layer, recompute_bn_statistics, redraw_kernels,
                           side_by_side,
                           zero_residual_gammas)
from bnbook.training import compile_model, compile_sgd
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
                                       ("renorm", keras.layers.BatchNormalization),
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


def test_noise_at_mean_fixes_every_noise_layer_at_its_mean_and_restores_it() -> None:
    model = keras.Sequential([keras.Input((8,)), NoisyShift(0.5, 1.0, 2.0, seed=1),
                              NoisyShift(0.3, 1.0, 1.4, seed=2)])
    x = features(50, 8)
    with noise_at_mean(model) as fixed:
        np.testing.assert_allclose(model(x, training=True).numpy(), x * 1.5 * 1.2,
                                   rtol=1e-6)
    assert fixed == 2
    settings = [(n.shift, n.scale_min, n.scale_max) for n in model.layers]
    assert settings == [(0.5, 1.0, 2.0), (0.3, 1.0, 1.4)]
    assert not np.allclose(model(x, training=True).numpy(), x * 1.5 * 1.2)


def test_noise_at_mean_restores_the_noise_after_an_error() -> None:
    model = keras.Sequential([keras.Input((3,)), NoisyShift(0.5, 1.0, 2.0)])
    with pytest.raises(RuntimeError), noise_at_mean(model):
        raise RuntimeError("inside")
    assert (model.layers[0].shift, model.layers[0].scale_max) == (0.5, 2.0)
    with noise_at_mean(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])) as n:
        assert n == 0


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


def test_ghost_batch_normalization_can_keep_the_first_ghost_batchs_statistics() -> None:
    x = features(12, 3)
    x[4:] += 10.0                                    # the later ghost batches sit far away
    first = GhostBatchNormalization(4, momentum=0.0, moving_statistics="first")
    every = GhostBatchNormalization(4, momentum=0.0)
    out_first, out_every = first(x, training=True), every(x, training=True)
    np.testing.assert_allclose(out_first.numpy(), out_every.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(first.moving_mean.numpy(), x[:4].mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(first.moving_variance.numpy(), x[:4].var(0), rtol=1e-5)
    assert np.all(every.moving_mean.numpy() > first.moving_mean.numpy() + 5.0)
    clone = keras.layers.deserialize(keras.layers.serialize(first))
    assert clone.moving_statistics == "first"
    with pytest.raises(ValueError, match="moving_statistics"):
        GhostBatchNormalization(4, moving_statistics="last")


# ----------------------------------------------------------------------------- practice part


def test_input_normalization_and_weight_decay_options() -> None:
    model = build_mlp((16, 8), normalization="batch", input_normalization=True,
                      weight_decay=0.02, normalization_decay=0.01)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:3] == ["Flatten", "BatchNormalization", "Dense"]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.kernel_regularizer is not None for d in dense] == [True, True, False]
    assert dense[0].kernel_regularizer.l2 == pytest.approx(0.01)     # lambda / 2
    bns = measure.bn_layers(model)
    assert bns[0].gamma_regularizer is None                          # the input BN is not decayed
    assert bns[1].gamma_regularizer.l2 == pytest.approx(0.005)
    with pytest.raises(ValueError, match="at least 0"):
        build_mlp((4,), weight_decay=-1.0)


def test_weight_decay_penalty_makes_sgd_shrink_the_kernel_by_one_minus_eta_lambda() -> None:
    """With a zero loss gradient (all-zero images), one SGD step is pure decay."""
    model = build_mlp((4,), normalization="batch", weight_decay=0.5)
    compile_sgd(model, 0.1)
    kernel = model.layers[1].kernel.numpy().copy()
    model.train_on_batch(np.zeros((8, 28, 28), "float32"), np.zeros(8, "int64"))
    np.testing.assert_allclose(model.layers[1].kernel.numpy(), (1 - 0.1 * 0.5) * kernel,
                               rtol=1e-5)


def test_rms_normalization_kind() -> None:
    assert isinstance(normalization_layer("rms"), keras.layers.RMSNormalization)
    model = build_mlp((8,), normalization="rms")
    assert any(isinstance(layer, keras.layers.RMSNormalization) for layer in model.layers)


def test_side_by_side_branches_train_exactly_as_alone() -> None:
    """Two branches in one model, trained with Adam, end where each ends trained alone."""
    builders = {"plain": lambda: build_mlp((8,)), "bn": lambda: build_mlp((8,), normalization="batch")}
    x, y = RNG.random((64, 28, 28), dtype=np.float32), RNG.integers(0, 10, 64)
    both = side_by_side(builders, seed=3)
    assert both.output_names == ["plain", "bn"]
    compile_model(both, keras.optimizers.Adam(0.01))
    both.fit(x, (y, y), batch_size=16, epochs=2, shuffle=False, verbose=0)
    for name, build in builders.items():
        keras.utils.set_random_seed(3)
        alone = compile_model(build(), keras.optimizers.Adam(0.01))
        alone.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        for mine, theirs in zip(branch(both, name).get_weights(), alone.get_weights(), strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="the branches are"):
        branch(both, "other")


def test_side_by_side_branches_share_the_initial_weights_of_their_seed() -> None:
    both = side_by_side({"a": lambda: build_mlp((8,)),
                         "b": lambda: build_mlp((8,), normalization="batch")}, seed=0)
    assert np.array_equal(branch(both, "a").layers[1].kernel.numpy(),
                          branch(both, "b").layers[1].kernel.numpy())
    with pytest.raises(ValueError, match="valid Keras name"):
        side_by_side({"no BN": lambda: build_mlp((8,))})
    with pytest.raises(ValueError, match="shape"):
        side_by_side({"a": lambda: build_mlp((8,)),
                      "b": lambda: build_mlp((8,), input_shape=(7, 7))})


def test_padding_mask_and_sequence_classifier_ignore_padding_only_when_told() -> None:
    x = RNG.random((6, 28, 28), dtype=np.float32)
    x[:3, 10:] = -1.0                                                  # three short sequences
    mask = PaddingMask(-1.0)(x).numpy()
    assert mask[:3, :10].all() and not mask[:3, 10:].any() and mask[3:].all()
    other = x.copy()
    other[3:, 20:] = -1.0                                              # pad the others more
    for kind, depends in (("none", False), ("layer", False), ("rms", False),
                          ("batch_masked", True), ("batch", True)):
        model = build_sequence_classifier(kind, units=(8,))
        a = model(x, training=True).numpy()[:3]
        b = model(other, training=True).numpy()[:3]
        assert (np.abs(a - b).max() > 1e-4) == depends, kind
        # inference mode: every sequence on its own
        np.testing.assert_allclose(model(x, training=False).numpy()[:3],
                                   model(x[:3], training=False).numpy(), rtol=1e-4, atol=1e-6)


def test_masked_bn_statistics_are_those_of_the_real_steps() -> None:
    x = RNG.random((4, 28, 28), dtype=np.float32)
    x[:, 7:] = -1.0
    model = build_sequence_classifier("batch_masked", units=(5,))
    dense, bn = model.layers[1], measure.bn_layers(model)[0]
    bn.momentum = 0.0
    model(x, training=True)
    h = x[:, :7] @ dense.kernel.numpy()
    np.testing.assert_allclose(bn.moving_mean.numpy(), h.reshape(-1, 5).mean(0), rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), h.reshape(-1, 5).var(0), rtol=1e-3)
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


def test_renorm_layer_clips_and_averages_with_its_momentum() -> None:
    layer = normalization_layer("renorm", momentum=0.9)
    assert layer.renorm and layer.renorm_momentum == 0.9 and layer.momentum == 0.9
    assert layer.renorm_clipping == {"rmin": 1 / 3, "rmax": 3.0, "dmax": 5.0}
    assert not normalization_layer("batch").renorm


# ------------------------------------------------------------------ LeNet

def test_lenet_shapes_and_parameter_counts() -> None:
    """d2l's LeNet: 61,706 parameters; BN after the four layers drops 226 biases and adds
    4 vectors of 6 + 16 + 120 + 84 numbers."""
    plain = build_lenet()
    assert plain.count_params() == 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706
    bn = build_lenet(normalization="batch")
    assert bn.count_params() == 61_706 - 226 + 4 * 226
    shapes = [tuple(layer.output.shape[1:]) for layer in plain.layers]
    assert shapes == [(28, 28, 1), (28, 28, 6), (28, 28, 6), (14, 14, 6), (10, 10, 16),
                      (10, 10, 16), (5, 5, 16), (400,), (120,), (120,), (84,), (84,), (10,)]
    assert plain.layers[2].get_config()["activation"] == "sigmoid"


def test_lenet_normalizes_only_the_convolutions_when_asked() -> None:
    model = build_lenet(activation="relu", normalization="batch", normalize_dense=False)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("BatchNormalization") == 2
    assert kinds[kinds.index("Flatten") + 1:] == ["Dense", "Activation", "Dense", "Activation",
                                                  "Dense"]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert not any(c.use_bias for c in convs)
    assert all(layer.use_bias for layer in model.layers if isinstance(layer, keras.layers.Dense))


def test_lenet_group_norm_groups_divide_the_channels() -> None:
    model = build_lenet(normalization="group")
    groups = [layer.groups for layer in model.layers
              if isinstance(layer, keras.layers.GroupNormalization)]
    assert groups == [3, 4, 4, 4]
    x = RNG.random((2, 28, 28)).astype("float32")
    assert model(x).shape == (2, 10)


# ------------------------------------------------------------------ ResNet

def _branch_ends(model):
    return [layer.name for layer in model.layers if layer.name.endswith("_bn2")]


def test_resnet_shapes_and_layers() -> None:
    model = build_resnet((8, 16, 32), 1)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 1 + 2 * 3 + 2                    # stem, two per block, two projections
    out = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert out["stem"] == (14, 14, 8) and out["s1b0_conv2"] == (7, 7, 16)
    assert out["s2b0_conv2"] == (4, 4, 32) and out["classifier"] == (10,)
    assert _branch_ends(model) == ["s0b0_bn2", "s1b0_bn2", "s2b0_bn2"]
    assert not any(c.use_bias for c in convs)
    x = RNG.random((3, 28, 28)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x)).sum(axis=1), 1.0, rtol=1e-5)


def test_resnet_variants_differ_only_where_asked() -> None:
    residual = build_resnet((8,), 3)
    plain = build_resnet((8,), 3, residual=False)
    assert residual.count_params() == plain.count_params()  # one width: no projections
    assert not any(isinstance(layer, keras.layers.Add) for layer in plain.layers)
    none = build_resnet(normalization="none")
    assert not measure.bn_layers(none)
    assert all(layer.use_bias for layer in none.layers if isinstance(layer, keras.layers.Conv2D))
    pre = build_resnet(block="pre")
    names = [layer.name for layer in measure.bn_layers(pre)]
    assert names[0] == "s0b0_bn_in" and names[-1] == "final_bn" and not _branch_ends(pre)


def test_skipinit_and_zero_gamma_start_every_block_as_the_identity() -> None:
    x = RNG.random((4, 28, 28)).astype("float32")
    skip = build_resnet((8,), 2, normalization="none", skipinit=True)
    assert sum(isinstance(layer, SkipInitScale) for layer in skip.layers) == 2
    stem = keras.Model(skip.input, skip.get_layer("stem").output)
    last = keras.Model(skip.input, skip.layers[-3].output)   # the last block's output
    # relu(x + 0 * f(x)), twice: the ReLU of the stem's output
    np.testing.assert_allclose(last(x), np.maximum(stem(x), 0), atol=1e-6)
    keras.utils.set_random_seed(0)
    bn = build_resnet((8,), 2)
    assert zero_residual_gammas(bn) == 2
    stem_out = keras.Model(bn.input, bn.get_layer("stem_bn").output)
    block_out = keras.Model(bn.input, bn.layers[-3].output)
    # relu(relu(x) + 0) = relu(x): in training mode too (gamma = 0 whatever the statistics)
    np.testing.assert_allclose(block_out(x, training=True),
                               np.maximum(stem_out(x, training=True), 0), atol=1e-6)
    same = build_resnet((8,), 2, zero_last_gamma=True)
    assert all(np.all(same.get_layer(n).gamma.numpy() == 0) for n in _branch_ends(same))


def test_skipinit_scale_learns_and_serializes() -> None:
    layer = SkipInitScale(initial=0.5)
    x = np.ones((2, 3), "float32")
    np.testing.assert_allclose(layer(x), 0.5 * x)
    assert len(layer.trainable_weights) == 1
    assert SkipInitScale.from_config(json.loads(json.dumps(layer.get_config()))).initial == 0.5


@pytest.mark.parametrize("kwargs, match", [
    (dict(block="middle"), "block must be"),
    (dict(normalization="group"), "normalization must be"),
    (dict(residual=False, skipinit=True), "needs residual=True"),
    (dict(block="pre", zero_last_gamma=True), "zero_last_gamma"),
    (dict(normalization="none", zero_last_gamma=True), "zero_last_gamma"),
    (dict(widths=()), "at least one width"),
])
def test_resnet_bad_arguments_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_resnet(**kwargs)


def test_zero_residual_gammas_refuses_a_model_without_residual_bn() -> None:
    with pytest.raises(ValueError, match="no residual-branch BN"):
        zero_residual_gammas(build_resnet(block="pre"))
    with pytest.raises(ValueError, match="height, width"):
        build_lenet(input_shape=(28, 28, 1))


def test_redraw_kernels_is_a_fresh_seeded_draw() -> None:
    model = build_resnet((8,), 1)
    before = [w.numpy().copy() for w in model.weights]

    def kernels(seed: int) -> list[np.ndarray]:
        keras.utils.set_random_seed(seed)
        assert redraw_kernels(model) == 4                   # stem, two convs, classifier
        return [layer.kernel.numpy().copy() for layer in model.layers if hasattr(layer, "kernel")]

    first, again, other = kernels(1), kernels(1), kernels(2)
    for a, b, c in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    stem = model.get_layer("stem").kernel.numpy()
    assert abs(stem.std() - np.sqrt(2 / 9)) < 0.15                # He normal, fan-in 9
    unchanged = [w for w, old in zip(model.weights, before) if "gamma" in w.path]
    assert all(np.all(w.numpy() == 1) for w in unchanged)
