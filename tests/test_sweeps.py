"""bnbook.sweeps: the one runner. Rows, curves, divergence, shared compiled models, threads that
give the numbers of one thread and of a plain fit, pairing by seed."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from bnbook.data import load_fashion_mnist, scale_pixels
from bnbook.measure import evaluate, evaluate_outputs
from bnbook.models import build_mlp, gaussian_kernels, side_by_side
from bnbook.sweeps import Variant, column, default_workers, rows_where, run_sweep
from bnbook.training import compile_model, compile_sgd, fit, set_seed
from tiny import mlp


# ----------------------------------------------------------------------------- evaluation


def test_shared_architecture_gives_the_same_results_as_fresh_models(data):
    def variants(arch):
        return [Variant(f"lr {lr}", lambda: mlp("batch"), lr, epochs=2, batch_size=16,
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
        Variant("learns", lambda: mlp(), 0.1, epochs=3, batch_size=16, record_every=4,
                settings={"kind": "ok"}),
        Variant("full batch", lambda: mlp("batch"), 0.5, steps=5, batch_size=n,
                settings={"kind": "full"}),
        Variant("explodes", lambda: mlp(activation="linear"), 1e9, epochs=3, batch_size=16,
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
            Variant("a", lambda: mlp("batch"), 0.3, epochs=2, batch_size=16, arch="bn"),
            Variant("b", lambda: mlp(), 0.1, epochs=2, batch_size=16, record_every=4),
            Variant("c", lambda: mlp("batch"), 0.03, epochs=2, batch_size=16, arch="bn", seed=7),
            Variant("d", lambda: mlp("batch"), 0.5, steps=6, batch_size=32, arch="full"),
        ], data, valid=data, seed=3, verbose=False, workers=workers)
    serial, threaded = sweep(1), sweep(3)
    for one, other in zip(serial, threaded, strict=True):
        assert one["label"] == other["label"]
        assert (one["train_loss"], one["valid_accuracy"]) == (other["train_loss"], other["valid_accuracy"])
    np.testing.assert_array_equal(serial[1]["curve"]["batch_loss"], threaded[1]["curve"]["batch_loss"])
    set_seed(3)                                   # variant "b" by hand: fit on the arrays
    model = compile_sgd(mlp(), 0.1, steps_per_execution=4)
    model.fit(*data, epochs=2, batch_size=16, shuffle=True, verbose=0)
    assert evaluate(model, *data)[0] == serial[1]["train_loss"]


def test_the_evaluation_chunk_changes_no_result(data, monkeypatch: pytest.MonkeyPatch):
    import bnbook.sweeps

    chunks = []

    def recording_evaluate(model, x, y, **kwargs):
        chunks.append(kwargs.get("batch_size"))
        return evaluate_outputs(model, x, y, **kwargs)

    monkeypatch.setattr(bnbook.sweeps, "evaluate_outputs", recording_evaluate)

    def sweep(eval_batch_size):
        return run_sweep([Variant("v", lambda: mlp("batch"), 0.1, epochs=1, batch_size=16)],
                         data, valid=data, seed=2, verbose=False,
                         eval_batch_size=eval_batch_size)[0]
    default, chunked = sweep(None), sweep(5)
    assert chunks == [None, None, 5, 5]            # train and valid, each run
    assert chunked["valid_accuracy"] == default["valid_accuracy"]
    assert chunked["train_loss"] == pytest.approx(default["train_loss"], rel=1e-6)


def test_evaluate_train_can_be_skipped(data):
    (row,) = run_sweep([Variant("v", lambda: mlp(), 0.1, epochs=1, batch_size=32)], data,
                       valid=data, evaluate_train=False, verbose=False)
    assert "train_accuracy" not in row and "valid_accuracy" in row


def test_optimizer_factory_trains_like_a_plain_fit_with_that_optimizer(data):
    """Adam with decoupled weight decay that spares BN's gamma and beta: the runner's numbers are
    those of compiling the same optimizer by hand."""
    def adam(lr):
        optimizer = keras.optimizers.Adam(learning_rate=lr, weight_decay=0.1)
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta"])
        return optimizer

    (row,) = run_sweep([Variant("adam", lambda: mlp("batch"), 0.01, epochs=2, batch_size=16,
                                optimizer=adam, seed=2)], data, keep_weights=True, verbose=False)
    set_seed(2)
    model = compile_model(mlp("batch"), adam(0.01), steps_per_execution=64)
    model.fit(*data, epochs=2, batch_size=16, shuffle=True, verbose=0)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    for kept, by_hand in zip(row["weights"], model.get_weights(), strict=True):
        np.testing.assert_allclose(kept, by_hand, rtol=1e-5, atol=1e-6)
    assert evaluate(model, *data)[0] == pytest.approx(row["train_loss"], rel=1e-5)


def test_variants_of_one_arch_share_a_model_only_with_the_same_optimizer(data):
    """A shared model is reset between variants (Adam's moments too); another factory gets its
    own model, so the numbers equal those of fresh models."""
    def adam(lr):
        return keras.optimizers.Adam(learning_rate=lr)

    def variants(arch):
        return [Variant("sgd", lambda: mlp("batch"), 0.1, epochs=1, batch_size=16, arch=arch),
                Variant("adam 1", lambda: mlp("batch"), 0.01, epochs=1, batch_size=16,
                        arch=arch, optimizer=adam),
                Variant("adam 2", lambda: mlp("batch"), 0.003, epochs=1, batch_size=16,
                        arch=arch, optimizer=adam)]
    shared = run_sweep(variants("same"), data, seed=1, verbose=False, workers=1)
    fresh = run_sweep(variants(None), data, seed=1, verbose=False, workers=1)
    for a, b in zip(shared, fresh, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5), a["label"]
    assert shared[0]["train_loss"] != pytest.approx(shared[1]["train_loss"], rel=1e-3)


def test_a_side_by_side_variant_gives_one_row_per_branch_as_if_trained_apart(data):
    """Branches of one model: one row each, with its own scores, history, curve and weights,
    equal to training the branch alone; a diverging branch does not stop the other."""
    def two(exploding: bool = False):
        def plain():
            net = mlp(activation="linear" if exploding else "relu")
            if exploding:
                gaussian_kernels(1e4)(net)
            return net
        return side_by_side({"plain": plain, "bn": lambda: mlp("batch")}, seed=5)

    probe = {"norm": lambda m: float(np.linalg.norm(m.get_layer("bn_net").layers[1].kernel))}
    rows = run_sweep([Variant("pair", two, 0.1, epochs=2, batch_size=16, seed=5,
                              record_every=8, probes=probe, settings={"kind": "ok"}),
                      Variant("boom", lambda: two(True), 5.0, epochs=2, batch_size=16, seed=5)],
                     data, test=data, keep_weights=True, verbose=False)
    assert [(r["label"], r["branch"]) for r in rows] == [("pair", "plain"), ("pair", "bn"),
                                                         ("boom", "plain"), ("boom", "bn")]
    alone, alone_fast = run_sweep(
        [Variant("bn", lambda: mlp("batch"), lr, epochs=2, batch_size=16, seed=5, record_every=8)
         for lr in (0.1, 5.0)], data, test=data, keep_weights=True, verbose=False)
    bn = rows[1]
    assert bn["kind"] == "ok" and bn["steps"] == alone["steps"] == 16
    assert bn["test_accuracy"] == pytest.approx(alone["test_accuracy"])
    assert bn["train_loss"] == pytest.approx(alone["train_loss"], rel=1e-4)
    assert set(bn["history"]) == {"loss", "accuracy"}
    assert bn["history"]["loss"] == pytest.approx(alone["history"]["loss"], rel=1e-4)
    np.testing.assert_allclose(bn["curve"]["batch_loss"], alone["curve"]["batch_loss"], rtol=1e-4)
    assert bn["curve"]["norm"].shape == (3,) and "batch_plain_loss" not in bn["curve"]
    for mine, theirs in zip(bn["weights"], alone["weights"], strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6)
    boom_plain, boom_bn = rows[2], rows[3]
    assert boom_plain["diverged"] and not boom_bn["diverged"]
    assert boom_bn["steps"] == 16                                      # not stopped early
    assert boom_bn["train_loss"] == pytest.approx(alone_fast["train_loss"], rel=1e-4)


def test_loss_weights_are_learning_rates_per_branch_under_momentum_sgd(data):
    def momentum(lr):
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9)

    def pair():
        return side_by_side({"slow": lambda: mlp("batch"), "fast": lambda: mlp("batch")}, seed=1)

    rows = run_sweep([Variant("both", pair, 0.01, epochs=2, batch_size=16, seed=1,
                              optimizer=momentum, loss_weights=(1.0, 3.0))]
                     + [Variant(f"lr {lr}", lambda: mlp("batch"), lr, epochs=2, batch_size=16,
                                seed=1, optimizer=momentum) for lr in (0.01, 0.03)],
                     data, keep_weights=True, verbose=False)
    slow, fast, alone_slow, alone_fast = rows
    for branch_row, alone in ((slow, alone_slow), (fast, alone_fast)):
        for mine, theirs in zip(branch_row["weights"], alone["weights"], strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="one weight per output"):
        compile_model(pair(), momentum(0.1), loss_weights=(1.0,))


def test_a_schedule_restarts_for_each_variant_of_a_shared_model(data):
    def cosine(lr):
        return keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(lr, 16))

    def variants(arch):
        return [Variant(f"seed {s}", lambda: mlp("batch"), 0.3, steps=16, batch_size=16,
                        seed=s, arch=arch, optimizer=cosine) for s in (1, 2)]
    shared = run_sweep(variants("same"), data, verbose=False, workers=1)
    fresh = run_sweep(variants(None), data, verbose=False, workers=1)
    for a, b in zip(shared, fresh, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    with pytest.raises(ValueError, match="schedule"):
        run_sweep([Variant(f"lr {lr}", lambda: mlp("batch"), lr, steps=16, batch_size=16,
                           arch="same", optimizer=cosine) for lr in (0.3, 0.1)],
                  data, verbose=False, workers=1)


def test_a_factory_and_a_momentum_together_are_refused():
    with pytest.raises(ValueError, match="momentum"):
        Variant("v", lambda: mlp(), 0.1, momentum=0.9,
                optimizer=lambda lr: keras.optimizers.SGD(lr, momentum=0.9))


# ----------------------------------------------------------------------------- helpers


def test_default_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BNBOOK_WORKERS", "5")
    assert default_workers() == 5
    monkeypatch.setenv("BNBOOK_WORKERS", "two")
    with pytest.raises(ValueError, match="BNBOOK_WORKERS"):
        default_workers()
    monkeypatch.delenv("BNBOOK_WORKERS")
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert default_workers() == 3


def test_paired_variants_share_initial_weights(data):
    """Same seed, with and without BN: the Dense kernels start equal (BN's own weights are not
    random), so the two variants differ only in BN; the batch order is the seed's too."""
    rows = run_sweep([Variant(name, lambda n=norm: mlp(n), 0.0, batch_size=16, seed=4)
                      for name, norm in (("plain", "none"), ("bn", "batch"))],
                     data, keep_models=True, verbose=False)
    dense = [[layer.kernel.numpy() for layer in row["model"].layers
              if isinstance(layer, keras.layers.Dense)] for row in rows]
    for plain, bn in zip(*dense, strict=True):
        np.testing.assert_array_equal(plain, bn)


def test_uint8_runs_give_the_numbers_of_a_plain_fit_on_the_float_arrays():
    """The replication's runs: uint8 images scaled per batch, validated each epoch, tested after."""
    (x_train, y_train), valid, test = load_fashion_mnist(scaled=False)
    train = (x_train[:2048], y_train[:2048])
    valid, test = (valid[0][:512], valid[1][:512]), (test[0][:512], test[1][:512])

    def build():
        return keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                                 keras.layers.Dense(16, activation="relu"),
                                 keras.layers.BatchNormalization(),
                                 keras.layers.Dense(10, activation="softmax")])

    [row] = run_sweep([Variant("run", build, 0.05, epochs=2, seed=7)], train, valid=valid,
                      test=test, evaluate_train=False, validate_each_epoch=True, verbose=False)
    set_seed(7)
    model = compile_sgd(build(), 0.05)
    plain = fit(model, scale_pixels(train[0]), train[1], epochs=2,
                validation_data=(scale_pixels(valid[0]), valid[1]), verbose=False)
    assert row["history"] == plain.history
    assert len(row["seconds_per_epoch"]) == 2
    assert row["test_accuracy"] == evaluate(model, scale_pixels(test[0]), test[1])[1]
    with pytest.raises(ValueError, match="validate_each_epoch"):
        run_sweep([Variant("run", build, 0.05)], train, validate_each_epoch=True)
