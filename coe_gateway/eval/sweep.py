"""Sweeping a policy along its cost-quality curve with the server's own Policy objects.

For each value of the policy's ``sweep_param``, ``Policy.choose_batch`` (vectorised, the
same decision as ``Policy.rank``'s first choice) picks an expert per query from the router's
predicted quality and confidence and the *estimated* costs; the operating point is the mean
*realised* cost and quality of those choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coe_gateway.errors import ConfigError
from coe_gateway.eval import metrics
from coe_gateway.eval.suite import Sweep
from coe_gateway.policies import Policy
from coe_gateway.routers.base import Prediction


@dataclass
class Point:
    """One operating point of a policy."""

    param: float
    accuracy: float
    cost: float
    shares: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"param": self.param, "accuracy": self.accuracy, "cost": self.cost,
                "shares": {k: round(v, 5) for k, v in self.shares.items() if v > 0}}


@dataclass
class Arrays:
    """What a sweep needs, aligned on the router's experts.

    quality, confidence: (N, E) predicted; est: (N, E) estimated USD; scores: (N, E) true
    quality (missing = 0); real: (N, E) realised USD.
    """

    experts: tuple[str, ...]
    quality: np.ndarray
    confidence: np.ndarray
    est: np.ndarray
    scores: np.ndarray
    real: np.ndarray

    @classmethod
    def align(cls, prediction: Prediction, models: list[str], est: np.ndarray,
              scores: np.ndarray, real: np.ndarray) -> Arrays:
        cols = [models.index(e) for e in prediction.experts]
        return cls(prediction.experts, prediction.quality, prediction.confidence,
                   est[:, cols], scores[:, cols], real[:, cols])


def evaluate_point(policy: Policy, arrays: Arrays, param: float) -> Point:
    choice = policy.choose_batch(arrays.quality, arrays.confidence, arrays.est)  # (N,)
    counts = np.bincount(choice[choice >= 0], minlength=len(arrays.experts))
    shares = {e: float(c) / len(choice) for e, c in zip(arrays.experts, counts)}
    return Point(float(param), metrics.accuracy(arrays.scores, choice),
                 metrics.mean_cost(arrays.real, choice), shares)


def sweep(policy: Policy, arrays: Arrays, values: np.ndarray) -> list[Point]:
    """The operating point at each value of ``policy.sweep_param``."""
    return [evaluate_point(policy.with_param(float(v)), arrays, float(v)) for v in values]


def _lam_bounds(policy: Policy, arrays: Arrays) -> tuple[float, float]:
    """From "cost barely matters" to "the cheapest expert always wins" for trade-off's lam:
    the switch between experts i, j happens at lam = scale * (q_i - q_j) / (c_i - c_j)."""
    scale = float(getattr(policy, "cost_scale", 1.0))
    c = np.sort(np.unique(np.median(arrays.est, axis=0)))  # (E',) typical estimated cost
    gaps = np.diff(c)
    gaps = gaps[gaps > 0]
    if len(gaps) == 0:
        return scale * 1e-3, scale * 1e3
    high = 2.0 * scale / gaps.min()
    low = 1e-3 * scale / (c[-1] - c[0])
    return low, max(high, low * 10)


def sweep_values(
    spec: Sweep, policy: Policy, arrays: Arrays, suite_path: str, where: str
) -> np.ndarray:
    """The sweep's parameter values: explicit, or ``count`` points between bounds (from the
    suite, else derived: lam -> 0 plus a log grid over its switching range; target and
    min_confidence -> 0..1 linear)."""
    if spec.values is not None:
        return np.asarray(spec.values, dtype=float)
    param = policy.sweep_param
    low, high, log = spec.low, spec.high, spec.log
    if param == "lam":
        auto_low, auto_high = _lam_bounds(policy, arrays)
        low = auto_low if low is None else low
        high = auto_high if high is None else high
        log = True if log is None else log
    elif param in ("target", "min_confidence"):
        low = 0.0 if low is None else low
        high = 1.0 if high is None else high
    if low is None or high is None:
        raise ConfigError(suite_path, where, f"give 'values' or 'low' and 'high' to sweep "
                          f"{param!r}")
    if log:
        if low <= 0 or high <= 0:
            raise ConfigError(suite_path, where, "a log sweep needs low > 0 and high > 0")
        with_zero = param == "lam" and spec.count > 1  # lam = 0: quality only
        grid = np.geomspace(low, high, spec.count - 1 if with_zero else spec.count)
        return np.concatenate([[0.0], grid]) if with_zero else grid
    return np.linspace(low, high, spec.count)


def finite_or_none(x: float) -> float | None:
    """JSON has no NaN/inf: they become null."""
    return None if x is None or not math.isfinite(x) else float(x)
