"""The tiers of a cascade, from a routing decision (pure: no I/O, the same live and offline).

A decision ranks the eligible experts and carries, per expert, the router's predicted quality
and the estimated cost of this request. From them:

- **strong**: the expert of highest predicted quality (the cheaper among ties): the one a
  quality-first router would pick, and where a cascade escalates to;
- **cheap**: up to ``k`` experts cheaper than the strong one whose predicted quality is at
  least ``floor`` times the strong one's, by cost (``by="cost"``) or by predicted quality
  per dollar (``by="value"``, the router-gated forms: which cheap experts to ask is then a
  per-query choice);
- **extra**: up to ``extra`` further experts by predicted quality, asked only when the
  strong expert's answer agrees with no cheap one (a vote decides: harder queries get more
  experts).

``pinned`` tiers (the operator's ``tiers`` parameter) replace the derived ones; experts the
decision does not rank (not eligible, unhealthy, not allowed) are dropped from them; with
``extra`` > 0 their last tier is a vote over every answer (else its one expert answers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from coe_gateway.routing import Decision


@dataclass(frozen=True)
class Tiers:
    """Experts to ask, tier by tier; the last tier's answer is final: its one expert's, or
    a vote over every answer when it has several experts or ``vote_last`` (extra experts)."""

    steps: tuple[tuple[str, ...], ...]
    vote_last: bool = False

    @property
    def experts(self) -> list[str]:
        return [e for step in self.steps for e in step]

    def first(self, n: int) -> Tiers:
        """The plan cut to its first ``n`` tiers (a budget capping the escalation)."""
        return Tiers(self.steps[:n], self.vote_last and n >= len(self.steps))

    def view(self) -> list[list[str]]:
        return [list(step) for step in self.steps]


def quality(decision: Decision, expert: str) -> float:
    """The router's predicted quality of ``expert`` (0.5 when it predicted none)."""
    return float(decision.predicted.get(expert, {}).get("quality", 0.5))


def cost(decision: Decision, expert: str) -> float:
    """The estimated cost of ``expert`` answering (inf when unknown)."""
    c = decision.est_costs.get(expert)
    return float(c) if c is not None and math.isfinite(c) else math.inf


def strongest(decision: Decision, experts: Sequence[str]) -> str:
    return min(experts, key=lambda e: (-quality(decision, e), cost(decision, e)))


def cheap_candidates(decision: Decision, strong: str, floor: float) -> list[str]:
    """Experts cheaper than ``strong`` that the router rates at least ``floor`` x it."""
    bar = floor * quality(decision, strong)
    c_strong = cost(decision, strong)
    return [e for e in decision.ranking
            if e != strong and cost(decision, e) < c_strong and quality(decision, e) >= bar]


def plan(decision: Decision, *, k: int = 2, floor: float = 0.75, extra: int = 0,
         by: str = "cost", pinned: Sequence[Sequence[str]] | None = None) -> Tiers:
    """The cascade's tiers for this decision (see the module docstring)."""
    if pinned:
        ranked = set(decision.ranking)
        kept = tuple(t for t in (tuple(e for e in step if e in ranked) for step in pinned) if t)
        return Tiers(kept or ((decision.ranking[0],),), vote_last=extra > 0 and len(kept) > 1)
    strong = strongest(decision, decision.ranking)
    cands = cheap_candidates(decision, strong, floor)
    if by == "value":
        cands.sort(key=lambda e: (-quality(decision, e) / max(cost(decision, e), 1e-12),
                                  cost(decision, e)))
    else:
        cands.sort(key=lambda e: (cost(decision, e), -quality(decision, e)))
    cheap = tuple(cands[:k])
    rest = [e for e in decision.ranking if e != strong and e not in cheap]
    rest.sort(key=lambda e: (-quality(decision, e), cost(decision, e)))
    steps: list[tuple[str, ...]] = [cheap] if cheap else []
    steps.append((strong,))
    if extra > 0 and rest:
        steps.append(tuple(rest[:extra]))
        return Tiers(tuple(steps), vote_last=True)
    return Tiers(tuple(steps))
