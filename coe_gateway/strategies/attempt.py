"""One upstream call of a request: an :class:`Attempt` and the answer it got (:class:`Outcome`).

An attempt owns its expert, its replica, its budget reservation and settlement, its token
usage, its status and latency, its verdict and its own routing-log record. A strategy makes
attempts through :meth:`coe_gateway.strategies.base.Exchange.call` and says which one's answer
the caller gets; everything else about them is booked here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from coe_gateway.ledger import Reservation
from coe_gateway.sse import Body, Event, Usage
from coe_gateway.workers.backends import EventStream
from coe_gateway.workers.pool import Replica

Verdict = Literal["pending", "accepted", "rejected", "failed"]


@dataclass(eq=False)
class Attempt:
    """One call to one expert, from reservation to settlement."""

    index: int
    expert: str
    stream: bool
    purpose: str = "answer"
    started: float = field(default_factory=time.perf_counter)
    reservation: Reservation | None = None
    replica: Replica | None = None
    usage: Usage = field(default_factory=Usage)
    status: int = 0
    verdict: Verdict = "pending"
    error: str | None = None
    latency_s: float = 0.0
    cost_usd: float = 0.0
    done: bool = False
    note: dict[str, Any] = field(default_factory=dict)

    def ended(self, status: int, error: str | None = None) -> None:
        """Mark the call over (its latency counted from the start)."""
        self.status = status
        self.error = error or self.error
        self.latency_s = time.perf_counter() - self.started
        if status >= 400 and self.verdict == "pending":
            self.verdict = "failed"

    def view(self) -> dict[str, Any]:
        """This attempt in the reply's ``coe_routing.attempts``."""
        out: dict[str, Any] = {"expert": self.expert, "verdict": self.verdict,
                               "status": self.status or None, "purpose": self.purpose,
                               "stream": self.stream}
        if self.done:
            out.update(latency_ms=round(self.latency_s * 1000, 3),
                       prompt_tokens=self.usage.prompt_tokens,
                       completion_tokens=self.usage.completion_tokens,
                       cost_usd=self.cost_usd)
        if self.error:
            out["error"] = self.error
        if self.note:
            out.update(self.note)
        return out


@dataclass(eq=False)
class Outcome:
    """The answer an attempt got: a whole body, or a stream whose first event was read
    (so that a stream failing before its first byte is still a failed attempt)."""

    attempt: Attempt
    body: Body | None = None
    first: Event | None = None
    rest: EventStream | None = None

    @property
    def is_stream(self) -> bool:
        return self.first is not None
