"""``verify`` and ``verify-gated``: a cheap expert answers, another expert checks the answer;
accepted when the check says it is right, else the strongest expert answers (AutoMix-style
self-/cross-verification).

``verify``: the cheapest expert the router rates at least ``floor`` x the strongest answers
without streaming; the ``verifier`` (an expert name; default: the next cheap candidate, else
the strongest) is asked with ``prompt`` (the operator's to edit: it must contain
``{question}`` and ``{answer}``) and its first word decides: YES (or CORRECT) accepts, NO,
anything else or a failure escalates. The strongest expert then answers, streamed when the
caller streams.

``verify-gated``: the router decides whether to check at all: a cheap expert it rates at
``gate`` or more answers alone; one it rates below ``low`` is not asked (straight to the
strongest); in between, as ``verify``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from coe_gateway.errors import BudgetExceededError, UpstreamError
from coe_gateway.protocol import routing_text
from coe_gateway.strategies.attempt import Outcome
from coe_gateway.strategies.base import Exchange, register_strategy
from coe_gateway.strategies.cascade import Ballot, Cascade, answer_text, ask
from coe_gateway.strategies.tiers import Tiers, cheap_candidates, quality, strongest

DEFAULT_PROMPT = (
    "You are checking another assistant's answer.\n\n"
    "Question:\n{question}\n\n"
    "Proposed answer:\n{answer}\n\n"
    "Is the proposed answer correct? Reply with one word: YES or NO."
)
_VERDICT = re.compile(r"[A-Za-z]+")


def verdict(text: str | None) -> bool | None:
    """True for YES/CORRECT, False for NO/INCORRECT (the first word), None otherwise."""
    m = _VERDICT.search(text or "")
    word = m.group(0).lower() if m else ""
    return True if word in ("yes", "correct") else False if word in ("no", "incorrect") \
        else None


@register_strategy("verify")
class Verify(Cascade):
    sweep_param: ClassVar[str] = "floor"

    def __init__(self, fallbacks: int = 1, *, floor: float = 0.75,
                 verifier: str | None = None, prompt: str = DEFAULT_PROMPT,
                 verify_tokens: int = 4, **common: Any) -> None:
        super().__init__(**common)
        if "{question}" not in prompt or "{answer}" not in prompt:
            raise TypeError("prompt must contain {question} and {answer}")
        self.floor, self.verifier, self.prompt = floor, verifier, prompt
        self.verify_tokens = verify_tokens

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "floor": self.floor, "verifier": self.verifier or "auto"}

    def roles(self, ex: Exchange) -> tuple[str | None, str | None, str]:
        """(answerer, verifier, strongest): no answerer when no expert is cheaper."""
        d = ex.decision
        strong = strongest(d, d.ranking)
        cheap = sorted(cheap_candidates(d, strong, self.floor),
                       key=lambda e: (d.est_costs.get(e, 0.0), -quality(d, e)))
        if not cheap:
            return None, None, strong
        verifier = self.verifier if self.verifier in d.ranking else (
            cheap[1] if len(cheap) > 1 else strong)
        return cheap[0], verifier, strong

    def gate(self, ex: Exchange, answerer: str) -> str | None:
        """``verify`` always checks; see :class:`VerifyGated`."""
        return None

    async def cascade(self, ex: Exchange) -> Outcome:
        answerer, verifier, strong = self.roles(ex)
        decided = self.gate(ex, answerer) if answerer else "strong"
        steps: tuple[tuple[str, ...], ...]
        if decided == "alone" and answerer:
            steps = ((answerer,),)
        elif decided == "strong" or answerer is None or verifier is None:
            steps = ((strong,),)
        else:
            steps = ((answerer,), (verifier,), (strong,))
        tiers = await self.hold(ex, Tiers(steps))
        extractor = self.extractor_of(self.answer_kind(ex))
        ex.trace.update(kind=self.kind, answer_kind=extractor.kind, tiers=tiers.view())
        ballot = Ballot()
        if len(tiers.steps) == 1:
            only = tiers.steps[0][0]
            self.step(ex, 0, "skipped", experts=[only])
            ex.trace["reason"] = f"{only} answers alone (no check)"
            return self.conclude(ex, await self.final(ex, only, 0, ballot), ex.trace["reason"])
        assert answerer is not None and verifier is not None
        ballot.add((answerer,), await ask(ex, (answerer,), tier=0, timeout_s=self.timeout(0)))
        ballot.read(extractor)
        proposed = ballot.outcomes[0]
        if proposed is not None and len(tiers.steps) >= 2:
            ok = await self.check(ex, verifier, proposed, ballot.keys[0])
            self.step(ex, 0, "accepted" if ok else "escalated", experts=[answerer],
                      answers=ballot.answers(), verifier=verifier, verified=ok)
            if ok or len(tiers.steps) == 2:
                if ok:
                    return self.conclude(ex, proposed, f"{verifier} verified {answerer}'s "
                                         f"answer {ballot.keys[0]!r}")
                return self.conclude(ex, proposed, "the budget holds no escalation")
        else:
            self.step(ex, 0, "escalated", experts=[answerer], answers=ballot.answers())
        ex.trace["reason"] = f"escalated to {strong}: {answerer}'s answer was not verified"
        out = await self.final(ex, strong, 1, ballot)
        return self.conclude(ex, out, ex.trace["reason"])

    async def check(self, ex: Exchange, verifier: str, proposed: Outcome,
                    key: str | None) -> bool:
        """Ask the verifier; True only for an explicit YES."""
        question = routing_text(ex.request)
        messages = [{"role": "user", "content": self.prompt.format(
            question=question, answer=answer_text(proposed) or "")}]
        payload = ex.fresh_payload(verifier, messages, max_tokens=self.verify_tokens,
                                   temperature=0)
        try:
            out = await ex.call(verifier, stream=False, payload=payload, purpose="verify",
                                timeout_s=self.timeout(1), note={"tier": 0, "checks": key})
        except (UpstreamError, BudgetExceededError):  # a check that failed did not pass
            return False
        ok = verdict(answer_text(out))
        out.attempt.note["verified"] = ok
        return ok is True


@register_strategy("verify-gated")
class VerifyGated(Verify):
    sweep_param: ClassVar[str] = "gate"

    def __init__(self, fallbacks: int = 1, *, gate: float = 0.85, low: float = 0.3,
                 **params: Any) -> None:
        super().__init__(fallbacks, **params)
        self.gate_at, self.low = gate, low

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "gate": self.gate_at, "low": self.low}

    def gate(self, ex: Exchange, answerer: str) -> str | None:
        q = quality(ex.decision, answerer)
        return "alone" if q >= self.gate_at else "strong" if q < self.low else None
