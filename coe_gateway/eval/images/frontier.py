"""Cost-accuracy curves of the trade-off policy and their summary metrics.

A router's predicted quality (N, E) and the estimated costs (N, E) go through the server's
own :class:`coe_gateway.policies.TradeOff` (``choose_batch``) at every ``lam`` of one grid per
split (:func:`lam_grid`, derived from the estimated costs, the same for every variant), giving
choices (L, N). A curve is then the (mean realised cost, accuracy) of each row of choices.

Metrics of a curve: MMR-Bench's nAUC / Ps / QNC (:func:`coe_gateway.eval.metrics.mmr_summary`,
own-frontier normalisation), and :func:`common_nauc`: the mean height of the Pareto frontier
over one cost range shared by every router (the cheapest to the most expensive single model),
the frontier held flat outside its own range, so that routers whose frontiers span different
costs are integrated over the same interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from coe_gateway.eval import metrics
from coe_gateway.eval.suite import Sweep
from coe_gateway.eval.sweep import Arrays, sweep_values
from coe_gateway.policies import TradeOff

DEFAULT_POINTS = 60


def lam_grid(est: np.ndarray, points: int = DEFAULT_POINTS) -> npt.NDArray[np.float64]:
    """(L,) lam values: 0 plus a log grid over the switching range of the estimated costs
    (est: (N, E) USD), as :func:`coe_gateway.eval.sweep.sweep_values` derives it."""
    n, e = est.shape
    zeros = np.zeros((n, e))
    arrays = Arrays(tuple(str(i) for i in range(e)), zeros, zeros, est, zeros, zeros)
    grid: npt.NDArray[np.float64] = sweep_values(Sweep(count=points), TradeOff(), arrays,
                                                 "<images>", "lam").astype(np.float64)
    return grid


def sweep_choices(quality: np.ndarray, est: np.ndarray, lams: np.ndarray) -> npt.NDArray[np.int16]:
    """(L, N) the trade-off policy's first choice per query at each lam.
    quality, est: (N, E); confidence is unused by the trade-off policy (ones)."""
    policy = TradeOff()
    conf = np.ones_like(quality)
    rows = [policy.with_param(float(lam)).choose_batch(quality, conf, est) for lam in lams]
    return np.stack(rows).astype(np.int16)


def picked_matrix(values: np.ndarray, choices: np.ndarray) -> npt.NDArray[np.float64]:
    """(L, N) ``values[n, choices[l, n]]`` (values: (N, E); every choice is >= 0 here)."""
    out: npt.NDArray[np.float64] = np.take_along_axis(
        values[None, :, :], choices[:, :, None].astype(np.int64), axis=2)[:, :, 0]
    return out


def curve(choices: np.ndarray, scores: np.ndarray, real: np.ndarray
          ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(cost (L,), accuracy (L,)): mean realised cost and mean score of each row of choices."""
    return picked_matrix(real, choices).mean(axis=1), picked_matrix(scores, choices).mean(axis=1)


def common_nauc(cost: np.ndarray, acc: np.ndarray, c_lo: float, c_hi: float) -> float:
    """Mean height of the Pareto frontier on [c_lo, c_hi]: linear between frontier points
    (trapezoids, as MMR-Bench's nAUC), flat at its first quality below its cheapest point and
    at its last quality beyond its most expensive one (``np.interp``'s extension)."""
    front = metrics.pareto_frontier(cost, acc)  # (K, 2)
    if len(front) == 0:
        return math.nan
    if c_hi - c_lo <= metrics.EPS:
        return float(np.interp(c_lo, front[:, 0], front[:, 1]))
    inside = front[:, 0][(front[:, 0] > c_lo) & (front[:, 0] < c_hi)]
    xs = np.unique(np.concatenate([[c_lo, c_hi], inside]))
    ys = np.interp(xs, front[:, 0], front[:, 1])
    return float(np.sum((ys[1:] + ys[:-1]) * np.diff(xs)) / 2.0 / (c_hi - c_lo))


@dataclass(frozen=True)
class Reference:
    """What curve metrics are measured against (test-set figures of train-chosen models).

    best_accuracy / best_cost: the best single model (chosen on train by accuracy) on test;
    c_lo / c_hi: the cheapest and most expensive single model's mean test cost.
    """

    best: str
    best_accuracy: float
    best_cost: float
    c_lo: float
    c_hi: float


def curve_metrics(cost: np.ndarray, acc: np.ndarray, ref: Reference) -> dict[str, float]:
    """nAUC, Ps, QNC (MMR-Bench), nAUC on the common grid, and the max accuracy swept."""
    mmr = metrics.mmr_summary(cost, acc, ref.best_accuracy, ref.best_cost)
    return {"nauc": mmr["nauc"], "ps": mmr["ps"], "qnc": mmr["qnc"],
            "nauc_common": common_nauc(cost, acc, ref.c_lo, ref.c_hi)}


def correctness_metrics(quality: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Per-model correctness prediction from predicted quality, averaged over models:
    AUROC (models whose test outcomes hold both classes) and Brier score.
    quality, scores: (N, E); scores 0/1."""
    from sklearn.metrics import roc_auc_score

    aucs = [float(roc_auc_score(scores[:, j] >= 0.5, quality[:, j]))
            for j in range(scores.shape[1]) if 0 < (scores[:, j] >= 0.5).sum() < len(scores)]
    brier = float(np.mean((np.clip(quality, 0.0, 1.0) - scores) ** 2))
    return {"auroc": float(np.mean(aucs)) if aucs else math.nan, "brier": brier}
