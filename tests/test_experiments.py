"""Fast tests of bnbook.experiments on tiny random data (no Fashion-MNIST needed)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from bnbook.experiments import (StepRecorder, Variant, column, evaluate, gaussian_kernels,
                                interleaved_step_times, kernel_gradient_norms,
                                rows_where, run_sweep, steps_to_reach)
from bnbook import probes
from bnbook.models import build_mlp
from bnbook.training import compile_sgd, predict_proba, set_seed


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=128).astype(np.uint8)
    x = 0.5 * rng.random((128, 28, 28), dtype=np.float32)
    x[y == 1, :14] += 0.5                    # class 1: a brighter top half, easy to learn
    return x, y


def tiny(norm="none", activation="relu", hidden=(8,)):
    return build_mlp(hidden, normalization=norm, activation=activation, num_classes=2)


# ----------------------------------------------------------------------------- evaluation
def test_evaluate_matches_numpy():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    kernel = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]], dtype=np.float32)
    bias = np.array([0.0, 0.1, 0.2], dtype=np.float32)
    model.layers[0].set_weights([kernel, bias])
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 2.0]], dtype=np.float32)
    y = np.array([0, 1, 2, 1])
    logits = x @ kernel + bias
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    loss, acc = evaluate(model, x, y, batch_size=3)  # chunks of 3 and 1
    assert loss == pytest.approx(-np.mean(np.log(probs[np.arange(4), y])), rel=1e-5)
    assert acc == pytest.approx(np.mean(probs.argmax(axis=1) == y))
    np.testing.assert_allclose(predict_proba(model, x, batch_size=3), probs, rtol=1e-5)


def test_evaluate_reports_nan_loss_for_diverged_model(data):
    model = tiny()
    model.layers[1].kernel.assign(np.full(model.layers[1].kernel.shape, np.nan, dtype=np.float32))
    loss, acc = evaluate(model, *data)
    assert math.isnan(loss)
    assert 0.0 <= acc <= 1.0


def test_layer_input_by_index_training_mode_normalizes_and_leaves_no_trace(data):
    x, _ = data
    set_seed(0)
    model = tiny("batch", hidden=(16,))
    activation = [i for i, layer in enumerate(model.layers)
                  if isinstance(layer, keras.layers.Activation)][0]
    before = [w.numpy().copy() for w in model.non_trainable_weights]
    z = probes.layer_input(model, activation, x, training=True)
    assert z.shape == (len(x), 16)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-4)       # beta = 0
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=0.05)        # gamma = 1 (epsilon shrinks a bit)
    for w, b in zip(model.non_trainable_weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
    # Inference mode with fresh moving statistics (mean 0, variance 1) is just the Dense output.
    dense_out = probes.layer_input(model, activation - 1, x)
    np.testing.assert_allclose(probes.layer_input(model, activation, x), dense_out / np.sqrt(1 + 1e-3),
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(IndexError):
        probes.layer_input(model, len(model.layers), x)


# ----------------------------------------------------------------------------- recording
def test_step_recorder_records_chunk_means_and_probes(data):
    x, y = data
    set_seed(0)
    model = compile_sgd(tiny(), learning_rate=0.0, steps_per_execution=4)  # lr 0: losses are fixed
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
def test_shared_architecture_gives_the_same_results_as_fresh_models(data):
    def variants(arch):
        return [Variant(f"lr {lr}", lambda: tiny("batch"), lr, epochs=2, batch_size=16,
                        settings={"lr": lr}, arch=arch, seed=seed)
                for lr, seed in ((0.3, None), (0.03, None), (0.3, 7))]
    shared = run_sweep(variants("same"), data, seed=3, verbose=False)
    fresh = run_sweep(variants(None), data, seed=3, verbose=False)
    assert [row["seed"] for row in shared] == [3, 3, 7]
    for a, b in zip(shared, fresh):
        assert a["steps"] == b["steps"] == 16
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert shared[0]["train_loss"] != pytest.approx(shared[1]["train_loss"], rel=1e-3)
    assert shared[0]["train_loss"] != pytest.approx(shared[2]["train_loss"], rel=1e-3)  # seed 7


def test_run_sweep_rows_curves_steps_and_divergence(data):
    n = len(data[0])
    rows = run_sweep([
        Variant("learns", lambda: tiny(), 0.1, epochs=3, batch_size=16, record_every=4,
                settings={"kind": "ok"}),
        Variant("full batch", lambda: tiny("batch"), 0.5, steps=5, batch_size=n,
                settings={"kind": "full"}),
        Variant("explodes", lambda: tiny(activation="linear"), 1e9, epochs=3, batch_size=16,
                initialize=gaussian_kernels(10.0), settings={"kind": "bad"}),
    ], data, valid=data, seed=0, verbose=False)
    ok, full, bad = rows
    assert set(ok) >= {"label", "kind", "train_accuracy", "valid_loss", "curve", "seconds", "diverged"}
    assert ok["steps"] == 24 and not ok["diverged"]
    assert ok["curve"]["step"].tolist() == list(range(0, 25, 4))
    assert ok["train_accuracy"] > 0.8 and ok["train_loss"] < 0.5 * math.log(2)
    assert full["steps"] == 5 and full["epochs"] == 5 and "curve" not in full
    assert bad["diverged"] and bad["steps"] < 24          # stopped early, not run to the end
    assert column(rows, "steps", kind="full").tolist() == [5]
    assert [r["label"] for r in rows_where(rows, diverged=False)] == ["learns", "full batch"]


def test_threads_give_the_numbers_of_one_thread_and_of_plain_fit(data):
    def sweep(workers):
        return run_sweep([
            Variant("a", lambda: tiny("batch"), 0.3, epochs=2, batch_size=16, arch="bn"),
            Variant("b", lambda: tiny(), 0.1, epochs=2, batch_size=16, record_every=4),
            Variant("c", lambda: tiny("batch"), 0.03, epochs=2, batch_size=16, arch="bn", seed=7),
            Variant("d", lambda: tiny("batch"), 0.5, steps=6, batch_size=32, arch="full"),
        ], data, valid=data, seed=3, verbose=False, workers=workers)
    serial, threaded = sweep(1), sweep(3)
    for one, other in zip(serial, threaded, strict=True):
        assert one["label"] == other["label"]
        assert (one["train_loss"], one["valid_accuracy"]) == (other["train_loss"], other["valid_accuracy"])
    np.testing.assert_array_equal(serial[1]["curve"]["batch_loss"], threaded[1]["curve"]["batch_loss"])
    set_seed(3)                                   # variant "b" by hand: fit on the arrays
    model = compile_sgd(tiny(), 0.1, steps_per_execution=4)
    model.fit(*data, epochs=2, batch_size=16, shuffle=True, verbose=0)
    assert evaluate(model, *data)[0] == serial[1]["train_loss"]


def test_evaluate_train_can_be_skipped(data):
    (row,) = run_sweep([Variant("v", lambda: tiny(), 0.1, epochs=1, batch_size=32)], data,
                       valid=data, evaluate_train=False, verbose=False)
    assert "train_accuracy" not in row and "valid_accuracy" in row


# ----------------------------------------------------------------------------- helpers
def test_steps_to_reach():
    steps = [0, 10, 20, 30]
    assert steps_to_reach(steps, [0.1, 0.5, 0.9, 0.95], 0.9) == 20
    assert steps_to_reach(steps, [0.1, np.nan, 0.7, 0.8], 0.9) == math.inf
    assert steps_to_reach(steps, [0.1, np.nan, 0.95, 0.8], 0.9) == 20


def test_gaussian_kernels_scale_independence_and_determinism():
    model = tiny(hidden=(64, 64))
    gaussian_kernels(0.02, seed=1)(model)
    kernels = [layer.kernel.numpy() for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    for k in kernels:
        assert k.std() == pytest.approx(0.02, rel=0.1)
    assert not np.allclose(kernels[1][:, :2], kernels[0][:64, :2])   # layers differ
    again = tiny(hidden=(64, 64))
    gaussian_kernels(0.02, seed=1)(again)
    np.testing.assert_array_equal(again.layers[1].kernel.numpy(), kernels[0])
    with pytest.raises(ValueError):
        gaussian_kernels(0.0)


def test_kernel_gradient_norms_vanish_in_deep_sigmoid_network(data):
    x, y = data
    set_seed(0)
    deep = tiny("none", activation="sigmoid", hidden=(16,) * 8)
    norms = kernel_gradient_norms(deep, x, y)
    assert norms.shape == (9,) and np.all(norms > 0)
    assert norms[0] < norms[-1] / 10          # the first layer gets far less gradient
    set_seed(0)
    bn = tiny("batch", activation="sigmoid", hidden=(16,) * 8)
    before = [w.numpy().copy() for w in bn.non_trainable_weights]
    kernel_gradient_norms(bn, x, y)
    for w, b in zip(bn.non_trainable_weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


def test_step_timers_are_positive_and_rank_a_bigger_model_slower(data):
    small = compile_sgd(tiny(), 0.01)
    big = compile_sgd(tiny(hidden=(2048, 2048)), 0.01)   # about 300 times the arithmetic
    times = interleaved_step_times({"small": small, "big": big}, *data, batch_size=16, steps=8,
                                   repeats=3)
    assert set(times) == {"small", "big"} and 0 < times["small"] < times["big"]
