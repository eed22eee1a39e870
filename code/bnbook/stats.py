"""Turn repeated measurements into an effect, a 95 % interval and a verdict: the book's one rule.

Every verdict on accuracy, loss or time in the book comes out of this module,
so that one rule, stated once on the claims page, decides all of them:

    A claim names a direction and a *smallest effect that matters*, ``threshold``.
    From ``n`` paired measurements (seeds that share data order and initial
    weights, or interleaved timing rounds) we compute the mean effect and its
    95 % interval.

    * **supported**: the whole interval lies beyond the threshold, in the
      claimed direction;
    * **not supported**: the whole interval lies short of it (the data
      exclude an effect as large as the claim needs);
    * **inconclusive**: the interval contains the threshold.

The interval is Student's t-interval of the mean of the paired differences,
``mean +- t(0.975, n-1) * sd / sqrt(n)``; :func:`compare_ratio` applies it
to log-ratios, for effects that multiply (times faster, times smaller), and
reports the ratio. With ``method="bootstrap"`` the interval is a percentile
bootstrap of the mean instead (for skewed differences and ``n`` of at least
10; with fewer seeds its intervals are too narrow).

Claims of the kind "the two differ by less than ``threshold``" use
``direction="differ"``: supported when the interval lies outside
``(-threshold, threshold)`` altogether, not supported when it lies inside.

A verdict on accuracy or loss needs at least :data:`MIN_SEEDS` measurements.
Deterministic checks (a gradient check, an exact folding, equality with
Keras) have no spread: :func:`exact` turns an error and a tolerance into the
same kind of result, with the verdict "exact".

:func:`format_effect` prints an effect with the digits its interval supports:
the half-width to one significant digit (two when that digit is 1), the
effect to the same decimal place (``+0.016 +- 0.003``, not ``0.0161``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as _scipy_stats

__all__ = [
    "CONFIDENCE",
    "MIN_SEEDS",
    "VERDICTS",
    "Comparison",
    "compare",
    "compare_ratio",
    "decimals_for",
    "exact",
    "format_effect",
]

#: The confidence level of every interval in the book.
CONFIDENCE = 0.95
#: The fewest paired measurements a verdict on accuracy or loss may rest on.
MIN_SEEDS = 5
#: The three outcomes of the rule, plus the outcome of a deterministic check.
VERDICTS = ("supported", "not supported", "inconclusive", "exact", "not exact")

Direction = Literal["greater", "less", "differ"]


@dataclass(frozen=True)
class Comparison:
    """An effect with its 95 % interval, the claim's threshold, and the verdict.

    ``effect``, ``low`` and ``high`` are differences (``a - b``), or ratios
    (``a / b``) when ``ratio`` is true; ``threshold`` is on the same scale
    (for ratios, a factor such as 1.5). ``values`` keeps the per-seed
    differences or ratios, for a figure or a reader's own check.
    """

    effect: float
    low: float
    high: float
    n: int
    threshold: float
    direction: Direction
    verdict: str
    ratio: bool = False
    values: tuple[float, ...] = ()
    signed: bool = True

    @property
    def half_width(self) -> float:
        """Half the interval's width (for ratios: the larger of the two sides)."""
        return max(self.effect - self.low, self.high - self.effect)

    @property
    def text(self) -> str:
        """The effect with its interval and n, with the digits the interval supports."""
        if self.verdict in ("exact", "not exact"):
            return f"{self.effect:.1e} (tolerance {self.threshold:.0e})"
        if self.ratio:
            digits = decimals_for(self.half_width)
            return (f"{self.effect:.{digits}f}x (95 % CI {self.low:.{digits}f}"
                    f" to {self.high:.{digits}f}, n = {self.n})")
        effect = format_effect(self.effect, self.half_width, signed=self.signed)
        return f"{effect} (95 % CI, n = {self.n})"

    @property
    def rule(self) -> str:
        """The claim the verdict decides, as a short phrase (``effect > +0.005``)."""
        if self.verdict in ("exact", "not exact"):
            return f"error <= {self.threshold:.0e}"
        name = "ratio" if self.ratio else "effect"
        if self.direction == "differ":
            band = f"{self.threshold:g}" if not self.ratio else f"{self.threshold:g}x"
            return f"|{name}| beyond {band}"
        sign = ">" if self.direction == "greater" else "<"
        value = f"{self.threshold:g}x" if self.ratio else f"{self.threshold:+g}"
        return f"{name} {sign} {value}"

    def __str__(self) -> str:
        """``+0.017 ± 0.004 (95 % CI, n = 5): supported (needed: effect > +0.005)``."""
        return f"{self.text}: {self.verdict} (needed: {self.rule})"


def _decide(low: float, high: float, threshold: float, direction: Direction) -> str:
    """The rule: where the interval ``[low, high]`` lies relative to the threshold."""
    if direction == "greater":
        if low > threshold:
            return "supported"
        return "not supported" if high <= threshold else "inconclusive"
    if direction == "less":
        if high < threshold:
            return "supported"
        return "not supported" if low >= threshold else "inconclusive"
    if direction == "differ":
        if threshold < 0:
            raise ValueError("a 'differ' threshold is a distance, at least 0")
        if low > threshold or high < -threshold:
            return "supported"
        within = -threshold <= low and high <= threshold
        return "not supported" if within else "inconclusive"
    raise ValueError(f"direction must be 'greater', 'less' or 'differ', "
                     f"not {direction!r}")


def _interval(values: np.ndarray, method: str, seed: int) -> tuple[float, float, float]:
    """Mean and 95 % interval of the mean of ``values``."""
    mean = float(np.mean(values))
    n = len(values)
    if method == "t":
        sd = float(np.std(values, ddof=1))
        t = float(_scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1))
        half = t * sd / math.sqrt(n)
        return mean, mean - half, mean + half
    if method == "bootstrap":
        rng = np.random.default_rng(seed)
        means = rng.choice(values, size=(10_000, n), replace=True).mean(axis=1)
        tail = (1 - CONFIDENCE) / 2 * 100
        low, high = np.percentile(means, [tail, 100 - tail])
        return mean, float(low), float(high)
    raise ValueError(f"method must be 't' or 'bootstrap', not {method!r}")


def _differences(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray | None,
                 min_n: int) -> np.ndarray:
    a = np.asarray(a, dtype=float).ravel()
    if b is not None and len(np.asarray(b).ravel()) != len(a):
        raise ValueError(f"paired measurements need as many values of b as of a "
                         f"({len(np.asarray(b).ravel())} vs {len(a)}): one per seed of each")
    values = a if b is None else a - np.asarray(b, dtype=float).ravel()
    if len(values) < min_n:
        raise ValueError(f"a verdict needs at least {min_n} paired measurements, got {len(values)}; "
                         "run more seeds (or pass min_n for a quantity that is not accuracy or loss)")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the measurements must be finite numbers, got {values}; "
                         "a diverged run needs a finite stand-in (its accuracy, a capped loss)")
    return values


def compare(a: Sequence[float] | np.ndarray,
            b: Sequence[float] | np.ndarray | None = None, *,
            direction: Direction = "greater", threshold: float = 0.0,
            method: Literal["t", "bootstrap"] = "t", min_n: int = MIN_SEEDS,
            seed: int = 0, signed: bool = True) -> Comparison:
    """Effect ``a - b`` (paired: ``a[i]`` and ``b[i]`` share seed ``i``), or of ``a``
    alone.

    With ``b`` omitted, ``a`` holds the per-seed effects themselves (or values
    compared with a constant ``threshold``, such as chance accuracy).
    ``direction`` is the claim's: ``"greater"`` (effect above ``threshold``),
    ``"less"`` (below it) or ``"differ"`` (farther than ``threshold`` from 0
    either way). ``seed`` seeds the bootstrap's resampling. ``signed=False``
    prints the effect without a sign, for a quantity compared with a fixed
    threshold (an accuracy against chance) rather than a difference.
    """
    values = _differences(a, b, min_n)
    mean, low, high = _interval(values, method, seed)
    return Comparison(mean, low, high, len(values), float(threshold), direction,
                      _decide(low, high, threshold, direction), False,
                      tuple(float(v) for v in values),
                      signed=signed)


def compare_ratio(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray | None = None, *,
                  direction: Direction = "greater", threshold: float = 1.0,
                  min_n: int = MIN_SEEDS) -> Comparison:
    """Ratio ``a / b`` (paired), from the t-interval of the mean log-ratio.

    Times, drifts and step counts multiply rather than add: their per-seed
    log-ratios are closer to symmetric than the ratios. The effect is the
    geometric mean of the ratios; ``threshold`` is a factor (1.5 means "at
    least 1.5 times"); ``"differ"`` asks for a ratio beyond ``threshold`` or
    below ``1 / threshold``.
    """
    a = np.asarray(a, dtype=float).ravel()
    if b is not None and len(np.asarray(b).ravel()) != len(a):
        raise ValueError(f"paired measurements need as many values of b as of a "
                         f"({len(np.asarray(b).ravel())} vs {len(a)}): one per seed or round of each")
    ratios = a if b is None else a / np.asarray(b, dtype=float).ravel()
    if np.any(ratios <= 0):
        raise ValueError(f"ratios must be positive, got {ratios}")
    if threshold <= 0:
        raise ValueError(f"a ratio threshold is a positive factor, got {threshold}")
    logs = _differences(np.log(ratios), None, min_n)
    mean, low, high = _interval(logs, "t", 0)
    verdict = _decide(low, high, math.log(threshold), direction)
    return Comparison(math.exp(mean), math.exp(low), math.exp(high), len(logs), float(threshold),
                      direction, verdict, True, tuple(float(r) for r in ratios))


def exact(error: float, tolerance: float) -> Comparison:
    """A deterministic check: ``error`` (a largest difference, a relative error) within ``tolerance``."""
    if not tolerance > 0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")
    error = float(error)
    verdict = "exact" if math.isfinite(error) and error <= tolerance else "not exact"
    return Comparison(error, error, error, 1, float(tolerance), "less", verdict)


def decimals_for(half_width: float) -> int:
    """Decimal places that an interval of ``half_width`` supports (at least 0).

    One significant digit of the half-width, two when that digit is a 1
    (0.0032 -> 3 places, 0.014 -> 3, 0.3 -> 1, 12 -> 0).
    """
    if not math.isfinite(half_width) or half_width <= 0:
        return 3
    exponent = math.floor(math.log10(half_width))
    leading = int(half_width / 10 ** exponent + 1e-9)
    places = -exponent + (1 if leading == 1 else 0)
    return max(0, places)


def format_effect(effect: float, half_width: float, *, signed: bool = True) -> str:
    """``effect +- half_width`` with the digits the half-width supports (``+0.016 ± 0.003``)."""
    places = decimals_for(half_width)
    sign = "+" if signed else ""
    return f"{effect:{sign}.{places}f} ± {half_width:.{places}f}"
