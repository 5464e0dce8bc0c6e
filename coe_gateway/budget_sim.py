"""A month of traffic through a policy, the budget guard and the in-process ledger.

Shows whether a policy's spending tracks a monthly budget: each simulated request is admitted
by :class:`~coe_gateway.budget.BudgetGuard` (402 once the budget is gone), ranked by the policy
with the live :class:`~coe_gateway.policies.BudgetState`, and its realised cost reserved and
settled in an :class:`~coe_gateway.ledger.InMemoryLedger`, exactly as the gateway does. Used
by ``coe-gateway bench pacing`` and its tests.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from coe_gateway.budget import BudgetGuard, Tenant
from coe_gateway.errors import BudgetExceededError
from coe_gateway.ledger import InMemoryLedger
from coe_gateway.policies import Policy

MONTH_START = datetime(2025, 11, 1, tzinfo=UTC)  # a 30-day month


@dataclass(frozen=True)
class Traffic:
    """The queries requests are drawn from.

    quality:   (N, E) the router's predicted quality (what the policy sees)
    scores:    (N, E) realised quality of each expert's answer
    estimates: (N, E) estimated cost USD (what the policy sees)
    costs:     (N, E) realised cost USD (what is spent)
    """

    experts: tuple[str, ...]
    quality: np.ndarray
    scores: np.ndarray
    estimates: np.ndarray
    costs: np.ndarray


@dataclass(frozen=True)
class MonthResult:
    """Per day: cumulative spend and requests; totals and how spend tracked the budget."""

    name: str
    budget_usd: float
    cum_spend: np.ndarray  # (D,) USD spent by the end of each day
    served: int
    refused: int
    quality: float  # mean realised quality over all requests, a refused one counts 0
    first_refusal_day: int | None  # 1-based day of the first 402, None if none
    picks: dict[str, int]

    @property
    def ideal(self) -> np.ndarray:
        """(D,) the budget spread evenly over the days."""
        days = len(self.cum_spend)
        return self.budget_usd * np.arange(1, days + 1) / days

    @property
    def tracking_error(self) -> float:
        """Largest gap between cumulative spend and the even line, as a share of the budget."""
        return float(np.max(np.abs(self.cum_spend - self.ideal)) / self.budget_usd)


def daily_counts(days: int = 30, per_day: int = 400, ramp: float = 1.0,
                 seed: int = 0) -> npt.NDArray[np.int64]:
    """(D,) requests per day: weekends at half, traffic growing linearly by ``ramp`` (1.0 =
    the last day has twice the first day's weekday traffic), Poisson noise."""
    rng = np.random.default_rng(seed)
    d = np.arange(days)
    level: npt.NDArray[np.float64] = (per_day * (1 + ramp * d / max(1, days - 1))
                                      * np.where(d % 7 >= 5, 0.5, 1.0))
    return rng.poisson(level).astype(np.int64)


async def simulate_month(name: str, policy: Policy, traffic: Traffic, budget_usd: float,
                         counts: np.ndarray, seed: int = 0) -> MonthResult:
    """Run ``counts[d]`` requests on each day ``d`` of a month with a ``budget_usd`` budget."""
    rng = np.random.default_rng(seed)
    guard = BudgetGuard(InMemoryLedger())
    tenant = Tenant(name="sim", budgets={"month_usd": budget_usd})
    cum = np.zeros(len(counts))
    spent, served, refused, total_q = 0.0, 0, 0, 0.0
    first_refusal: int | None = None
    picks = dict.fromkeys(traffic.experts, 0)
    for day, n in enumerate(counts):
        for k, i in enumerate(rng.integers(0, len(traffic.quality), size=int(n))):
            now = MONTH_START + timedelta(days=day + (k + 0.5) / n)
            expert = await _one(guard, tenant, policy, traffic, int(i), now)
            if expert is None:
                refused += 1
                first_refusal = first_refusal or day + 1
                continue
            served += 1
            spent += float(traffic.costs[i, expert])
            total_q += float(traffic.scores[i, expert])
            picks[traffic.experts[expert]] += 1
        cum[day] = spent
    return MonthResult(name, budget_usd, cum, served, refused,
                       total_q / max(1, served + refused), first_refusal, picks)


async def _one(guard: BudgetGuard, tenant: Tenant, policy: Policy, traffic: Traffic, i: int,
               now: datetime) -> int | None:
    """One request: admit, rank, reserve, settle; the expert index or None when refused."""
    try:
        state = await guard.admit(tenant, now)
        q = traffic.quality[i]
        ranking = policy.rank(q, np.maximum(q, 1 - q), traffic.estimates[i], state)
        if not ranking:
            return None
        expert = ranking[0]
        cost = float(traffic.costs[i, expert])
        res = await guard.reserve(tenant, cost, now)
    except BudgetExceededError:
        return None
    await guard.settle(res, cost)
    return expert


def run_month(name: str, policy: Policy, traffic: Traffic, budget_usd: float,
              counts: np.ndarray, seed: int = 0) -> MonthResult:
    """Synchronous wrapper of :func:`simulate_month`."""
    return asyncio.run(simulate_month(name, policy, traffic, budget_usd, counts, seed))


def synthetic_traffic(n: int = 2000, seed: int = 0) -> Traffic:
    """Three experts (small, medium, large) with noisy quality and per-query cost spread."""
    rng = np.random.default_rng(seed)
    base_q = np.array([0.45, 0.65, 0.85])
    base_c = np.array([1e-4, 4e-4, 2e-3])
    difficulty = rng.uniform(-0.25, 0.25, size=(n, 1))
    quality = np.clip(base_q - difficulty + rng.normal(0, 0.05, (n, 3)), 0.01, 0.99)  # (n, 3)
    scores = (rng.uniform(size=(n, 3)) < quality).astype(np.float64)
    length = rng.lognormal(0.0, 0.4, size=(n, 1))
    estimates = base_c * length  # (n, 3)
    costs = estimates * rng.lognormal(0.0, 0.2, size=(n, 3))
    return Traffic(("small", "medium", "large"), quality, scores, estimates, costs)
