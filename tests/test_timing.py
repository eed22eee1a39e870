"""bnbook.timing: interleaved rounds, median or fastest, per-step times, compiled steps."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bnbook import timing
from bnbook.models import build_mlp
from bnbook.training import compile_sgd
from tiny import bn_model, features, mlp

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------- evaluation


def test_warm_times_counts_calls_and_keeps_the_median_or_the_fastest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    calls = []

    def scripted(durations: list[float]):
        durations = iter(durations)

        def fn() -> None:  # each call "takes" the next duration on the fake clock
            calls.append(1)
            clock[0] += next(durations)
        return fn

    median = timing.warm_times({"f": scripted([9, 9, 9, 3, 1, 2, 5, 4])}, repeats=5, warmup=3)
    assert len(calls) == 8 and median == {"f": 3}  # the warm-up calls are not timed
    fastest = timing.warm_times({"f": scripted([9, 3, 1, 2])}, repeats=3, warmup=1, keep="fastest")
    assert fastest == {"f": 1}
    order = []
    timing.warm_times({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                      repeats=2, warmup=0)
    assert order == ["a", "b", "b", "a"]  # interleaved, the order reversed in odd rounds
    with pytest.raises(ValueError):
        timing.warm_times({"f": lambda: None}, repeats=0)
    rounds = timing.round_times({"f": scripted([9, 4, 6]), "g": scripted([9, 1, 2])},
                                repeats=2, warmup=1)
    assert rounds["f"].tolist() == [4, 6] and rounds["g"].tolist() == [1, 2]  # paired by round


def test_round_times_alternates_the_order_and_keeps_the_rounds_paired() -> None:
    clock, calls = [0.0], []

    def candidate(name: str, seconds: list[float]):
        seconds = iter(seconds)

        def fn() -> None:  # the first call of a round is slowed by one second
            first_in_round = len(calls) % 3 == 0
            calls.append(name)
            clock[0] += next(seconds) + (1.0 if first_in_round else 0.0)
        return fn

    own = {"a": [10, 20, 30, 40], "b": [1, 2, 3, 4], "c": [5, 6, 7, 8]}
    rounds = timing.round_times({name: candidate(name, s) for name, s in own.items()},
                                repeats=4, warmup=0, clock=lambda: clock[0])
    assert calls == ["a", "b", "c", "c", "b", "a", "a", "b", "c", "c", "b", "a"]  # ABBA
    # Entry i of each array is round i, whoever went first: the penalty lands on "a"
    # in rounds 0 and 2 and on "c" in rounds 1 and 3, so it cancels over the rounds.
    assert rounds["a"].tolist() == [11, 20, 31, 40]
    assert rounds["b"].tolist() == [1, 2, 3, 4]
    assert rounds["c"].tolist() == [5, 7, 7, 9]
    assert rounds["a"].mean() - np.mean(own["a"]) == rounds["c"].mean() - np.mean(own["c"])


def test_round_times_reads_the_clock_it_is_given() -> None:
    cpu = [0.0]

    def work(seconds: float):
        def fn() -> None:  # advances only the given clock, not the wall clock
            cpu[0] += seconds
        return fn

    rounds = timing.round_times({"f": work(2.0), "g": work(0.5)}, repeats=3, warmup=1,
                                clock=lambda: cpu[0])
    assert rounds["f"].tolist() == [2.0] * 3 and rounds["g"].tolist() == [0.5] * 3
    assert cpu[0] == 4 * 2.5  # the warm-up call of each ran too, untimed


def test_compiled_train_steps_equal_fit_on_the_same_batch() -> None:
    x, y = features(16), RNG.integers(0, 3, size=16)
    trained = []
    for use_fit in (True, False):
        model = bn_model()
        softmax = keras.Sequential([model, keras.layers.Softmax()])
        softmax.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                        loss="sparse_categorical_crossentropy")
        softmax.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)  # builds optimizer
        if use_fit:
            softmax.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
        else:
            timing.compiled_train_steps(softmax, x, y, steps=3)()
        trained.append([v.numpy() for v in softmax.variables])
    for a, b in zip(*trained):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        timing.compiled_train_steps(softmax, x, y, steps=0)


def test_step_timers_are_positive_and_rank_a_bigger_model_slower(data):
    small = compile_sgd(mlp(), 0.01)
    # About 2,000 times the arithmetic: a step of "big" must outweigh the noise of fit's
    # fixed cost per call (tenths of a second on a busy machine), which "small" is made of.
    big = compile_sgd(mlp(hidden=(4096, 4096)), 0.01)
    times = timing.interleaved_step_times({"small": small, "big": big}, *data, batch_size=16, steps=8,
                                   repeats=4)
    assert set(times) == {"small", "big"}
    assert times["small"].shape == (4,) and np.all(times["small"] > 0)
    assert np.median(times["small"]) < np.median(times["big"])
