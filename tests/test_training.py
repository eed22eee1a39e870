"""Training helpers: the learning rate really used, epoch timing, inference-mode accuracy,
determinism, and parallel runs that equal serial ones."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bnbook.parallel import TrainJob, default_workers, run_jobs
from bnbook.data import load_fashion_mnist, scale_pixels
from bnbook.training import accuracy, compile_sgd, fit, image_batches, predict_proba, set_seed


def tiny_data(n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((n, 28, 28), dtype=np.float32)
    y = (x[:, :14].mean(axis=(1, 2)) > x[:, 14:].mean(axis=(1, 2))).astype(np.uint8)
    return x, y


def tiny_model() -> keras.Sequential:
    return keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                             keras.layers.Dense(8, activation="relu"),
                             keras.layers.BatchNormalization(),
                             keras.layers.Dense(10, activation="softmax")])


@pytest.mark.parametrize("rate", [0.5, 1e-3])
def test_compile_sgd_uses_the_given_learning_rate(rate: float) -> None:
    model = compile_sgd(tiny_model(), rate)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(rate)


def test_fit_records_one_time_per_epoch_and_prints_a_line_each(capsys: pytest.CaptureFixture) -> None:
    x, y = tiny_data()
    set_seed(0)
    result = fit(compile_sgd(tiny_model(), 0.1), x, y, epochs=3, validation_data=(x, y), label="tiny")
    assert len(result.seconds_per_epoch) == 3 and all(s > 0 for s in result.seconds_per_epoch)
    assert set(result.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert result.final("loss") == result.history["loss"][-1]
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("tiny: epoch  1")


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    x, y = tiny_data()

    def run(seed: int) -> list[float]:
        set_seed(seed)
        return fit(compile_sgd(tiny_model(), 0.1), x, y, epochs=2, verbose=False).history["loss"]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_accuracy_uses_inference_mode() -> None:
    x, y = tiny_data()
    model = tiny_model()
    probs = model(x, training=False).numpy()
    expected = float(np.mean(probs.argmax(axis=1) == y))
    assert accuracy(model, x, y) == pytest.approx(expected)
    # the training-mode answer differs: BN then uses the batch statistics
    train_probs = model(x, training=True).numpy()
    assert not np.allclose(probs, train_probs)


def test_accuracy_is_eager_and_equals_model_predict() -> None:
    x, y = tiny_data()
    set_seed(0)
    model = tiny_model()
    expected = model.predict(x, batch_size=1024, verbose=0)
    np.testing.assert_array_equal(predict_proba(model, x, batch_size=100), expected)
    assert accuracy(model, x, y) == float(np.mean(expected.argmax(axis=1) == y))
    with pytest.raises(ValueError, match="batch_size"):
        predict_proba(model, x, batch_size=0)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_image_batches_train_exactly_like_fit_on_the_arrays(dtype: str) -> None:
    """uint8 pixels: the batches of fit on the scaled floats; float images: of fit on them."""
    pixels = np.random.default_rng(1).integers(0, 256, (1000, 28, 28), dtype=np.uint8)
    labels = (pixels[:, :14].mean(axis=(1, 2)) > pixels[:, 14:].mean(axis=(1, 2))).astype(np.uint8)
    images = pixels if dtype == "uint8" else scale_pixels(pixels)

    def weights_after(batches: bool) -> list[np.ndarray]:
        set_seed(3)
        model = compile_sgd(tiny_model(), 0.1)
        if batches:
            fit(model, image_batches(images, labels, batch_size=32, shuffle=True),
                epochs=2, verbose=False)
        else:
            fit(model, scale_pixels(pixels), labels, epochs=2, batch_size=32, verbose=False)
        return model.get_weights()

    for a, b in zip(weights_after(True), weights_after(False), strict=True):
        np.testing.assert_array_equal(a, b)


def test_default_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BNBOOK_WORKERS", "5")
    assert default_workers() == 5
    monkeypatch.delenv("BNBOOK_WORKERS")
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert default_workers() == 3


def test_parallel_runs_are_deterministic_and_keep_their_order() -> None:
    arch = tiny_model().to_json()
    jobs = [TrainJob("a", arch, seed=5, learning_rate=0.05, epochs=1),
            TrainJob("b", arch, seed=6, learning_rate=0.05, epochs=1),
            TrainJob("a again", arch, seed=5, learning_rate=0.05, epochs=1)]
    outcomes = run_jobs(jobs, workers=2)
    assert [o.job.label for o in outcomes] == ["a", "b", "a again"]
    assert outcomes[0].history == outcomes[2].history
    assert outcomes[0].test_accuracy == outcomes[2].test_accuracy
    assert outcomes[0].history != outcomes[1].history
    assert 0.0 <= outcomes[0].test_accuracy <= 1.0


def test_a_job_gives_the_numbers_of_a_plain_fit_on_the_float_arrays() -> None:
    arch = tiny_model().to_json()
    [outcome] = run_jobs([TrainJob("job", arch, seed=7, learning_rate=0.05, epochs=1)], workers=1)
    (x_train, y_train), valid, (x_test, y_test) = load_fashion_mnist()
    set_seed(7)
    model = compile_sgd(keras.models.model_from_json(arch), 0.05)
    plain = fit(model, x_train, y_train, epochs=1, validation_data=valid, verbose=False)
    assert outcome.history == plain.history
    assert outcome.test_accuracy == model.evaluate(x_test, y_test, batch_size=1024, verbose=0)[1]
