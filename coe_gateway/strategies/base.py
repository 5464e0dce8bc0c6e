"""Strategies: which attempts to make for a request and which answer to return.

A router predicts, a policy ranks, a **strategy** decides: from the decision's ranking it
issues :class:`~coe_gateway.strategies.attempt.Attempt`\\ s through an :class:`Exchange` and
returns the :class:`~coe_gateway.strategies.attempt.Outcome` whose answer the caller gets.
The exchange does the book-keeping of every attempt (reserve its maximum cost, pick a
replica, call the backend, settle, count); the strategy only chooses.

Kinds are entries of :data:`STRATEGIES`, registered with :func:`register_strategy`; adding
one (a cascade, a continuation) is one module. ``routing.strategy`` in the config picks the
default, a request's ``coe.strategy`` may pick another, and a request naming an expert is
always served by ``single``.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import orjson

from coe_gateway.budget import BudgetGuard, Tenant
from coe_gateway.config import GatewayConfig
from coe_gateway.errors import (
    BudgetExceededError,
    GatewayError,
    RequestError,
    UpstreamError,
    UpstreamTimeoutError,
)
from coe_gateway.fusion.wire import FUSED_KINDS, fused_view
from coe_gateway.ledger import Reservation
from coe_gateway.metrics import GatewayMetrics
from coe_gateway.protocol import ChatRequest, estimate_prompt_tokens, max_prompt_tokens
from coe_gateway.routing import Decision, max_output_tokens
from coe_gateway.sse import Body
from coe_gateway.strategies.attempt import Attempt, Outcome
from coe_gateway.workers.pool import WorkerPool


class Exchange:
    """One request being served: what a strategy works with, and every attempt it made."""

    def __init__(self, cfg: GatewayConfig, pool: WorkerPool, guard: BudgetGuard,
                 metrics: GatewayMetrics, request: ChatRequest, tenant: Tenant,
                 decision: Decision) -> None:
        self.cfg, self.pool, self.guard, self.metrics = cfg, pool, guard, metrics
        self.request, self.tenant, self.decision = request, tenant, decision
        self.attempts: list[Attempt] = []
        self.trace: dict[str, Any] = {}  # what a strategy wants shown (``coe_routing.cascade``)
        self.hold: Reservation | None = None  # a plan's worst case, held for all its attempts
        self._admitted = False  # the request was counted against the rate limit

    def max_cost(self, expert: str, output_tokens: int | None = None) -> float:
        """The most an attempt of ``expert`` can cost (what its reservation holds)."""
        e = self.cfg.expert(expert)
        out = max_output_tokens(e, self.request, estimate_prompt_tokens(self.request))
        if output_tokens is not None:
            out = min(out, output_tokens)
        return e.price.cost(max_prompt_tokens(self.request), out)

    def payload(self, expert: str, stream: bool | None = None,
                messages: list[dict[str, Any]] | None = None,
                **overrides: Any) -> bytes:
        """The request as ``expert``'s upstream gets it: as sent, or with ``stream`` turned
        off (a cascade's checked tiers), other ``messages`` or fields (a verifier's prompt)."""
        e = self.cfg.expert(expert)
        if (stream is None or stream == self.request.stream) and messages is None \
                and not overrides:
            return self.request.upstream_payload(e.upstream_model, e.defaults)
        body = self.request.upstream_body(e.upstream_model, e.defaults)
        if stream is not None and not stream:
            body.pop("stream_options", None)
            body["stream"] = False
        if messages is not None:
            body["messages"] = messages
        body.update(overrides)
        return orjson.dumps(body)

    def fresh_payload(self, expert: str, messages: list[dict[str, Any]],
                      **fields: Any) -> bytes:
        """A request of the gateway's own to ``expert`` (a verifier's check): not streamed,
        the expert's defaults, ``fields`` on top."""
        e = self.cfg.expert(expert)
        body = {**e.defaults, "model": e.upstream_model, "messages": messages,
                "stream": False, **fields}
        return orjson.dumps(body)

    async def call(self, expert: str, *, stream: bool | None = None,
                   payload: bytes | None = None, purpose: str = "answer",
                   max_cost_usd: float | None = None, timeout_s: float | None = None,
                   note: dict[str, Any] | None = None) -> Outcome:
        """One attempt: reserve, pick a replica, call, and for a stream read its first event.

        Raises the attempt's failure (BudgetExceededError, UpstreamError, RequestError) after
        booking it; a RateLimitError refuses the whole request. A body is settled at once; a
        stream when :meth:`finish` is called at its end. Under a plan's :attr:`hold` the
        attempt reserves nothing of its own. ``timeout_s`` bounds the whole call (a body) or
        the wait for the first event (a stream): past it the attempt fails with a 504.
        ``note`` goes into the attempt's view (a cascade's tier, what a verifier checks).
        """
        stream = self.request.stream if stream is None else stream
        attempt = Attempt(len(self.attempts), expert, stream, purpose)
        attempt.note.update(note or {})
        self.attempts.append(attempt)
        if self.hold is None:
            await self._reserve(attempt, self.max_cost(expert) if max_cost_usd is None
                                else max_cost_usd)
        try:
            async with asyncio.timeout(timeout_s):
                return await self._call(attempt, payload or self.payload(expert, stream))
        except TimeoutError:
            exc = UpstreamTimeoutError(f"expert {expert} did not answer within {timeout_s} s")
            await self.finish(attempt, exc.status_code, error=exc.message)
            raise exc from None
        except GatewayError as exc:
            await self.finish(attempt, exc.status_code, error=exc.message)
            raise
        except asyncio.CancelledError:
            await asyncio.shield(self.finish(attempt, 499, error="client went away"))
            raise

    async def _call(self, attempt: Attempt, payload: bytes) -> Outcome:
        attempt.replica = self.pool.acquire(attempt.expert)
        result = await attempt.replica.backend.chat(payload, stream=attempt.stream)
        fused = self.cfg.expert(attempt.expert).backend in FUSED_KINDS
        if isinstance(result, Body):
            await self.finish(attempt, 200, usage=_body_usage(result))
            if fused:
                _note_fusion(attempt, result.json())
            return Outcome(attempt, body=result)
        first = await _first(result, attempt.expert)
        if fused:
            _note_fusion(attempt, first.json())
        return Outcome(attempt, first=first, rest=result)

    async def hold_plan(self, amount_usd: float) -> None:
        """Hold a plan's worst case (the sum of its attempts' maximum costs) at once, for
        every attempt it will make (BudgetExceededError when the budget cannot hold it; the
        caller may then try a smaller plan). Settled once, by :meth:`close`, with what the
        attempts really cost."""
        admit, self._admitted = not self._admitted, True
        try:
            self.hold = await self.guard.reserve(self.tenant, amount_usd, admit=admit)
        except BudgetExceededError:
            self._admitted = not admit  # nothing was counted when the hold failed
            raise

    async def close(self) -> None:
        """Settle the plan's hold (if any) with the sum of its attempts; idempotent."""
        hold, self.hold = self.hold, None
        if hold is not None:
            await self.guard.settle(hold, self.spent_usd)

    async def _reserve(self, attempt: Attempt, amount_usd: float) -> None:
        admit, self._admitted = not self._admitted, True
        try:
            attempt.reservation = await self.guard.reserve(self.tenant, amount_usd, admit=admit)
        except BudgetExceededError as exc:
            attempt.ended(402, exc.message)
            attempt.done = True
            raise
        except GatewayError:  # rate limited or the ledger is down: not an attempt at all
            self.attempts.remove(attempt)
            raise

    async def finish(self, attempt: Attempt, status: int, *, usage: Any = None,
                     error: str | None = None) -> None:
        """End an attempt: release its replica, book its real cost (the whole reservation
        when a 200 reported no usage: fail closed; nothing for a failure) and count it."""
        if attempt.done:
            return
        attempt.done = True
        attempt.usage.take(usage)
        attempt.ended(status, error)
        if attempt.replica is not None:
            self.pool.release(attempt.replica)
        price = self.cfg.expert(attempt.expert).price
        u = attempt.usage
        if u.reported:
            attempt.cost_usd = price.cost(u.prompt_tokens, u.completion_tokens)
        elif status < 400 and attempt.reservation is not None:
            attempt.cost_usd = attempt.reservation.amount_usd
        elif status < 400 and self.hold is not None:
            attempt.cost_usd = self.max_cost(attempt.expert)
        if attempt.reservation is not None:
            await self.guard.settle(attempt.reservation, attempt.cost_usd)

    def count(self) -> None:
        """Metrics of every attempt (once the request is over)."""
        m = self.metrics
        for a in self.attempts:
            m.attempts.labels(a.expert, a.verdict).inc()
            m.tokens.labels(a.expert, "prompt").inc(a.usage.prompt_tokens)
            m.tokens.labels(a.expert, "completion").inc(a.usage.completion_tokens)
            m.spend.labels(a.expert).inc(a.cost_usd)

    @property
    def spent_usd(self) -> float:
        """What the request cost: the sum of its attempts."""
        return sum(a.cost_usd for a in self.attempts)


def _note_fusion(attempt: Attempt, answer: Any) -> None:
    """A fused expert's answer (its body or first event): which experts made it, from its
    ``coe_fusion`` extension, into the attempt's view (``coe_routing.attempts[i].fused``)."""
    view = fused_view(answer)
    if view is not None:
        attempt.note["fused"] = view


def _body_usage(body: Body) -> Any:
    obj = body.json()
    return obj.get("usage") if isinstance(obj, dict) else None


async def _first(events: Any, expert: str) -> Any:
    """The first event of a stream; an empty stream is a failed attempt."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        raise UpstreamError(f"expert {expert} sent an empty stream (no event before "
                            "[DONE])") from None
    if first.has_error:
        raise UpstreamError(f"expert {expert} sent an error before its answer: "
                            f"{str(first.json().get('error'))[:300]}")
    return first


class Strategy(ABC):
    """Chooses the attempts of a request and the answer it gets."""

    kind: ClassVar[str]

    @abstractmethod
    async def serve(self, ex: Exchange) -> Outcome:
        """The accepted outcome (its attempt's verdict ``accepted``), or raise the failure
        the caller should see."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}


StrategyFactory = Callable[..., Strategy]
STRATEGIES: dict[str, StrategyFactory] = {}
"""Strategy kind -> class (called with the config's ``fallbacks`` and the kind's params)."""


def register_strategy(kind: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator: register a strategy kind."""

    def add(cls: type[Strategy]) -> type[Strategy]:
        cls.kind = kind
        STRATEGIES[kind] = cls
        return cls

    return add


def build_strategy(kind: str, params: dict[str, Any] | None = None, *,
                   fallbacks: int = 1) -> Strategy:
    """A strategy of ``kind`` (RequestError naming the known kinds when there is none)."""
    try:
        cls = STRATEGIES[kind]
    except KeyError:
        raise RequestError(f"Unknown strategy '{kind}'; known: {', '.join(sorted(STRATEGIES))}",
                           param="coe.strategy") from None
    try:
        return cls(fallbacks=fallbacks, **(params or {}))
    except TypeError as exc:
        raise RequestError(f"Invalid parameters for strategy '{kind}': {exc}",
                           param="coe.params") from None


def accept(outcome: Outcome) -> Outcome:
    outcome.attempt.verdict = "accepted"
    return outcome


def fallback_step(ex: Exchange, failed: str, to: str) -> None:
    """Count a move from a failed expert to the next."""
    ex.metrics.fallbacks.labels(failed, to).inc()

