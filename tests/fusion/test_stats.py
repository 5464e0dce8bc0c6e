"""Bootstrap and Wilson intervals, the paired difference and the exact McNemar test."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from coe_gateway.fusion.stats import (
    Interval, fmt_pct, mcnemar_exact, mean_ci, paired_diff, wilson,
)


def _draw(p: float, n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(np.float64)


@pytest.mark.parametrize("ci", [mean_ci, wilson])
def test_interval_covers_mean_and_narrows(ci: Callable[[np.ndarray], Interval]) -> None:
    small, large = _draw(0.7, 100, 0), _draw(0.7, 2000, 1)
    for x in (small, large):
        iv = ci(x)
        assert isinstance(iv, Interval)
        assert iv.low < iv.estimate < iv.high and iv.estimate == pytest.approx(x.mean())
        assert iv.low < 0.7 < iv.high
    w_small = ci(small).high - ci(small).low
    w_large = ci(large).high - ci(large).low
    assert w_large < w_small / 3


def test_bootstrap_coverage_and_agreement_with_wilson() -> None:
    hits = 0
    for s in range(200):
        iv = mean_ci(_draw(0.6, 150, 100 + s), n_boot=400, seed=s)
        hits += iv.low <= 0.6 <= iv.high
    assert 0.88 <= hits / 200 <= 0.99
    x = _draw(0.4, 1000, 7)
    b, w = mean_ci(x), wilson(x)
    assert b.low == pytest.approx(w.low, abs=0.01) and b.high == pytest.approx(w.high, abs=0.01)


def test_mean_ci_deterministic_and_constant() -> None:
    x = _draw(0.5, 300, 2)
    assert mean_ci(x, seed=5) == mean_ci(x, seed=5)
    assert mean_ci(np.ones(10)) == Interval(1.0, 1.0, 1.0)
    assert wilson(np.ones(10)).high == 1.0 and wilson(np.ones(10)).low < 1.0
    with pytest.raises(ValueError):
        mean_ci(np.array([]))
    with pytest.raises(ValueError):
        wilson([0.0, 0.5])


def test_paired_identical() -> None:
    a = _draw(0.6, 500, 3)
    r = paired_diff(a, a.copy())
    assert (r.diff, r.low, r.high, r.p_mcnemar, r.n_a_only, r.n_b_only) == (0, 0, 0, 1.0, 0, 0)


def test_paired_clearly_better() -> None:
    rng = np.random.default_rng(4)
    b = _draw(0.55, 1000, 5)
    a = np.where(rng.random(1000) < 0.3, 1.0, b)  # a fixes 30% of items, breaks none
    r = paired_diff(a, b)
    assert r.diff == pytest.approx(a.mean() - b.mean())
    assert 0 < r.low < r.diff < r.high
    assert r.n_b_only == 0 and r.n_a_only == int(np.sum((a == 1) & (b == 0)))
    assert r.p_mcnemar < 1e-20
    rev = paired_diff(b, a)
    assert rev.high < 0 and rev.p_mcnemar == r.p_mcnemar


def test_mcnemar_exact_hand_computed() -> None:
    # 7 discordant pairs, 1 vs 6: p = 2 * (C(7,0) + C(7,1)) / 2^7 = 16/128
    assert mcnemar_exact(1, 6) == 0.125 == mcnemar_exact(6, 1)
    assert mcnemar_exact(0, 5) == 2 / 32
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    a = np.array([1, 0, 1, 1, 1, 1, 1, 1, 0, 0])
    b = np.array([0, 1, 0, 0, 0, 0, 0, 1, 0, 1])  # a only: 6, b only: 2
    r = paired_diff(a, b, n_boot=200)
    n_a, n_b = int(np.sum((a == 1) & (b == 0))), int(np.sum((b == 1) & (a == 0)))
    assert (r.n_a_only, r.n_b_only) == (n_a, n_b) == (6, 2)
    assert r.p_mcnemar == pytest.approx(2 * sum(math.comb(8, i) for i in range(3)) / 256)


def test_mcnemar_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for k, m in [(1, 6), (10, 25), (40, 41), (0, 12), (130, 170)]:
        expected = stats.binomtest(k, k + m, 0.5).pvalue
        assert mcnemar_exact(k, m) == pytest.approx(expected, rel=1e-9)


def test_paired_validation_and_fmt() -> None:
    with pytest.raises(ValueError, match="length"):
        paired_diff([1, 0], [1, 0, 1])
    assert fmt_pct(0.734) == "73.4%" and fmt_pct(0.5, digits=0) == "50%"
