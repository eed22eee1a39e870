"""bnbook.training: the learning rate really used, epoch timing, determinism, step records,
and the stop of a diverged run."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from bnbook.measure import evaluate
from bnbook.models import build_mlp
from bnbook.training import (DivergenceStop, StepRecorder, TabulatedRate, compile_model,
                             compile_sgd, decay_equivalent_rates, fit, set_seed)
from tiny import mlp, random_images, small_model


# ----------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("rate", [0.5, 1e-3])
def test_compile_sgd_uses_the_given_learning_rate(rate: float) -> None:
    model = compile_sgd(small_model(), rate)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(rate)


def test_compile_model_takes_any_optimizer_instance_and_refuses_a_name() -> None:
    optimizer = keras.optimizers.AdamW(learning_rate=3e-4, weight_decay=0.05)
    model = compile_model(small_model(), optimizer, steps_per_execution=8)
    assert model.optimizer is optimizer
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(3e-4)
    x, y = random_images(64)
    model.fit(x, y, batch_size=32, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 2
    with pytest.raises(TypeError, match="learning rate"):
        compile_model(small_model(), "adam")


def test_compile_sgd_passes_the_momentum() -> None:
    model = compile_sgd(small_model(), 0.1, momentum=0.9)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert model.optimizer.momentum == pytest.approx(0.9)


def test_fit_records_one_time_per_epoch_and_prints_a_line_each(capsys: pytest.CaptureFixture) -> None:
    x, y = random_images()
    set_seed(0)
    result = fit(compile_sgd(small_model(), 0.1), x, y, epochs=3, validation_data=(x, y), label="tiny")
    assert len(result.seconds_per_epoch) == 3 and all(s > 0 for s in result.seconds_per_epoch)
    assert set(result.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert result.final("loss") == result.history["loss"][-1]
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("tiny: epoch  1")


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    x, y = random_images()

    def run(seed: int) -> list[float]:
        set_seed(seed)
        return fit(compile_sgd(small_model(), 0.1), x, y, epochs=2, verbose=False).history["loss"]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_step_recorder_records_chunk_means_and_probes(data):
    x, y = data
    set_seed(0)
    model = compile_sgd(mlp(), learning_rate=0.0, steps_per_execution=4)  # lr 0: losses are fixed
    calls = []
    recorder = StepRecorder({"calls": lambda m: calls.append(1) or len(calls)}, every=8)
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, callbacks=[recorder], verbose=0)
    rec = recorder.arrays()
    assert rec["step"].tolist() == [0, 8, 16]
    assert rec["calls"].tolist() == [1, 2, 3]
    assert math.isnan(rec["batch_loss"][0])
    assert np.all(np.diff(rec["seconds"]) >= 0)
    # With learning rate 0 every batch's loss is known: the mean over the batches of each record.
    batch_losses = [evaluate(model, x[i:i + 16], y[i:i + 16])[0] for i in range(0, 128, 16)]
    np.testing.assert_allclose(rec["batch_loss"][1:], [np.mean(batch_losses)] * 2, rtol=1e-4)


def test_step_recorder_rejects_bad_interval():
    with pytest.raises(ValueError):
        StepRecorder({}, every=0)


# ----------------------------------------------------------------------------- sweeps


def test_divergence_stop_ends_a_run_whose_loss_is_not_finite(data):
    x, y = data
    set_seed(0)
    model = compile_sgd(mlp(activation="linear"), learning_rate=1e9, steps_per_execution=1)
    stop = DivergenceStop()
    model.fit(x, y, batch_size=16, epochs=5, shuffle=False, callbacks=[stop], verbose=0)
    assert stop.diverged and int(model.optimizer.iterations.numpy()) < 5 * 8
    set_seed(0)
    calm = DivergenceStop()
    compile_sgd(mlp(), 0.01).fit(x, y, batch_size=16, epochs=1, callbacks=[calm], verbose=0)
    assert not calm.diverged


def test_divergence_stop_watches_named_losses_and_waits_for_all_of_them() -> None:
    stop = DivergenceStop(["a_loss", "b_loss"])
    model = small_model()
    model.stop_training = False
    stop.set_model(model)
    stop.on_train_batch_end(0, {"loss": float("nan"), "a_loss": float("nan"), "b_loss": 0.3})
    assert not stop.diverged and not stop.model.stop_training
    stop.on_train_batch_end(1, {"loss": float("nan"), "a_loss": float("nan"),
                                "b_loss": float("inf")})
    assert stop.diverged and stop.model.stop_training
    with pytest.raises(ValueError):
        DivergenceStop([])


def test_tabulated_rate_gives_each_steps_rate_then_holds_the_last() -> None:
    schedule = TabulatedRate([0.3, 0.2, 0.1])
    assert [float(schedule(step)) for step in range(5)] == pytest.approx([0.3, 0.2, 0.1, 0.1, 0.1])
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    weight = keras.Variable(np.zeros(1, dtype="float32"))
    for _ in range(2):                                   # gradient 1: the weight moves by the rate
        optimizer.apply_gradients([(np.ones(1, dtype="float32"), weight)])
    assert float(weight.numpy()[0]) == pytest.approx(-0.5)
    clone = TabulatedRate.from_config(schedule.get_config())
    assert float(clone(1)) == pytest.approx(0.2)
    for bad in ([], [[0.1]], [0.1, -0.1], [0.1, float("nan")]):
        with pytest.raises(ValueError):
            TabulatedRate(bad)


def test_decay_equivalent_rates_move_scale_invariant_weights_as_decay_does() -> None:
    """SGD with decay on a loss of w / |w| only, against plain SGD at the equivalent rates."""
    rng = np.random.default_rng(0)
    target = rng.normal(size=5)

    def gradient(w: np.ndarray) -> np.ndarray:   # of L(w) = -cos(w, target): scale-invariant
        norm = np.linalg.norm(w)
        u = w / norm
        g_u = -target / np.linalg.norm(target)
        return (g_u - (g_u @ u) * u) / norm

    rates = 0.5 * (1 + np.cos(np.pi * np.arange(50) / 50))
    start = rng.normal(size=5)
    decayed = plain = start
    for eta, eta_plain in zip(rates, decay_equivalent_rates(rates, 0.2)):
        decayed = (1 - eta * 0.2) * decayed - eta * gradient(decayed)
        plain = plain - eta_plain * gradient(plain)
    np.testing.assert_allclose(decayed / np.linalg.norm(decayed), plain / np.linalg.norm(plain),
                               rtol=1e-10, atol=1e-12)
    assert np.linalg.norm(decayed) < 0.5 * np.linalg.norm(plain)     # decay did shrink it
    undecayed = start                                # without the raised rates: another path
    for eta in rates:
        undecayed = undecayed - eta * gradient(undecayed)
    assert not np.allclose(undecayed / np.linalg.norm(undecayed), plain / np.linalg.norm(plain))
    np.testing.assert_allclose(decay_equivalent_rates(rates, 0.0), rates)
    with pytest.raises(ValueError):
        decay_equivalent_rates(rates, 10.0)              # eta * lambda >= 1
    with pytest.raises(ValueError):
        decay_equivalent_rates([0.1, -0.1], 0.1)         # a negative rate
