"""Stopwatches: time calls fairly between several candidates on a busy machine.

A time measured once says little: another process, a frequency change or a
garbage collection can double it. Every timing in the book is therefore
taken in **interleaved rounds**: after untimed warm-up calls (tracing,
compilation, caches), each round calls every candidate once, in turn, so a
slow phase of the machine hits all of them alike. The order alternates
(ABBA): even rounds call the candidates in the order given, odd rounds in
reverse, so that whatever the position in a round does to a call (a cache
the previous candidate left warm or cold, a clock that speeds up) falls on
every candidate equally often in an even number of rounds. The rounds pair
the candidates, as seeds pair the variants of an accuracy experiment, and
:func:`bnbook.stats.compare_ratio` turns the per-round ratios into a ratio
with a 95 % interval.

* :func:`round_times`: the seconds of every round, per candidate, by the wall
  clock or, on a busy machine, by the process's CPU clock.
* :func:`warm_times`: one number per candidate (median or fastest round).
* :func:`interleaved_step_times`: seconds per optimizer step of compiled models.
* :func:`compiled_train_steps`: a callable that runs training steps in one
  compiled call, to time the step itself without ``fit``'s per-call work.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

__all__ = ["compiled_train_steps", "interleaved_step_times", "round_times", "warm_times"]


def round_times(functions: Mapping[str, Callable[[], object]], *, repeats: int = 8,
                warmup: int = 2,
                clock: Callable[[], float] | None = None) -> dict[str, np.ndarray]:
    """Seconds of each function in each of ``repeats`` interleaved rounds.

    ``warmup`` untimed calls of each come first. Round ``i`` calls every
    function once: in the order given when ``i`` is even, in reverse when it
    is odd (ABBA), so an effect of the position within a round cancels over
    an even number of rounds (with an odd number, the order given runs once
    more than its reverse). Entry ``i`` of every
    array belongs to round ``i``, whatever the order, so the arrays are
    paired by round. ``clock`` is the stopwatch: wall time
    (``time.perf_counter``) by default; ``time.process_time`` counts the CPU
    seconds of the whole process, which other processes on a busy machine do
    not add to (they can still slow it, through shared caches and memory
    bandwidth), while any other busy thread of this process does: time
    nothing else meanwhile.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    tick = clock if clock is not None else time.perf_counter
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in functions}
    order = list(functions.items())
    for i in range(repeats):
        for name, fn in (order if i % 2 == 0 else order[::-1]):
            start = tick()
            fn()
            times[name].append(tick() - start)
    return {name: np.asarray(values) for name, values in times.items()}


def warm_times(functions: Mapping[str, Callable[[], object]], *, repeats: int = 8,
               warmup: int = 2, keep: Literal["median", "fastest"] = "median") -> dict[str, float]:
    """Wall seconds of one call of each function, warm: the median of its interleaved
    rounds (robust to the odd slow call) or, with ``keep="fastest"``, its fastest
    round (the least disturbed). See :func:`round_times`."""
    pick = min if keep == "fastest" else statistics.median
    return {name: float(pick(values.tolist()))
            for name, values in round_times(functions, repeats=repeats, warmup=warmup).items()}


def interleaved_step_times(models: Mapping[str, keras.Model], x: np.ndarray, y: np.ndarray, *,
                           batch_size: int = 32, steps: int = 64,
                           repeats: int = 8) -> dict[str, np.ndarray]:
    """Seconds per optimizer step of each compiled model, in every interleaved round.

    Each timed call is one ``fit`` of ``steps`` steps on the first
    ``steps * batch_size`` examples, after one warm-up call per model; the
    arrays are paired by round (:func:`round_times`). The models train while
    timed: time a copy, or measure last.
    """
    n = min(len(x), steps * batch_size)
    x, y = x[:n], y[:n]
    steps = math.ceil(n / batch_size)
    runs = {name: (lambda m=model: m.fit(x, y, batch_size=batch_size, epochs=1,
                                         verbose=0, shuffle=False))
            for name, model in models.items()}
    seconds = round_times(runs, repeats=repeats, warmup=1)
    return {name: s / steps for name, s in seconds.items()}


def compiled_train_steps(model: keras.Model, x: np.ndarray, y: np.ndarray,
                         steps: int) -> Callable[[], None]:
    """A function that runs ``steps`` training steps on the batch ``(x, y)`` in one compiled call.

    Each step is Keras' own ``model.train_step`` (forward, loss, gradients,
    optimizer update, metrics), the function ``fit`` runs for every batch, so
    timing the returned function measures the step itself, without the
    per-call work of ``fit`` (data iterators, callbacks). The model must be
    compiled and have been trained at least once (``fit`` builds the optimizer
    and the metrics). Calling the function trains the model.
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    xb, yb = tf.constant(x), tf.constant(y)

    @tf.function
    def run() -> None:
        for _ in tf.range(steps):
            model.train_step((xb, yb))

    return lambda: run()
