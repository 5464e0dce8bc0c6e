"""The budget-paced policy: lambda follows the budget left and the time left."""

from __future__ import annotations

import numpy as np
import pytest

from coe_gateway.budget_sim import daily_counts, run_month, synthetic_traffic
from coe_gateway.policies import (
    POLICY_KINDS,
    BudgetPaced,
    BudgetState,
    QualityFirst,
    TradeOff,
    build_policy,
)

Q = np.array([0.5, 0.7, 0.9])
C = np.array([1e-4, 5e-4, 2e-3])


def state(left: float, elapsed: float) -> BudgetState:
    return BudgetState(remaining_usd=left, period_usd=100.0, period_elapsed=elapsed)


def test_registered_and_buildable() -> None:
    assert "budget-paced" in POLICY_KINDS
    assert build_policy("budget-paced", {"lam": 2.0}) == BudgetPaced(lam=2.0)
    assert BudgetPaced().with_param(0.5).lam == 0.5


def test_without_a_period_budget_it_is_the_plain_trade_off() -> None:
    for budget in (None, BudgetState(), BudgetState(request_cap_usd=1.0)):
        assert BudgetPaced(lam=0.5).rank(Q, Q, C, budget) == TradeOff(lam=0.5).rank(Q, Q, C,
                                                                                      budget)


def test_on_pace_lambda_is_the_base_lambda() -> None:
    assert BudgetPaced(lam=0.7).lam_for(state(50.0, 0.5)) == pytest.approx(0.7)


def test_lambda_rises_when_spending_runs_ahead_and_falls_when_behind() -> None:
    p = BudgetPaced(lam=1.0, gain=2.0)
    ahead, behind = p.lam_for(state(25.0, 0.5)), p.lam_for(state(75.0, 0.5))
    assert ahead == pytest.approx(4.0) and behind == pytest.approx(1 / 2.25)
    # the remaining budget changes the decision, not only the cap
    assert p.rank(Q, Q, C, state(25.0, 0.5))[0] == 0
    assert p.rank(Q, Q, C, state(99.0, 0.9))[0] == 2
    # same budget left, later in the period: more can be spent per request
    assert p.lam_for(state(50.0, 0.8)) < p.lam_for(state(50.0, 0.2))


def test_lambda_is_clipped_and_the_cap_still_excludes() -> None:
    p = BudgetPaced(lam=1.0, lam_min=0.01, lam_max=100.0)
    assert p.lam_for(state(0.0, 0.5)) == 100.0
    assert p.lam_for(state(100.0, 0.9999)) == 0.01
    assert p.rank(Q, Q, C, state(0.0002, 0.5)) == [0]  # only the cheapest fits what is left


def test_the_pace_uses_the_binding_period_when_given() -> None:
    s = BudgetState(remaining_usd=1.0, period_usd=100.0, period_elapsed=0.5,
                    period_remaining_usd=50.0)
    assert BudgetPaced().pace(s) == pytest.approx(1.0)


def test_choose_batch_agrees_with_rank() -> None:
    rng = np.random.default_rng(0)
    q, c = rng.uniform(size=(50, 3)), rng.uniform(1e-4, 3e-3, size=(50, 3))
    s = state(30.0, 0.4)
    p = BudgetPaced()
    assert list(p.choose_batch(q, q, c, s)) == [p.rank(q[i], q[i], c[i], s)[0]
                                                for i in range(50)]


@pytest.mark.slow
def test_spend_tracks_the_budget_over_a_month() -> None:
    traffic = synthetic_traffic(n=1000, seed=1)
    counts = daily_counts(per_day=60, seed=1)
    full = run_month("qf", QualityFirst(), traffic, 1e9, counts).cum_spend[-1]
    budget = 0.4 * full
    paced = [run_month("bp", BudgetPaced(lam=lam), traffic, budget, counts)
             for lam in (0.1, 1.0)]
    plain = [run_month("to", TradeOff(lam=lam), traffic, budget, counts) for lam in (0.1, 1.0)]
    for r in paced:
        assert 0.9 * budget <= r.cum_spend[-1] <= budget + 1e-9
        assert r.first_refusal_day is None or r.first_refusal_day >= 29
        assert r.tracking_error < 0.25
    # the plain trade-off at the same lambdas runs dry early or leaves budget unused
    assert plain[0].first_refusal_day is not None and plain[0].first_refusal_day < 25
    assert plain[1].cum_spend[-1] < 0.7 * budget
