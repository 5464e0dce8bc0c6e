"""Paired bootstrap over test items for differences of curve metrics.

Every variant's choices are fixed per lam (L, N); a resample draws test rows with replacement
(the same draws for every variant: paired) and recomputes each variant's curve (mean cost and
accuracy at each lam, on the resampled rows), its metrics (:func:`.frontier.curve_metrics`,
the references recomputed on the same rows), and the difference to the baseline variant.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from coe_gateway.eval.images.frontier import Reference, curve_metrics, picked_matrix

METRICS = ("nauc_common", "ps", "nauc")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Delta:
    """variant - baseline of one metric: the estimate on all test rows, the percentile
    interval, and a two-sided bootstrap p-value (2 x the share of resamples on the far side
    of 0, at least 1/B)."""

    estimate: float
    low: float
    high: float
    p: float


def resample_weights(n: int, n_boot: int, seed: int) -> npt.NDArray[np.float64]:
    """(B, N) how many times each test row is drawn in each resample (rows sum to N)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))  # (B, N)
    w = np.zeros((n_boot, n))
    np.add.at(w, (np.repeat(np.arange(n_boot), n), idx.ravel()), 1.0)
    return w


@dataclass(frozen=True)
class Resampled:
    """The test rows' values and the single-model reference, ready to resample."""

    scores: np.ndarray  # (N, E)
    real: np.ndarray  # (N, E)
    best: int  # column of the best single model (chosen on train)
    weights: np.ndarray  # (B, N)

    def references(self) -> list[Reference]:
        """The reference of each resample."""
        n = self.scores.shape[0]
        acc = self.weights @ self.scores / n  # (B, E)
        cost = self.weights @ self.real / n  # (B, E)
        return [Reference(str(self.best), float(a[self.best]), float(c[self.best]),
                          float(c.min()), float(c.max())) for a, c in zip(acc, cost)]

    def metric_draws(self, choices: np.ndarray, refs: Sequence[Reference]
                     ) -> dict[str, npt.NDArray[np.float64]]:
        """(B,) each metric of the curve of ``choices`` (L, N) on each resample."""
        n = self.scores.shape[0]
        acc = self.weights @ picked_matrix(self.scores, choices).T / n  # (B, L)
        cost = self.weights @ picked_matrix(self.real, choices).T / n  # (B, L)
        rows = [curve_metrics(c, a, r) for c, a, r in zip(cost, acc, refs)]
        return {m: np.array([r[m] for r in rows]) for m in METRICS}


def delta(estimate: float, draws: np.ndarray, level: float = 0.95) -> Delta:
    """The interval and p-value of one difference from its bootstrap draws (B,)."""
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return Delta(estimate, math.nan, math.nan, math.nan)
    a = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [a, 1.0 - a])
    far = min(float(np.mean(draws <= 0.0)), float(np.mean(draws >= 0.0)))
    p = min(1.0, max(2.0 * far, 1.0 / len(draws)))
    return Delta(float(estimate), float(low), float(high), float(p))


def paired_deltas(
    data: Resampled, choices: Mapping[str, np.ndarray], baseline: Mapping[str, str],
    estimates: Mapping[str, Mapping[str, float]], level: float = 0.95,
) -> dict[str, dict[str, Delta]]:
    """{variant: {metric: Delta vs its baseline}} for every variant with a baseline.

    choices: {variant: (L, N)}; baseline: {variant: baseline variant}; estimates: each
    variant's metrics on all test rows (the point estimates of the differences)."""
    refs = data.references()
    draws: dict[str, dict[str, np.ndarray]] = {}

    def get(name: str) -> dict[str, np.ndarray]:
        if name not in draws:
            draws[name] = data.metric_draws(choices[name], refs)
        return draws[name]

    out: dict[str, dict[str, Delta]] = {}
    for name, base in baseline.items():
        mine, theirs = get(name), get(base)
        out[name] = {m: delta(estimates[name][m] - estimates[base][m], mine[m] - theirs[m],
                              level) for m in METRICS}
    return out


def holm(pvalues: Mapping[K, float]) -> dict[K, float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone); NaN stays NaN."""
    finite = sorted(((p, k) for k, p in pvalues.items() if math.isfinite(p)),
                    key=lambda pk: pk[0])
    m = len(finite)
    out = {k: math.nan for k in pvalues}
    running = 0.0
    for i, (p, k) in enumerate(finite):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out
