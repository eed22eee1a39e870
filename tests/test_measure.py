"""bnbook.measure: predictions and accuracy in both modes, layer inputs, gradients, smoothness.

Tiny synthetic data and models; no Fashion-MNIST needed."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnbook import measure
from bnbook.data import scale_pixels
from bnbook.models import build_mlp
from bnbook.training import set_seed
from tiny import bn_model, features, mlp, random_images, small_model

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------- evaluation


def test_bn_layers_finds_only_batch_normalization() -> None:
    model = bn_model()
    assert [layer.name for layer in measure.bn_layers(model)] == ["bn"]


def test_predict_training_mode_full_batch_matches_keras_and_keeps_state() -> None:
    model, x = bn_model(), features()
    bn = model.get_layer("bn")
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    out = measure.predict(model, x, training=True, batch_size=len(x))
    expected = model(x, training=True).numpy()  # this call does update the statistics
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    for variable, value in zip(model.non_trainable_variables, before):
        variable.assign(value)
    measure.predict(model, x, training=True, batch_size=8)
    for variable, value in zip(model.non_trainable_variables, before):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert bn.moving_mean.numpy().shape == (6,)


def test_predict_training_mode_with_several_outputs() -> None:
    model, x = bn_model(), features(20)
    both = keras.Model(model.inputs[0], [model.get_layer("bn").output, model.outputs[0]])
    hidden, out = measure.predict(both, x, training=True, batch_size=8)
    np.testing.assert_allclose(out, measure.predict(model, x, training=True, batch_size=8), rtol=1e-5, atol=1e-5)
    assert hidden.shape == (20, 6) and out.shape == (20, 3)


def test_batch_size_one_makes_bn_output_beta() -> None:
    model, x = bn_model(), features(10)
    probe = keras.Model(model.inputs, model.get_layer("bn").output)
    out = measure.predict(probe, x, training=True, batch_size=1)
    beta = model.get_layer("bn").beta.numpy()
    np.testing.assert_allclose(out, np.tile(beta, (10, 1)), atol=1e-5)
    # With batch size 2 each normalized value is +-d / sqrt(d^2 + eps), d = half the
    # difference of the pair: close to +-1 unless the two values nearly coincide.
    out2 = measure.predict(probe, x, training=True, batch_size=2)
    gamma = model.get_layer("bn").gamma.numpy()
    h = (x @ model.layers[0].kernel.numpy()).reshape(5, 2, -1)
    d = (h[:, 0] - h[:, 1]) / 2
    x_hat = d / np.sqrt(d ** 2 + model.get_layer("bn").epsilon)
    expected = np.stack([x_hat, -x_hat], axis=1).reshape(10, -1) * gamma + beta
    np.testing.assert_allclose(out2, expected, rtol=1e-4, atol=1e-4)


def test_accuracy_training_mode_counts_correct_predictions() -> None:
    model, x = bn_model(), features(16)
    probs = measure.predict(model, x, training=True, batch_size=16)
    y = np.argmax(probs, axis=-1)
    assert measure.accuracy(model, x, y, training=True, batch_size=16) == 1.0
    assert measure.accuracy(model, x, (y + 1) % 3, training=True, batch_size=16) == 0.0


def test_accuracy_uses_inference_mode() -> None:
    x, y = random_images()
    model = small_model()
    probs = model(x, training=False).numpy()
    expected = float(np.mean(probs.argmax(axis=1) == y))
    assert measure.accuracy(model, x, y) == pytest.approx(expected)
    # the training-mode answer differs: BN then uses the batch statistics
    train_probs = model(x, training=True).numpy()
    assert not np.allclose(probs, train_probs)


def test_accuracy_is_eager_and_equals_model_predict() -> None:
    x, y = random_images()
    set_seed(0)
    model = small_model()
    expected = model.predict(x, batch_size=1024, verbose=0)
    np.testing.assert_array_equal(measure.predict(model, x, batch_size=100), expected)
    assert measure.accuracy(model, x, y) == float(np.mean(expected.argmax(axis=1) == y))
    with pytest.raises(ValueError, match="batch_size"):
        measure.predict(model, x, batch_size=0)


def test_evaluate_matches_numpy():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    kernel = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]], dtype=np.float32)
    bias = np.array([0.0, 0.1, 0.2], dtype=np.float32)
    model.layers[0].set_weights([kernel, bias])
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 2.0]], dtype=np.float32)
    y = np.array([0, 1, 2, 1])
    logits = x @ kernel + bias
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    loss, acc = measure.evaluate(model, x, y, batch_size=3)  # chunks of 3 and 1
    assert loss == pytest.approx(-np.mean(np.log(probs[np.arange(4), y])), rel=1e-5)
    assert acc == pytest.approx(np.mean(probs.argmax(axis=1) == y))
    np.testing.assert_allclose(measure.predict(model, x, batch_size=3), probs, rtol=1e-5)


def test_evaluate_reports_nan_loss_for_diverged_model(data):
    model = mlp()
    model.layers[1].kernel.assign(np.full(model.layers[1].kernel.shape, np.nan, dtype=np.float32))
    loss, acc = measure.evaluate(model, *data)
    assert math.isnan(loss)
    assert 0.0 <= acc <= 1.0


def test_layer_input_inference_and_training() -> None:
    model, x = bn_model(), features()
    dense = model.layers[0]
    expected = x @ dense.kernel.numpy()
    np.testing.assert_allclose(measure.layer_input(model, model.get_layer("bn"), x),
                               expected, rtol=1e-5, atol=1e-5)
    last = model.layers[-1]
    inference = measure.layer_input(model, last, x)
    training = measure.layer_input(model, last, x, training=True, batch_size=len(x))
    assert not np.allclose(inference, training)  # moving vs batch statistics
    np.testing.assert_allclose(training.mean(0), model.get_layer("bn").beta.numpy(), atol=1e-4)


def test_layer_input_one_batch_eager_equals_the_compiled_batches() -> None:
    model, x = bn_model(), features(20)
    last = model.layers[-1]
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    eager = measure.layer_input(model, last, x, training=True, batch_size=len(x))  # one batch
    compiled = measure.predict(keras.Model(model.inputs, last.input), x, training=True,
                               batch_size=len(x))
    np.testing.assert_allclose(eager, compiled, rtol=1e-5, atol=1e-6)
    halves = measure.layer_input(model, last, x, training=True, batch_size=10)  # two batches
    beta = model.get_layer("bn").beta.numpy()
    for half in (halves[:10], halves[10:]):
        np.testing.assert_allclose(half.mean(0), beta, atol=1e-4)  # each by its own statistics
    assert not np.allclose(halves, eager)
    for variable, value in zip(model.non_trainable_variables, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)  # no trace left


def test_layer_input_by_index_training_mode_normalizes_and_leaves_no_trace(data):
    x, _ = data
    set_seed(0)
    model = mlp("batch", hidden=(16,))
    activation = [i for i, layer in enumerate(model.layers)
                  if isinstance(layer, keras.layers.Activation)][0]
    before = [w.numpy().copy() for w in model.non_trainable_weights]
    z = measure.layer_input(model, activation, x, training=True)
    assert z.shape == (len(x), 16)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-4)       # beta = 0
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=0.05)        # gamma = 1 (epsilon shrinks a bit)
    for w, b in zip(model.non_trainable_weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
    # Inference mode with fresh moving statistics (mean 0, variance 1) is just the Dense output.
    dense_out = measure.layer_input(model, activation - 1, x)
    np.testing.assert_allclose(measure.layer_input(model, activation, x), dense_out / np.sqrt(1 + 1e-3),
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(IndexError):
        measure.layer_input(model, len(model.layers), x)


# ----------------------------------------------------------------------------- recording


def test_kernel_gradient_norms_vanish_in_deep_sigmoid_network(data):
    x, y = data
    set_seed(0)
    deep = mlp("none", activation="sigmoid", hidden=(16,) * 8)
    norms = measure.kernel_gradient_norms(deep, x, y)
    assert norms.shape == (9,) and np.all(norms > 0)
    assert norms[0] < norms[-1] / 10          # the first layer gets far less gradient
    set_seed(0)
    bn = mlp("batch", activation="sigmoid", hidden=(16,) * 8)
    before = [w.numpy().copy() for w in bn.non_trainable_weights]
    measure.kernel_gradient_norms(bn, x, y)
    for w, b in zip(bn.non_trainable_weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


def test_smoothness_on_a_quadratic_matches_the_hessian() -> None:
    """For least squares the gradient change is exactly eta * H g."""
    keras.utils.set_random_seed(0)
    x = RNG.normal(size=(40, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    start = [v.numpy().copy() for v in model.trainable_variables]
    mse = keras.losses.MeanSquaredError()
    etas = [0.01, 0.02, 0.04]
    result = measure.smoothness_along_gradient(model, x, y[:, None], etas, loss=mse)
    # Hessian of mean((Xw + b - y)^2) over (w, b): 2/n [X 1]^T [X 1].
    a = np.hstack([x, np.ones((len(x), 1))]).astype(np.float64)
    hessian = 2.0 / len(x) * a.T @ a
    w = np.append(start[0].ravel(), start[1])
    g = 2.0 / len(x) * a.T @ (a @ w - y)
    np.testing.assert_allclose(result.gradient_norm, np.linalg.norm(g), rtol=1e-4)
    np.testing.assert_allclose(result.gradient_changes,
                               [eta * np.linalg.norm(hessian @ g) for eta in etas], rtol=1e-3)
    np.testing.assert_allclose(result.effective_smoothness,
                               np.linalg.norm(hessian @ g) / np.linalg.norm(g), rtol=1e-3)
    expected_losses = [np.mean((a @ (w - eta * g) - y) ** 2) for eta in etas]
    np.testing.assert_allclose(result.losses, expected_losses, rtol=1e-4)
    assert result.loss_range == pytest.approx(
        max(expected_losses + [result.loss_at_start]) - min(expected_losses + [result.loss_at_start]),
        rel=1e-3)
    for variable, value in zip(model.trainable_variables, start):  # weights restored
        np.testing.assert_array_equal(variable.numpy(), value)


def test_activation_floats_per_layer() -> None:
    model = bn_model(units=6, features=4)
    assert measure.activation_floats(model) == {model.layers[0].name: 6, "bn": 6,
                                               model.layers[2].name: 3}


def test_steps_to_reach():
    steps = [0, 10, 20, 30]
    assert measure.steps_to_reach(steps, [0.1, 0.5, 0.9, 0.95], 0.9) == 20
    assert measure.steps_to_reach(steps, [0.1, np.nan, 0.7, 0.8], 0.9) == math.inf
    assert measure.steps_to_reach(steps, [0.1, np.nan, 0.95, 0.8], 0.9) == 20


def test_uint8_images_are_scaled_as_the_loader_scales_them() -> None:
    pixels = RNG.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    labels = RNG.integers(0, 10, 300).astype(np.uint8)
    set_seed(0)
    model = small_model()
    for training in (False, True):
        np.testing.assert_array_equal(measure.predict(model, pixels, training=training),
                                      measure.predict(model, scale_pixels(pixels), training=training))
    assert measure.evaluate(model, pixels, labels) == measure.evaluate(model, scale_pixels(pixels), labels)


def test_kernel_gradient_norms_include_convolutions() -> None:
    set_seed(0)
    conv = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3),
                             keras.layers.BatchNormalization(), keras.layers.Flatten(),
                             keras.layers.Dense(10, activation="softmax")])
    x = RNG.random((8, 28, 28, 1), dtype=np.float32)
    norms = measure.kernel_gradient_norms(conv, x, RNG.integers(0, 10, 8))
    assert norms.shape == (2,) and np.all(norms > 0)


# ----------------------------------------------------------------------------- practice part


def test_evaluate_outputs_scores_each_output_and_evaluate_refuses_several() -> None:
    from bnbook.models import branch, side_by_side

    both = side_by_side({"a": lambda: build_mlp((4,)), "b": lambda: build_mlp((6,))}, seed=0)
    x, y = random_images(64)
    scores = measure.evaluate_outputs(both, x, y)
    assert scores == [measure.evaluate(branch(both, name), x, y) for name in ("a", "b")]
    assert measure.evaluate_outputs(branch(both, "a"), x, y) == [scores[0]]
    with pytest.raises(ValueError, match="evaluate_outputs"):
        measure.evaluate(both, x, y)


def test_unit_weight_norms_are_column_norms_and_scale_with_the_kernel() -> None:
    model = build_mlp((5, 3), normalization="batch")
    dense = model.layers[1]
    expected = np.linalg.norm(dense.kernel.numpy(), axis=0)
    np.testing.assert_allclose(measure.unit_weight_norms(dense), expected, rtol=1e-6)
    conv = keras.layers.Conv2D(4, 3)
    conv.build((None, 8, 8, 2))
    per_channel = np.sqrt((conv.kernel.numpy() ** 2).sum(axis=(0, 1, 2)))
    np.testing.assert_allclose(measure.unit_weight_norms(conv), per_channel, rtol=1e-6)


def test_scale_invariant_layers_and_effective_learning_rates() -> None:
    model = build_mlp((5, 3), normalization="batch")
    found = measure.scale_invariant_layers(model)
    assert [layer.name for layer in found] == [model.layers[1].name, model.layers[4].name]
    assert measure.scale_invariant_layers(build_mlp((5,))) == []        # no BN, no invariance
    rates = measure.effective_learning_rates(model, 0.1)
    first = model.layers[1]
    np.testing.assert_allclose(rates[first.name], 0.1 / measure.unit_weight_norms(first) ** 2)
    first.kernel.assign(first.kernel * 2.0)                             # twice the norm
    np.testing.assert_allclose(measure.effective_learning_rates(model, 0.1)[first.name],
                               rates[first.name] / 4, rtol=1e-5)
    with pytest.raises(ValueError, match="positive"):
        measure.effective_learning_rates(model, 0.0)


def test_the_function_and_the_direction_step_obey_the_effective_learning_rate() -> None:
    """Scaling a kernel before BN by c leaves the training-mode output unchanged and divides the
    gradient by c, so an SGD step of rate c^2 * eta turns the direction as eta did (exactly
    when BN's epsilon is negligible next to the variances)."""
    model = build_mlp((6,), normalization="batch")
    x, y = random_images(32)
    dense = model.layers[1]
    model.layers[2].epsilon = 1e-9
    before = model(x, training=True).numpy()

    def gradient() -> np.ndarray:
        with tf.GradientTape() as tape:
            loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
                y, model(scale_pixels(x) if x.dtype == np.uint8 else x, training=True)))
        return tape.gradient(loss, dense.kernel).numpy()

    g1 = gradient()
    dense.kernel.assign(dense.kernel * 3.0)
    np.testing.assert_allclose(model(x, training=True).numpy(), before, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(gradient(), g1 / 3.0, rtol=1e-3, atol=1e-7)


# ----------------------------------------------------------------------------- dead units


def test_dead_relu_share_counts_units_that_are_zero_for_every_example() -> None:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4),
                              keras.layers.Activation("relu"), keras.layers.Dense(2),
                              keras.layers.ReLU()])
    first, second = model.layers[0], model.layers[2]
    first.set_weights([np.eye(4, dtype="float32"), np.array([0, 0, -9, -9], "float32")])
    second.set_weights([np.zeros((4, 2), "float32"), np.array([1, -1], "float32")])
    x = RNG.uniform(0.1, 1.0, size=(20, 4)).astype("float32")   # positive inputs
    assert measure.dead_relu_share(model, x) == 0.5          # 2 of 4, and 1 of 2
    second.set_weights([np.zeros((4, 2), "float32"), np.array([-1, -1], "float32")])
    assert measure.dead_relu_share(model, x) == 1.0          # the second layer is dead


def test_dead_relu_share_needs_a_relu_layer() -> None:
    with pytest.raises(ValueError, match="no ReLU layer"):
        measure.dead_relu_share(keras.Sequential([keras.Input((3,)),
                                                  keras.layers.Dense(2)]),
                                np.ones((4, 3), "float32"))
