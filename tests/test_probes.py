"""Fast unit tests of bnbook.probes on tiny synthetic data (no Fashion-MNIST)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from bnbook import probes

RNG = np.random.default_rng(0)


def _bn_model(units: int = 6, features: int = 4) -> keras.Sequential:
    """Dense -> BN -> Dense, with non-trivial gamma and beta."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(shape=(features,)),
        keras.layers.Dense(units, use_bias=False),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Dense(3),
    ])
    bn = model.get_layer("bn")
    rng = np.random.default_rng(1)
    bn.gamma.assign(rng.uniform(0.5, 2.0, units).astype("float32"))
    bn.beta.assign(rng.normal(size=units).astype("float32"))
    return model


def _x(n: int = 32, features: int = 4) -> np.ndarray:
    return (RNG.normal(size=(n, features)) * 3 + 1).astype("float32")


def test_bn_layers_finds_only_batch_normalization() -> None:
    model = _bn_model()
    assert [layer.name for layer in probes.bn_layers(model)] == ["bn"]


def test_predict_training_mode_full_batch_matches_keras_and_keeps_state() -> None:
    model, x = _bn_model(), _x()
    bn = model.get_layer("bn")
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    out = probes.predict_training_mode(model, x, batch_size=len(x))
    expected = model(x, training=True).numpy()  # this call does update the statistics
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    for variable, value in zip(model.non_trainable_variables, before):
        variable.assign(value)
    probes.predict_training_mode(model, x, batch_size=8)
    for variable, value in zip(model.non_trainable_variables, before):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert bn.moving_mean.numpy().shape == (6,)


def test_predict_training_mode_with_several_outputs() -> None:
    model, x = _bn_model(), _x(20)
    both = keras.Model(model.inputs[0], [model.get_layer("bn").output, model.outputs[0]])
    hidden, out = probes.predict_training_mode(both, x, batch_size=8)
    np.testing.assert_allclose(out, probes.predict_training_mode(model, x, batch_size=8), rtol=1e-5, atol=1e-5)
    assert hidden.shape == (20, 6) and out.shape == (20, 3)


def test_batch_size_one_makes_bn_output_beta() -> None:
    model, x = _bn_model(), _x(10)
    probe = keras.Model(model.inputs, model.get_layer("bn").output)
    out = probes.predict_training_mode(probe, x, batch_size=1)
    beta = model.get_layer("bn").beta.numpy()
    np.testing.assert_allclose(out, np.tile(beta, (10, 1)), atol=1e-5)
    # With batch size 2 each normalized value is +-d / sqrt(d^2 + eps), d = half the
    # difference of the pair: close to +-1 unless the two values nearly coincide.
    out2 = probes.predict_training_mode(probe, x, batch_size=2)
    gamma = model.get_layer("bn").gamma.numpy()
    h = (x @ model.layers[0].kernel.numpy()).reshape(5, 2, -1)
    d = (h[:, 0] - h[:, 1]) / 2
    x_hat = d / np.sqrt(d ** 2 + model.get_layer("bn").epsilon)
    expected = np.stack([x_hat, -x_hat], axis=1).reshape(10, -1) * gamma + beta
    np.testing.assert_allclose(out2, expected, rtol=1e-4, atol=1e-4)


def test_accuracy_training_mode_counts_correct_predictions() -> None:
    model, x = _bn_model(), _x(16)
    probs = probes.predict_training_mode(model, x, batch_size=16)
    y = np.argmax(probs, axis=-1)
    assert probes.accuracy_training_mode(model, x, y, batch_size=16) == 1.0
    assert probes.accuracy_training_mode(model, x, (y + 1) % 3, batch_size=16) == 0.0


def test_layer_input_inference_and_training() -> None:
    model, x = _bn_model(), _x()
    dense = model.layers[0]
    expected = x @ dense.kernel.numpy()
    np.testing.assert_allclose(probes.layer_input(model, model.get_layer("bn"), x),
                               expected, rtol=1e-5, atol=1e-5)
    last = model.layers[-1]
    inference = probes.layer_input(model, last, x)
    training = probes.layer_input(model, last, x, training=True, batch_size=len(x))
    assert not np.allclose(inference, training)  # moving vs batch statistics
    np.testing.assert_allclose(training.mean(0), model.get_layer("bn").beta.numpy(), atol=1e-4)


def test_layer_input_one_batch_eager_equals_the_compiled_batches() -> None:
    model, x = _bn_model(), _x(20)
    last = model.layers[-1]
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    eager = probes.layer_input(model, last, x, training=True, batch_size=len(x))  # one batch
    compiled = probes.predict_training_mode(keras.Model(model.inputs, last.input), x,
                                            batch_size=len(x))
    np.testing.assert_allclose(eager, compiled, rtol=1e-5, atol=1e-6)
    halves = probes.layer_input(model, last, x, training=True, batch_size=10)  # two batches
    beta = model.get_layer("bn").beta.numpy()
    for half in (halves[:10], halves[10:]):
        np.testing.assert_allclose(half.mean(0), beta, atol=1e-4)  # each by its own statistics
    assert not np.allclose(halves, eager)
    for variable, value in zip(model.non_trainable_variables, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)  # no trace left


def test_recompute_bn_statistics_sets_population_statistics() -> None:
    model, x = _bn_model(), _x(64)
    bn = model.get_layer("bn")
    inputs = x @ model.layers[0].kernel.numpy()
    changes = probes.recompute_bn_statistics(model, x, batch_size=16)
    assert set(changes) == {"bn"} and changes["bn"] > 0
    np.testing.assert_allclose(bn.moving_mean.numpy(), inputs.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), inputs.var(0), rtol=1e-4)
    # Now inference on the whole set equals training mode with the whole set as one batch.
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               probes.predict_training_mode(model, x, batch_size=len(x)),
                               rtol=1e-4, atol=1e-4)


def test_noisy_shift_identity_at_inference_affine_in_training() -> None:
    layer = probes.NoisyShift(shift=0.5, scale_min=1.0, scale_max=2.0, seed=1)
    x = _x(50, 8)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    first = layer(x, training=True).numpy()
    second = layer(x, training=True).numpy()
    assert not np.allclose(first, second)  # redrawn at every call
    # Per feature, output = a * x + b with a in [1, 2] and b in [-0.5, 0.5].
    for j in range(x.shape[1]):
        a, b = np.polyfit(x[:, j], first[:, j], 1)
        assert 1.0 - 1e-4 <= a <= 2.0 + 1e-4 and -0.5 - 1e-4 <= b <= 0.5 + 1e-4
    with pytest.raises(ValueError):
        probes.NoisyShift(scale_min=2.0, scale_max=1.0)


def test_noisy_shift_serializes() -> None:
    model = keras.Sequential([keras.Input((3,)), probes.NoisyShift(0.2, 1.0, 1.2, seed=3)])
    clone = keras.models.model_from_json(model.to_json())
    config = clone.layers[0].get_config()
    assert (config["shift"], config["scale_max"], config["seed"]) == (0.2, 1.2, 3)
    assert json.loads(model.to_json())


def test_smoothness_on_a_quadratic_matches_the_hessian() -> None:
    """For least squares the gradient change is exactly eta * H g."""
    keras.utils.set_random_seed(0)
    x = RNG.normal(size=(40, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    start = [v.numpy().copy() for v in model.trainable_variables]
    mse = keras.losses.MeanSquaredError()
    etas = [0.01, 0.02, 0.04]
    result = probes.smoothness_along_gradient(model, x, y[:, None], etas, loss=mse)
    # Hessian of mean((Xw + b - y)^2) over (w, b): 2/n [X 1]^T [X 1].
    a = np.hstack([x, np.ones((len(x), 1))]).astype(np.float64)
    hessian = 2.0 / len(x) * a.T @ a
    w = np.append(start[0].ravel(), start[1])
    g = 2.0 / len(x) * a.T @ (a @ w - y)
    np.testing.assert_allclose(result.gradient_norm, np.linalg.norm(g), rtol=1e-4)
    np.testing.assert_allclose(result.gradient_changes,
                               [eta * np.linalg.norm(hessian @ g) for eta in etas], rtol=1e-3)
    np.testing.assert_allclose(result.effective_beta,
                               np.linalg.norm(hessian @ g) / np.linalg.norm(g), rtol=1e-3)
    expected_losses = [np.mean((a @ (w - eta * g) - y) ** 2) for eta in etas]
    np.testing.assert_allclose(result.losses, expected_losses, rtol=1e-4)
    assert result.loss_range == pytest.approx(
        max(expected_losses + [result.loss_at_start]) - min(expected_losses + [result.loss_at_start]),
        rel=1e-3)
    for variable, value in zip(model.trainable_variables, start):  # weights restored
        np.testing.assert_array_equal(variable.numpy(), value)


def test_warm_times_counts_calls_and_keeps_the_median_or_the_fastest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(probes.time, "perf_counter", lambda: clock[0])
    calls = []

    def scripted(durations: list[float]):
        durations = iter(durations)

        def fn() -> None:  # each call "takes" the next duration on the fake clock
            calls.append(1)
            clock[0] += next(durations)
        return fn

    median = probes.warm_times({"f": scripted([9, 9, 9, 3, 1, 2, 5, 4])}, repeats=5, warmup=3)
    assert len(calls) == 8 and median == {"f": 3}  # the warm-up calls are not timed
    fastest = probes.warm_times({"f": scripted([9, 3, 1, 2])}, repeats=3, warmup=1, keep="fastest")
    assert fastest == {"f": 1}
    order = []
    probes.warm_times({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                      repeats=2, warmup=0)
    assert order == ["a", "b", "a", "b"]  # interleaved
    with pytest.raises(ValueError):
        probes.warm_times({"f": lambda: None}, repeats=0)


def test_compiled_train_steps_equal_fit_on_the_same_batch() -> None:
    x, y = _x(16), RNG.integers(0, 3, size=16)
    trained = []
    for use_fit in (True, False):
        model = _bn_model()
        softmax = keras.Sequential([model, keras.layers.Softmax()])
        softmax.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                        loss="sparse_categorical_crossentropy")
        softmax.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)  # builds optimizer
        if use_fit:
            softmax.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
        else:
            probes.compiled_train_steps(softmax, x, y, steps=3)()
        trained.append([v.numpy() for v in softmax.variables])
    for a, b in zip(*trained):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        probes.compiled_train_steps(softmax, x, y, steps=0)


def test_activation_floats_per_layer() -> None:
    model = _bn_model(units=6, features=4)
    assert probes.activation_floats(model) == {model.layers[0].name: 6, "bn": 6,
                                               model.layers[2].name: 3}
