"""bnbook.stats: the book's verdict rule, its intervals and the digits it prints."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bnbook.stats import compare, compare_ratio, decimals_for, exact, format_effect


def test_t_interval_of_paired_differences_matches_scipy() -> None:
    a = np.array([0.87, 0.88, 0.86, 0.875, 0.872])
    b = np.array([0.85, 0.86, 0.855, 0.851, 0.858])
    result = compare(a, b, threshold=0.005)
    d = a - b
    low, high = scipy_stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=scipy_stats.sem(d))
    assert result.effect == pytest.approx(d.mean())
    assert (result.low, result.high) == (pytest.approx(low), pytest.approx(high))
    assert result.n == 5 and result.values == pytest.approx(tuple(d))


@pytest.mark.parametrize("shift, verdict", [(0.02, "supported"), (0.0, "not supported"),
                                             (0.005, "inconclusive")])
def test_the_rule_for_a_claim_of_a_larger_effect(shift: float, verdict: str) -> None:
    noise = np.array([-0.002, 0.001, 0.0, 0.002, -0.001])
    assert compare(shift + noise, threshold=0.005).verdict == verdict


def test_the_rule_for_smaller_and_for_differ() -> None:
    noise = np.array([-0.002, 0.001, 0.0, 0.002, -0.001])
    assert compare(-0.02 + noise, direction="less", threshold=-0.005).verdict == "supported"
    assert compare(noise, direction="less", threshold=-0.005).verdict == "not supported"
    assert compare(0.02 + noise, direction="differ", threshold=0.01).verdict == "supported"
    assert compare(-0.02 + noise, direction="differ", threshold=0.01).verdict == "supported"
    assert compare(noise, direction="differ", threshold=0.01).verdict == "not supported"
    assert compare(0.01 + noise, direction="differ", threshold=0.01).verdict == "inconclusive"
    with pytest.raises(ValueError, match="direction"):
        compare(noise, direction="up")


def test_a_verdict_needs_five_finite_paired_seeds() -> None:
    with pytest.raises(ValueError, match="at least 5"):
        compare([0.9, 0.91, 0.92], [0.8, 0.8, 0.8])
    with pytest.raises(ValueError, match="as many"):
        compare([0.9] * 5, [0.8] * 4)
    with pytest.raises(ValueError, match="finite"):
        compare([0.9, 0.9, math.nan, 0.9, 0.9], [0.8] * 5)
    assert compare([1.0, 2.0, 3.0], min_n=3).n == 3


def test_ratios_use_the_log_scale() -> None:
    a = np.array([2.0, 2.2, 1.9, 2.1, 2.05])
    b = np.ones(5)
    result = compare_ratio(a, b, threshold=1.5)
    logs = np.log(a)
    low, high = scipy_stats.t.interval(0.95, 4, loc=logs.mean(), scale=scipy_stats.sem(logs))
    assert result.effect == pytest.approx(math.exp(logs.mean()))
    assert (result.low, result.high) == (pytest.approx(math.exp(low)), pytest.approx(math.exp(high)))
    assert result.verdict == "supported" and result.ratio
    assert compare_ratio(a, b, threshold=3.0).verdict == "not supported"
    assert compare_ratio(1 / a, b, direction="differ", threshold=1.5).verdict == "supported"
    with pytest.raises(ValueError, match="positive"):
        compare_ratio([1.0, -1.0, 1.0, 1.0, 1.0])


def test_bootstrap_interval_is_reproducible_and_brackets_the_mean() -> None:
    values = np.random.default_rng(0).exponential(0.01, 20)
    one = compare(values, method="bootstrap", threshold=0.0)
    two = compare(values, method="bootstrap", threshold=0.0)
    assert (one.low, one.high) == (two.low, two.high)
    assert one.low < one.effect < one.high
    with pytest.raises(ValueError, match="method"):
        compare(values, method="jackknife")


def test_exact_checks() -> None:
    assert exact(3e-7, 1e-5).verdict == "exact"
    assert exact(3e-3, 1e-5).verdict == "not exact"
    assert exact(math.nan, 1e-5).verdict == "not exact"
    assert exact(3e-7, 1e-5).text == "3.0e-07 (tolerance 1e-05)"
    assert str(exact(3e-3, 1e-5)) == "3.0e-03 (tolerance 1e-05): not exact (needed: error <= 1e-05)"
    with pytest.raises(ValueError):
        exact(0.0, 0.0)


@pytest.mark.parametrize("half, places", [(0.0032, 3), (0.014, 3), (0.3, 1), (12.0, 0),
                                          (0.00095, 4), (1.0, 1), (250.0, 0)])
def test_decimals_follow_the_first_significant_digit_of_the_interval(half: float, places: int) -> None:
    assert decimals_for(half) == places


def test_format_effect_prints_the_digits_the_interval_supports() -> None:
    assert format_effect(0.0161, 0.0032) == "+0.016 ± 0.003"
    assert format_effect(-0.0161, 0.014) == "-0.016 ± 0.014"
    assert format_effect(0.5, 0.3, signed=False) == "0.5 ± 0.3"
    result = compare([0.0161 + e for e in (-0.003, 0.002, 0.0, 0.001, 0.0)], threshold=0.0)
    assert result.text.startswith("+0.016 ± 0.00") and result.text.endswith("(95 % CI, n = 5)")
    assert result.rule == "effect > +0"
    assert str(result).endswith("supported (needed: effect > +0)")
    accuracy = compare([0.81, 0.80, 0.82, 0.81, 0.80], threshold=0.5, signed=False)
    assert accuracy.text.startswith("0.808 ± ") and accuracy.verdict == "supported"
