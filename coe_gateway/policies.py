"""Policies: from a router's prediction, per-expert costs and the budget state, rank experts.

``Policy.rank(quality, confidence, costs, budget) -> list[int]`` orders the experts of one
query (first = the answer, the rest = fallbacks); ``Policy.choose_batch`` returns the first
choice for a batch, vectorised, and is what the offline evaluator sweeps. Both take the same
arrays, so the server and the evaluator run the same decision code.

Each policy has one trade-off parameter (``sweep_param``) that moves it along its
cost-quality curve; ``with_param`` returns a copy with another value.

Shapes: quality, confidence, costs are (E,) for ``rank`` and (B, E) for ``choose_batch``;
costs are estimated USD of answering with that expert.
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class BudgetState:
    """What the ledger knows of the caller's budget when the decision is made.

    remaining_usd: what is left in the tightest period budget (None = unlimited)
    period_usd: that period's budget
    period_elapsed: fraction of that period already gone, 0..1
    request_cap_usd: the per-request cost cap (None = none)
    period_remaining_usd: what is left of the period that period_usd and period_elapsed
        describe, when that is not the one remaining_usd comes from (None = remaining_usd)
    """

    remaining_usd: float | None = None
    period_usd: float | None = None
    period_elapsed: float | None = None
    request_cap_usd: float | None = None
    period_remaining_usd: float | None = None

    @property
    def unlimited(self) -> bool:
        return self.remaining_usd is None and self.request_cap_usd is None


UNLIMITED = BudgetState()


def affordable(costs: np.ndarray, budget: BudgetState | None) -> npt.NDArray[np.bool_]:
    """Boolean mask (same shape as costs) of experts the budget allows at all."""
    ok: npt.NDArray[np.bool_] = np.isfinite(costs)
    if budget is None:
        return ok
    if budget.request_cap_usd is not None:
        ok &= costs <= budget.request_cap_usd
    if budget.remaining_usd is not None:
        ok &= costs <= budget.remaining_usd
    return ok


class Policy(ABC):
    """Ranks experts from predicted quality and cost."""

    kind: ClassVar[str] = ""
    sweep_param: ClassVar[str] = ""

    @abstractmethod
    def scores(
        self, quality: np.ndarray, confidence: np.ndarray, costs: np.ndarray,
        budget: BudgetState | None,
    ) -> np.ndarray:
        """Utility of each expert, higher is better; -inf excludes one. Shapes (..., E)."""

    def rank(
        self, quality: np.ndarray, confidence: np.ndarray, costs: np.ndarray,
        budget: BudgetState | None = None,
    ) -> list[int]:
        """Expert indexes best first; experts the budget excludes are left out."""
        u = np.where(affordable(costs, budget), self.scores(quality, confidence, costs, budget),
                     -np.inf)
        # stable tie-break: cheaper first, then column order
        order = np.lexsort((np.arange(len(u)), costs, -u))
        finite = np.isfinite(u)
        return [int(i) for i in order if finite[i]]

    def choose_batch(
        self, quality: np.ndarray, confidence: np.ndarray, costs: np.ndarray,
        budget: BudgetState | None = None,
    ) -> np.ndarray:
        """(B,) first choice per query; -1 where no expert is affordable."""
        u = np.where(affordable(costs, budget), self.scores(quality, confidence, costs, budget),
                     -np.inf)
        # ties -> cheapest: subtract a tiny cost-ordered epsilon
        u = u - 1e-12 * _cost_rank(costs)
        choice = np.argmax(u, axis=-1)
        none = ~np.isfinite(np.take_along_axis(u, choice[..., None], -1)[..., 0])
        return np.where(none, -1, choice)

    def with_param(self, value: float) -> Policy:
        """A copy with the sweep parameter set to ``value``."""
        # every concrete policy is a frozen dataclass; the abstract base is not one
        return dataclasses.replace(self, **{self.sweep_param: value})  # type: ignore[type-var]

    def describe(self) -> dict[str, Any]:
        """``{"kind": ..., **parameters}`` (computed once per policy: policies are frozen)."""
        cached: dict[str, Any] | None = self.__dict__.get("_described")
        if cached is None:
            # every concrete policy is a frozen dataclass; the abstract base is not one
            cached = {"kind": self.kind, **dataclasses.asdict(self)}  # type: ignore[call-overload]
            object.__setattr__(self, "_described", cached)
        return dict(cached)


def _inf_for_nan(costs: np.ndarray) -> np.ndarray:
    """``np.nan_to_num(costs, nan=np.inf)`` (unknown cost = +inf), skipped when every cost is
    finite (the serving path: a copy-free check instead of a slow ufunc wrapper)."""
    if np.isfinite(costs).all():
        return costs
    out: np.ndarray = np.nan_to_num(costs, nan=np.inf)
    return out


def _cost_rank(costs: np.ndarray) -> np.ndarray:
    # stable: equal costs keep column order, as in rank()
    order = np.argsort(_inf_for_nan(costs), axis=-1, kind="stable")
    return np.argsort(order, axis=-1, kind="stable")


@dataclass(frozen=True)
class QualityFirst(Policy):
    """Highest predicted quality; cost only breaks ties (and the budget still excludes)."""

    kind: ClassVar[str] = "quality-first"
    sweep_param: ClassVar[str] = "min_confidence"
    min_confidence: float = 0.0

    def scores(
        self, quality: np.ndarray, confidence: np.ndarray, costs: np.ndarray,
        budget: BudgetState | None,
    ) -> np.ndarray:
        return np.where(confidence >= self.min_confidence, quality, quality - 1.0)


@dataclass(frozen=True)
class CheapestAboveTarget(Policy):
    """The cheapest expert whose predicted quality reaches ``target``; when none does, the
    one of highest predicted quality."""

    kind: ClassVar[str] = "cheapest-above-target"
    sweep_param: ClassVar[str] = "target"
    target: float = 0.7

    def scores(
        self, quality: np.ndarray, confidence: np.ndarray, costs: np.ndarray,
        budget: BudgetState | None,
    ) -> np.ndarray:
        reaches = quality >= self.target
        any_reach = reaches.any(axis=-1, keepdims=True)
        cheap = -_inf_for_nan(costs)
        # experts that reach the target rank by cost above every expert that does not
        return np.where(any_reach, np.where(reaches, 1e6 + cheap, quality - 1e6), quality)


@dataclass(frozen=True)
class TradeOff(Policy):
    """Maximise ``quality - lam * cost / cost_scale``.

    ``cost_scale`` (USD) makes ``lam`` unit-free: with the default 1e-3, lam = 1 trades one
    point of quality (0..1) for a thousandth of a dollar per request.
    """

    kind: ClassVar[str] = "trade-off"
    sweep_param: ClassVar[str] = "lam"
    lam: float = 1.0
    cost_scale: float = 1e-3

    def scores(
        self, quality: np.ndarray, confidence: np.ndarray, costs: np.ndarray,
        budget: BudgetState | None,
    ) -> np.ndarray:
        u: np.ndarray = quality - self.lam * _inf_for_nan(costs) / self.cost_scale
        return u


@dataclass(frozen=True)
class BudgetPaced(Policy):
    """A trade-off whose lambda follows the budget: ``quality - lam_t * cost / cost_scale``.

    ``pace = (left / period budget) / (1 - elapsed)`` compares the share of the budget still
    left with the share of the period still to come: 1 = on track, below 1 = spending too
    fast, above 1 = under-spending. ``lam_t = lam * pace ** -gain`` (clipped to
    ``[lam_min, lam_max]``) raises the price of cost when spending runs ahead and lowers it
    when budget is left over, so spend follows the budget over the period instead of running
    dry early or being left unused. With no period budget it is the plain trade-off.
    """

    kind: ClassVar[str] = "budget-paced"
    sweep_param: ClassVar[str] = "lam"
    lam: float = 1.0
    cost_scale: float = 1e-3
    gain: float = 8.0
    lam_min: float = 1e-3
    lam_max: float = 1e4

    def pace(self, budget: BudgetState | None) -> float | None:
        """Budget share left over time share left (None without a period budget)."""
        if budget is None or budget.period_usd is None or budget.period_elapsed is None:
            return None
        left = budget.period_remaining_usd
        left = budget.remaining_usd if left is None else left
        if left is None or budget.period_usd <= 0:
            return None
        time_left = max(1e-3, 1.0 - budget.period_elapsed)
        return max(0.0, left) / budget.period_usd / time_left

    def lam_for(self, budget: BudgetState | None) -> float:
        """The lambda in force for this budget state."""
        pace = self.pace(budget)
        if pace is None:
            return self.lam
        lam = self.lam * max(pace, 1e-9) ** -self.gain
        return float(np.clip(lam, self.lam_min, self.lam_max))

    def scores(
        self, quality: np.ndarray, confidence: np.ndarray, costs: np.ndarray,
        budget: BudgetState | None,
    ) -> np.ndarray:
        lam = self.lam_for(budget)
        u: np.ndarray = quality - lam * _inf_for_nan(costs) / self.cost_scale
        return u


POLICY_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "quality-first": "coe_gateway.policies:QualityFirst",
        "cheapest-above-target": "coe_gateway.policies:CheapestAboveTarget",
        "trade-off": "coe_gateway.policies:TradeOff",
        "budget-paced": "coe_gateway.policies:BudgetPaced",
        "cascade": "coe_gateway.routers.cascade:Cascade",
    }
)


def build_policy(kind: str, params: Mapping[str, Any] | None = None) -> Policy:
    """A policy by registry kind and parameters (ValueError naming what is wrong)."""
    try:
        module, _, name = POLICY_KINDS[kind].partition(":")
    except KeyError:
        raise ValueError(f"unknown policy {kind!r}; known: {sorted(POLICY_KINDS)}") from None
    cls: type[Policy] = getattr(importlib.import_module(module), name)
    try:
        return cls(**dict(params or {}))
    except TypeError as exc:
        raise ValueError(f"policy {kind!r}: {exc}") from None
