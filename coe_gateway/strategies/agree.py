"""``agree`` and ``agree-gated``: ask cheap experts in parallel, accept the answer enough of
them give, else escalate (answer-consistency cascades; FrugalGPT, AutoMix).

``agree``: the ``k`` cheapest experts the router rates at least ``floor`` x the strongest
(:mod:`.tiers`) answer without streaming; when at least ``m`` give the same answer it is
accepted. Otherwise the strongest expert answers (streamed when the caller streams). With
``extra`` > 0 the strongest answers without streaming too and is accepted when it agrees
with at least ``m - 1`` earlier answers; else ``extra`` more experts are asked and the
plurality answer wins (ties: the expert the router rates highest).

``agree-gated``, the router-gated form: the cheap experts to ask are chosen per query from
the router's predictions (those it rates at least ``floor`` x the strongest, cheapest first;
``select: value`` ranks them by predicted quality per dollar); when it rates one at
``gate`` or more the check is skipped and it answers alone; answers are weighted by the
router's predicted quality (log-odds, :func:`coe_gateway.answers.vote_weight`). Two rules
decide whether to stop at a tier:

- ``rule: margin`` (default): accept when the leading answer's weight leads the next
  answer's by ``margin`` or more;
- ``rule: gain``: escalate only when it is worth its price: with ``p`` the probability that
  the leading answer is right (the weights' softmax over ``options`` answers) and ``q`` the
  best predicted quality of the next tier, escalate when ``q - p >= lam * c`` where ``c`` is
  the next tier's estimated cost over the strongest expert's (its sweep parameter: ``lam``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from coe_gateway.answers import Tally, posterior, tally, vote_weight
from coe_gateway.strategies.attempt import Outcome
from coe_gateway.strategies.base import Exchange, register_strategy
from coe_gateway.strategies.cascade import Ballot, Cascade, ask, summary
from coe_gateway.strategies.tiers import Tiers, cost, plan, quality


@register_strategy("agree")
class Agree(Cascade):
    sweep_param: ClassVar[str] = "floor"
    by: ClassVar[str] = "cost"

    def __init__(self, fallbacks: int = 1, *, k: int = 2, m: int = 2, floor: float = 0.75,
                 extra: int = 0, tiers: list[list[str]] | None = None,
                 select: str | None = None, **common: Any) -> None:
        super().__init__(**common)
        if k < 1 or m < 1:
            raise TypeError("k and m must be at least 1")
        if select not in (None, "cost", "value"):
            raise TypeError(f"select must be 'cost' or 'value', got {select!r}")
        self.k, self.m, self.floor, self.extra, self.tiers = k, m, floor, extra, tiers
        self.select = select or self.by

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "k": self.k, "m": self.m, "floor": self.floor,
                "extra": self.extra, "select": self.select,
                **({"tiers": self.tiers} if self.tiers else {})}

    def plan(self, ex: Exchange) -> Tiers:
        return plan(ex.decision, k=self.k, floor=self.floor, extra=self.extra,
                    by=self.select, pinned=self.tiers)

    def weights(self, ex: Exchange, experts: list[str]) -> list[float]:
        """One vote each; the router's quality only breaks ties."""
        return [1.0 + 1e-3 * quality(ex.decision, e) for e in experts]

    def accepts(self, t: Tally) -> bool:
        return t.answer is not None and t.count >= self.m

    def stops(self, ex: Exchange, tiers: Tiers, tier: int, t: Tally) -> bool:
        """Whether to stop at this tier (not the last) with the leading answer."""
        return self.accepts(t)

    def can_accept(self, answers: int) -> bool:
        """Whether so many answers could be accepted (a tier that cannot is not asked: a
        lone cheap expert when ``m`` is 2 would only add its cost)."""
        return answers >= self.m

    async def cascade(self, ex: Exchange) -> Outcome:
        extractor = self.extractor_of(self.answer_kind(ex))
        tiers = await self.hold(ex, self.plan(ex))
        ex.trace.update(kind=self.kind, answer_kind=extractor.kind, tiers=tiers.view())
        ballot = Ballot()
        last = len(tiers.steps) - 1
        for t, step in enumerate(tiers.steps):
            if t == last and len(step) == 1 and not tiers.vote_last:
                if t == 0:
                    self.step(ex, t, "skipped", experts=list(step))
                ex.trace["reason"] = f"escalated to {step[0]}: no answer was accepted" if t \
                    else f"{step[0]} answers alone (no check)"
                out = await self.final(ex, step[0], t, ballot)
                return self.conclude(ex, out, ex.trace["reason"])
            if t < last and not self.can_accept(len(ballot.experts) + len(step)):
                self.step(ex, t, "skipped", experts=list(step),
                          why=f"{len(step)} answer(s) cannot reach m={self.m}")
                continue
            ballot.add(step, await ask(ex, step, tier=t, timeout_s=self.timeout(t)))
            ballot.read(extractor)
            result = tally(ballot.keys, self.weights(ex, ballot.experts))
            info = {"experts": list(step), "answers": ballot.answers(), **summary(result)}
            if t == last or self.stops(ex, tiers, t, result):
                chosen = ballot.best(ex, result.winners) if result.answer is not None \
                    else ballot.best(ex)
                if chosen is not None:
                    outcome = "voted" if t == last and not self.accepts(result) else "accepted"
                    self.step(ex, t, outcome, **info)
                    return self.conclude(ex, chosen, self.reason(result, outcome, t))
            self.step(ex, t, "escalated", **info)
        raise AssertionError("unreachable: the last tier always answers or raises")

    def reason(self, t: Tally, outcome: str, tier: int) -> str:
        if outcome == "voted":
            return f"tier {tier} vote: {t.count} of {t.total} answers give {t.answer!r}"
        return f"tier {tier}: {t.count} of {t.total} answers agree on {t.answer!r}"


@register_strategy("agree-gated")
class AgreeGated(Agree):
    sweep_param: ClassVar[str] = "margin"

    def __init__(self, fallbacks: int = 1, *, gate: float = 0.9, margin: float = 2.0,
                 options: int = 4, rule: str = "margin", lam: float = 0.1,
                 **params: Any) -> None:
        super().__init__(fallbacks, **params)
        if rule not in ("margin", "gain"):
            raise TypeError(f"rule must be 'margin' or 'gain', got {rule!r}")
        self.gate, self.margin, self.options = gate, margin, options
        self.rule, self.lam = rule, lam

    def describe(self) -> dict[str, Any]:
        out = {**super().describe(), "gate": self.gate, "options": self.options,
               "rule": self.rule}
        out.update({"lam": self.lam} if self.rule == "gain" else {"margin": self.margin})
        return out

    def plan(self, ex: Exchange) -> Tiers:
        tiers = super().plan(ex)
        confident = [e for e in tiers.steps[0] if quality(ex.decision, e) >= self.gate] \
            if len(tiers.steps) > 1 else []
        if confident:  # the router is sure enough of a cheap expert: no check
            return Tiers(((confident[0],),))
        return tiers

    def weights(self, ex: Exchange, experts: list[str]) -> list[float]:
        return [vote_weight(quality(ex.decision, e), self.options) for e in experts]

    def accepts(self, t: Tally) -> bool:
        return t.answer is not None and t.margin >= self.margin

    def can_accept(self, answers: int) -> bool:
        return answers > 0  # one answer the router weighs highly can lead by the margin

    def stops(self, ex: Exchange, tiers: Tiers, tier: int, t: Tally) -> bool:
        if self.rule == "margin":
            return self.accepts(t)
        nxt = tiers.steps[tier + 1]
        q = max(quality(ex.decision, e) for e in nxt)
        strong = max(cost(ex.decision, e) for e in tiers.experts)
        c = sum(cost(ex.decision, e) for e in nxt) / strong if strong > 0 else 0.0
        return t.answer is not None and q - posterior(t, self.options) < self.lam * c

    def reason(self, t: Tally, outcome: str, tier: int) -> str:
        return f"{super().reason(t, outcome, tier)} (weighted margin {t.margin:.2f})"

