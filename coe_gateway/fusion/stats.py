"""Accuracy statistics for comparing systems on the same questions (numpy only).

:func:`mean_ci` is a percentile-bootstrap interval of a mean score and :func:`wilson` the
Wilson score interval of a proportion. :func:`paired_diff` compares two systems scored on the
same items: a paired-bootstrap interval of the accuracy difference and the exact McNemar
test on the discordant pairs (:func:`mcnemar_exact`, a two-sided binomial test at 1/2).
Bootstraps take a seed, so every figure is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

_CHUNK = 1 << 22
"""Resampled elements drawn at once (bounds the bootstrap's memory)."""


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedDiff:
    """System a against system b on the same items.

    ``diff`` = mean(a) - mean(b), ``[low, high]`` its paired-bootstrap interval,
    ``p_mcnemar`` the exact two-sided McNemar p-value, ``n_a_only`` / ``n_b_only`` the items
    only a / only b got right.
    """

    diff: float
    low: float
    high: float
    p_mcnemar: float
    n_a_only: int
    n_b_only: int


def _vector(x: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    """``x`` as a non-empty 1-D float array of finite values."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite values")
    return arr


def _binary(x: npt.ArrayLike, name: str) -> npt.NDArray[np.bool_]:
    """``x`` as a 1-D boolean array (values must be 0/1 or bool)."""
    arr = _vector(x, name)
    if not np.all((arr == 0.0) | (arr == 1.0)):
        raise ValueError(f"{name} must hold 0/1 (correct or not) values only")
    out: npt.NDArray[np.bool_] = np.equal(arr, 1.0)
    return out


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _boot_means(x: npt.NDArray[np.float64], n_boot: int, seed: int) -> npt.NDArray[np.float64]:
    """``n_boot`` means of ``x`` resampled with replacement (same draws for the same seed)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = x.size
    out = np.empty(n_boot, dtype=np.float64)
    step = max(1, _CHUNK // n)
    for start in range(0, n_boot, step):
        m = min(step, n_boot - start)
        out[start:start + m] = x[rng.integers(0, n, size=(m, n))].mean(axis=1)
    return out


def _percentiles(means: npt.NDArray[np.float64], level: float) -> tuple[float, float]:
    alpha = 1.0 - level
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def mean_ci(correct: npt.ArrayLike, *, level: float = 0.95, n_boot: int = 2000,
            seed: int = 0) -> Interval:
    """The mean of ``correct`` (0/1 or any per-item scores) and its percentile-bootstrap CI."""
    _check_level(level)
    x = _vector(correct, "correct")
    low, high = _percentiles(_boot_means(x, n_boot, seed), level)
    return Interval(estimate=float(x.mean()), low=low, high=high)


def wilson(correct: npt.ArrayLike, *, level: float = 0.95) -> Interval:
    """The proportion correct and its Wilson score interval (normal approximation)."""
    _check_level(level)
    k = _binary(correct, "correct")
    n = k.size
    p = float(k.mean())
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(estimate=p, low=max(0.0, centre - half), high=min(1.0, centre + half))


def mcnemar_exact(n_a_only: int, n_b_only: int) -> float:
    """Exact two-sided McNemar p-value: ``min(1, 2 * P(X <= min))``, X ~ Bin(n_a + n_b, 1/2).

    Computed with integer binomial coefficients (no scipy); 1.0 when there are no
    discordant pairs.
    """
    if n_a_only < 0 or n_b_only < 0:
        raise ValueError("discordant counts must be >= 0")
    n = n_a_only + n_b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(n_a_only, n_b_only) + 1))
    return min(1.0, 2 * tail / (1 << n))


def paired_diff(a_correct: npt.ArrayLike, b_correct: npt.ArrayLike, *, level: float = 0.95,
                n_boot: int = 5000, seed: int = 0) -> PairedDiff:
    """Accuracy of a minus accuracy of b on the same items (0/1 arrays, aligned by item).

    The interval resamples items (both systems together), so it accounts for the pairing;
    the McNemar test uses only the items on which the two disagree.
    """
    _check_level(level)
    a = _binary(a_correct, "a_correct")
    b = _binary(b_correct, "b_correct")
    if a.shape != b.shape:
        raise ValueError(f"a_correct and b_correct differ in length: {a.size} != {b.size}")
    d = a.astype(np.float64) - b.astype(np.float64)
    low, high = _percentiles(_boot_means(d, n_boot, seed), level)
    n_a_only = int(np.sum(a & ~b))
    n_b_only = int(np.sum(b & ~a))
    return PairedDiff(diff=float(d.mean()), low=low, high=high,
                      p_mcnemar=mcnemar_exact(n_a_only, n_b_only),
                      n_a_only=n_a_only, n_b_only=n_b_only)


def fmt_pct(x: float, digits: int = 1) -> str:
    """``x`` (a fraction) as a percentage: ``fmt_pct(0.734) == "73.4%"``."""
    return f"{100.0 * x:.{digits}f}%"
