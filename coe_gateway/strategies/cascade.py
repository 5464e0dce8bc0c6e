"""What the answer-aware cascades (``agree``, ``verify`` and their router-gated forms) share.

A cascade asks cheap experts first, *without streaming*, reads their answers with an answer
extractor (:mod:`coe_gateway.answers`) and either accepts one or escalates to the next tier;
the last tier's answer is final (streamed when the caller streams and one expert answers it,
decided by a vote when several do). Everything here works on an
:class:`~coe_gateway.strategies.base.Exchange`, so the offline evaluator runs the very same
objects over recorded answers (:mod:`coe_gateway.eval.offline`).

Budget: the worst case of the whole plan (every tier's maximum cost) is held at once; when
the tenant's budget (or its per-request cap) cannot hold it, the plan loses its last tiers
until it can (the budget caps the escalation). Each attempt books its own real cost; the
hold is settled once with their sum when the request ends.

A failed or timed-out cheap expert is an answer that agrees with nobody, not an error.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

from coe_gateway.answers import Extractor, Tally, build_extractor, detect_kind
from coe_gateway.errors import BudgetExceededError, GatewayError, UpstreamError
from coe_gateway.protocol import routing_text
from coe_gateway.strategies.attempt import Outcome
from coe_gateway.strategies.base import Exchange, Strategy, accept
from coe_gateway.strategies.tiers import Tiers, quality


def answer_text(outcome: Outcome | None) -> str | None:
    """The assistant text of a whole (non-streamed) answer; None for a failed attempt."""
    if outcome is None or outcome.body is None:
        return None
    obj = outcome.body.json()
    try:
        content = obj["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return content if isinstance(content, str) else None


@dataclass
class Ballot:
    """The answers collected so far, in the order asked."""

    outcomes: list[Outcome | None] = field(default_factory=list)
    experts: list[str] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)

    def add(self, experts: tuple[str, ...], outcomes: list[Outcome | None]) -> None:
        self.experts += experts
        self.outcomes += outcomes

    def read(self, extractor: Extractor) -> None:
        """Extract every answer's key (the embedding extractor compares them all at once)."""
        self.keys = extractor.keys([answer_text(o) for o in self.outcomes])
        for o, key in zip(self.outcomes, self.keys):
            if o is not None:
                o.attempt.note["answer"] = key

    def answers(self) -> dict[str, str | None]:
        return dict(zip(self.experts, self.keys))

    def best(self, ex: Exchange, among: tuple[int, ...] | None = None) -> Outcome | None:
        """The answer of the expert the router rates highest (among some indexes)."""
        idx = range(len(self.outcomes)) if among is None else among
        alive = [i for i in idx if self.outcomes[i] is not None]
        if not alive:
            return None
        return self.outcomes[max(alive, key=lambda i: quality(ex.decision, self.experts[i]))]


async def ask(ex: Exchange, experts: tuple[str, ...], *, tier: int,
              timeout_s: float | None) -> list[Outcome | None]:
    """Ask ``experts`` in parallel without streaming; a failure, a timeout or an
    unaffordable expert is None (an answer that agrees with nobody). A RequestError (the
    request itself is bad) and a refused request (rate limit) propagate."""
    results = await asyncio.gather(
        *(ex.call(e, stream=False, timeout_s=timeout_s, note={"tier": tier})
          for e in experts), return_exceptions=True)
    out: list[Outcome | None] = []
    for r in results:
        if isinstance(r, Outcome):
            out.append(r)
        elif isinstance(r, (UpstreamError, BudgetExceededError)):
            out.append(None)
        elif isinstance(r, BaseException):
            raise r
    return out


class Cascade(Strategy):
    """Shared machinery: the extractor, the budget hold, the verdicts, the trace."""

    def __init__(self, *, answer: str | None = None, answer_params: dict[str, Any] | None = None,
                 timeout_s: float | list[float] | None = 30.0) -> None:
        self.answer = answer
        self.answer_params = answer_params or {}
        self.timeouts = timeout_s if isinstance(timeout_s, list) else [timeout_s] \
            if timeout_s is not None else []
        if any(not isinstance(t, (int, float)) or t <= 0 for t in self.timeouts):
            raise TypeError("timeout_s must be a positive number or a list of them (per tier)")
        self._extractors: dict[str, Extractor] = {}
        if answer is not None:
            self.extractor_of(answer)  # an unknown kind fails when the strategy is built

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "answer": self.answer or "detect"}

    def timeout(self, tier: int) -> float | None:
        """The time an unstreamed tier may take (``timeout_s``: one for all tiers, or one
        per tier, the last repeated); None: the backend's own timeout only."""
        if not self.timeouts:
            return None
        return float(self.timeouts[min(tier, len(self.timeouts) - 1)])

    # -- the answer extractor ------------------------------------------------------------

    def answer_kind(self, ex: Exchange) -> str:
        """The request's ``coe.answer``, else the tenant's, else this strategy's, else what
        the request looks like (:func:`coe_gateway.answers.detect_kind`)."""
        opts = ex.request.coe
        kind = (opts.answer if opts is not None else None) or ex.tenant.answer
        return kind or self.answer or detect_kind(routing_text(ex.request),
                                                  ex.request.get("response_format"))

    def extractor_of(self, kind: str) -> Extractor:
        got = self._extractors.get(kind)
        if got is None:
            params = self.answer_params if kind == self.answer else {}
            got = self._extractors[kind] = build_extractor(kind, params)
        return got

    # -- budget --------------------------------------------------------------------------

    async def hold(self, ex: Exchange, tiers: Tiers) -> Tiers:
        """Hold the plan's worst case, dropping its last tiers until the budget (and the
        tenant's per-request cap) can hold it."""
        cap = ex.tenant.request_cap_usd
        for n in range(len(tiers.steps), 0, -1):
            cut = tiers.first(n)
            worst = sum(ex.max_cost(e) for e in cut.experts)
            if cap is not None and worst > cap:
                if n > 1:
                    continue
                cut = _within(ex, cut.steps[0], cap)
                worst = sum(ex.max_cost(e) for e in cut.experts)
            try:
                await ex.hold_plan(worst)
            except BudgetExceededError:
                if n == 1:
                    raise
                continue
            if n < len(tiers.steps):
                ex.trace["capped"] = f"the budget holds {n} of {len(tiers.steps)} tiers"
            return cut
        raise AssertionError("unreachable: a plan has at least one tier")

    # -- ending ----------------------------------------------------------------------------

    def conclude(self, ex: Exchange, chosen: Outcome, reason: str) -> Outcome:
        """Accept ``chosen``; every other answered attempt is rejected."""
        for a in ex.attempts:
            if a.verdict == "pending":
                a.verdict = "rejected"
        ex.trace["reason"] = reason
        return accept(chosen)

    def step(self, ex: Exchange, tier: int, outcome: str, **info: Any) -> None:
        """Record one tier's check in the trace and the metrics."""
        ex.trace.setdefault("steps", []).append({"tier": tier, "outcome": outcome, **info})
        ex.metrics.cascade.labels(self.kind, str(tier), outcome).inc()

    async def final(self, ex: Exchange, expert: str, tier: int, ballot: Ballot) -> Outcome:
        """The last tier's single expert answers (streamed when the caller streams); when it
        fails, the best answer collected so far (``trace.reason`` says so), else its
        failure."""
        try:
            out = await ex.call(expert, timeout_s=None, note={"tier": tier})
        except (UpstreamError, BudgetExceededError) as exc:
            fallback = ballot.best(ex)
            if fallback is None:
                raise
            self.step(ex, tier, "failed", experts=[expert], error=exc.message)
            ex.trace["reason"] = f"{expert} failed; the best earlier answer"
            return fallback
        return out

    async def serve(self, ex: Exchange) -> Outcome:
        """Serve under the hold; the hold is settled when the request ends (the reply's
        end, or here on a failure or a client gone)."""
        try:
            return await self.cascade(ex)
        except GatewayError:
            await ex.close()
            raise
        except asyncio.CancelledError:
            await asyncio.shield(ex.close())
            raise

    @abstractmethod
    async def cascade(self, ex: Exchange) -> Outcome:
        """The accepted outcome of this cascade."""


def _within(ex: Exchange, step: tuple[str, ...], cap: float) -> Tiers:
    """The first tier cut to the experts whose maxima fit under ``cap`` together (at least
    one: the policy ranked only affordable experts)."""
    kept: list[str] = []
    for e in step:
        if not kept or sum(ex.max_cost(x) for x in kept) + ex.max_cost(e) <= cap:
            kept.append(e)
    return Tiers((tuple(kept),))


def summary(t: Tally) -> dict[str, Any]:
    """A tally as the trace shows it."""
    return {"answer": t.answer, "agreement": round(t.agreement, 4), "count": t.count,
            "answered": t.total, "margin": round(t.margin, 4)}
