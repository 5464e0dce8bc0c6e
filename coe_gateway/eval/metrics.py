"""Routing metrics, each defined here with its source.

Conventions. ``scores`` is (N, M): model m's quality on query n in 0..1, with a missing
result counted as 0 (a model that gave no graded answer earns nothing). ``costs`` is (N, M)
realised USD. ``choice`` is (N,) model indexes, -1 for "no model" (quality 0, cost 0). A
policy's *curve* is its sweep of operating points ``(cost, quality)``: mean realised cost per
query and mean quality (accuracy where scores are 0/1).

Summary metrics of a curve:

- AIQ on the non-decreasing convex hull (RouterBench, Hu et al. 2024, arXiv:2403.12031).
- APGR, CPT(50%), CPT(80%) (RouteLLM, Ong et al. 2024, arXiv:2406.18665).
- nAUC, Ps, QNC (MMR-Bench, Ma et al. 2026, arXiv:2601.17814, as in its released
  ``src/mmrbench/eval.py``).
- the cost at which the policy matches the best single model's accuracy, as a fraction of
  that model's cost (this project; read off the convex hull).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

EPS = 1e-12


def _area(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoid area under y(x) (x ascending)."""
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


# -- per-decision quantities -------------------------------------------------------------


def picked(values: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """(N,) ``values[n, choice[n]]``, 0 where choice is -1 or the value is missing."""
    rows = np.arange(len(choice))
    got = values[rows, np.maximum(choice, 0)]
    return np.where((choice >= 0) & np.isfinite(got), got, 0.0)


def accuracy(scores: np.ndarray, choice: np.ndarray) -> float:
    """Mean quality of the chosen answers (accuracy for 0/1 scores): (1/N) sum_n s[n, c_n]."""
    return float(picked(scores, choice).mean())


def mean_cost(costs: np.ndarray, choice: np.ndarray) -> float:
    """Mean realised cost per query, USD: (1/N) sum_n cost[n, c_n]."""
    return float(picked(costs, choice).mean())


def oracle_choice(scores: np.ndarray, costs: np.ndarray) -> npt.NDArray[np.intp]:
    """(N,) the oracle: the best model for each query, the cheapest among ties (RouterBench's
    "Oracle"; RouteLLM's and MMR-Bench's upper bound)."""
    s = np.nan_to_num(scores, nan=0.0)
    best = s >= s.max(axis=1, keepdims=True) - EPS  # (N, M)
    choice: npt.NDArray[np.intp] = np.argmin(
        np.where(best, np.nan_to_num(costs, nan=np.inf), np.inf), axis=1)
    return choice


def random_choice(n: int, n_models: int, seed: int) -> np.ndarray:
    """(N,) uniform random routing, seeded (RouterBench's random baseline)."""
    return np.random.default_rng(seed).integers(0, n_models, size=n)


# -- curves -------------------------------------------------------------------------------


def _sorted_points(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    pts = np.column_stack([np.asarray(cost, float), np.asarray(quality, float)])  # (K, 2)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    # cost up, quality down within a cost
    ordered: np.ndarray = pts[np.lexsort((-pts[:, 1], pts[:, 0]))]
    return ordered


def pareto_frontier(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """(K, 2) the non-dominated points, cost ascending, quality strictly increasing: a point
    is kept when no cheaper-or-equal point has at least its quality (MMR-Bench)."""
    out, best = [], -math.inf
    for c, q in _sorted_points(cost, quality):
        if q > best + EPS:
            out.append((c, q))
            best = q
    return np.array(out, dtype=float).reshape(-1, 2)


def nondecreasing_convex_hull(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """(K, 2) the non-decreasing convex hull of a curve (RouterBench, section 3.2).

    Any point on a segment between two operating points is reachable by routing a fraction of
    queries with each, so a router's achievable cost-quality set is the convex hull of its
    points; keeping its upper boundary from the cheapest point up to the highest-quality point
    gives a concave, non-decreasing function of cost, written R~(c).
    """
    hull: list[np.ndarray] = []
    for p in _sorted_points(cost, quality):
        if hull and abs(p[0] - hull[-1][0]) < EPS:
            continue  # same cost, lower quality (sorted)
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= -EPS:
                hull.pop()  # hull[-1] lies on or below the chord hull[-2] -> p
            else:
                break
        hull.append(p)
    if not hull:
        return np.zeros((0, 2))
    pts = np.array(hull)
    top = int(np.argmax(pts[:, 1] >= pts[:, 1].max() - EPS))
    return pts[: top + 1]


def hull_value(hull: np.ndarray, c: np.ndarray | float) -> np.ndarray:
    """R~(c): linear between hull points, 0 below the cheapest point (not reachable), the last
    quality beyond the most expensive one."""
    c = np.asarray(c, dtype=float)
    if len(hull) == 0:
        return np.zeros_like(c)
    inside = np.interp(c, hull[:, 0], hull[:, 1])
    return np.where(c < hull[0, 0] - EPS, 0.0, inside)


def aiq(hull: np.ndarray, c_min: float, c_max: float) -> float:
    """Average Improvement in Quality (RouterBench, eq. 3):
    AIQ = 1/(c_max - c_min) * integral_{c_min}^{c_max} R~(c) dc,
    the mean height of the non-decreasing convex hull over a cost range shared by every
    router compared (here: the cheapest to the most expensive single model). R~ is 0 below
    the router's cheapest point and flat after its last (as RouterBench's code extends it).
    With c_max == c_min it is R~(c_min)."""
    if len(hull) == 0:
        return 0.0
    if c_max - c_min <= EPS:
        return float(hull_value(hull, c_min))
    start = max(c_min, float(hull[0, 0]))
    if start >= c_max:
        return 0.0
    xs = np.unique(np.concatenate([[start, c_max], hull[:, 0][(hull[:, 0] > start)
                                                                & (hull[:, 0] < c_max)]]))
    return _area(hull_value(hull, xs), xs) / (c_max - c_min)


def pgr(quality: np.ndarray | float, weak: float, strong: float) -> np.ndarray:
    """Performance Gap Recovered (RouteLLM, eq. 4): (q - q_weak) / (q_strong - q_weak)."""
    return (np.asarray(quality, dtype=float) - weak) / (strong - weak)


def _curve(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by x; at equal x the highest y (the best operating point there)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    order = np.lexsort((-y, x))
    xs, first = np.unique(x[order], return_index=True)
    return xs, y[order][first]


def apgr(x: np.ndarray, quality: np.ndarray, weak: float, strong: float) -> float:
    """Average Performance Gap Recovered (RouteLLM, eq. 5): APGR = integral_0^1 PGR(x) dx,
    x = the share of calls to the strong model (two models) or, with more models, the
    normalised cost (cost - c_weak) / (c_strong - c_weak), weak = cheapest model, strong =
    best single model. The curve is linear between the sweep's points sorted by x, flat
    beyond them (as RouteLLM's ``np.trapz`` over its points), integrated on [0, 1].
    NaN when weak and strong have equal quality."""
    if abs(strong - weak) <= EPS or len(x) == 0:
        return math.nan
    xs, ys = _curve(np.clip(x, 0.0, 1.0), pgr(quality, weak, strong))
    grid = np.unique(np.concatenate([[0.0, 1.0], xs]))
    return _area(np.interp(grid, xs, ys), grid)


def cpt(x: np.ndarray, quality: np.ndarray, weak: float, strong: float, target: float) -> float:
    """Call-Performance Threshold (RouteLLM, section 5): CPT(t) = the smallest x (share of
    strong calls, or normalised cost with more than two models; see :func:`apgr`) at which
    the curve reaches PGR >= t, linear between sweep points. NaN when never reached."""
    if abs(strong - weak) <= EPS or len(x) == 0:
        return math.nan
    xs, ys = _curve(np.asarray(x, float), pgr(quality, weak, strong))
    for k in range(len(xs)):
        if ys[k] >= target - EPS:
            if k == 0:
                return float(max(xs[k], 0.0))
            frac = (target - ys[k - 1]) / (ys[k] - ys[k - 1])
            return float(max(xs[k - 1] + frac * (xs[k] - xs[k - 1]), 0.0))
    return math.nan


def mmr_summary(
    cost: np.ndarray, quality: np.ndarray, best_quality: float, best_cost: float
) -> dict[str, float]:
    """MMR-Bench's three summary metrics, on the Pareto frontier F of the curve:

    - nAUC = (1/(c_max - c_min)) * trapezoid area under F between its cheapest (c_min) and
      most expensive (c_max) point: the mean quality along the frontier (a single point:
      its quality);
    - Ps (peak score) = the highest quality on F;
    - QNC (quality-neutral cost) = the cost of the cheapest point of F whose quality reaches
      the best single model's, divided by that model's cost (inf when never reached).
    """
    front = pareto_frontier(cost, quality)
    if len(front) == 0:
        return {"nauc": math.nan, "ps": math.nan, "qnc": math.inf}
    span = front[-1, 0] - front[0, 0]
    nauc = _area(front[:, 1], front[:, 0]) / span if span > EPS \
        else float(front[:, 1].max())
    reach = front[front[:, 1] >= best_quality - EPS]
    qnc = float(reach[0, 0] / best_cost) if len(reach) and best_cost > 0 else math.inf
    return {"nauc": nauc, "ps": float(front[:, 1].max()), "qnc": qnc}


def match_cost_fraction(hull: np.ndarray, best_quality: float, best_cost: float) -> float:
    """The cost at which the policy matches the best single model's quality, as a fraction of
    that model's cost: min {c : R~(c) >= q_best} / c_best on the non-decreasing convex hull
    (linear between operating points, i.e. mixing two configurations). inf when the hull
    never reaches q_best. Unlike QNC it credits interpolation between sweep points."""
    if len(hull) == 0 or hull[-1, 1] < best_quality - EPS or best_cost <= 0:
        return math.inf
    k = int(np.argmax(hull[:, 1] >= best_quality - EPS))
    if k == 0:
        return float(hull[0, 0] / best_cost)
    (x0, y0), (x1, y1) = hull[k - 1], hull[k]
    return float((x0 + (best_quality - y0) / (y1 - y0) * (x1 - x0)) / best_cost)
