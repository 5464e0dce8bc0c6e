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

from coe_gateway.budget import BudgetGuard, Tenant
from coe_gateway.config import GatewayConfig
from coe_gateway.errors import (
    BudgetExceededError,
    GatewayError,
    RequestError,
    UpstreamError,
)
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
        self._admitted = False  # the request was counted against the rate limit

    def max_cost(self, expert: str, output_tokens: int | None = None) -> float:
        """The most an attempt of ``expert`` can cost (what its reservation holds)."""
        e = self.cfg.expert(expert)
        out = max_output_tokens(e, self.request, estimate_prompt_tokens(self.request))
        if output_tokens is not None:
            out = min(out, output_tokens)
        return e.price.cost(max_prompt_tokens(self.request), out)

    def payload(self, expert: str) -> bytes:
        """The request as ``expert``'s upstream gets it."""
        e = self.cfg.expert(expert)
        return self.request.upstream_payload(e.upstream_model, e.defaults)

    async def call(self, expert: str, *, stream: bool | None = None,
                   payload: bytes | None = None, purpose: str = "answer",
                   max_cost_usd: float | None = None) -> Outcome:
        """One attempt: reserve, pick a replica, call, and for a stream read its first event.

        Raises the attempt's failure (BudgetExceededError, UpstreamError, RequestError) after
        booking it; a RateLimitError refuses the whole request. A body is settled at once; a
        stream when :meth:`finish` is called at its end.
        """
        stream = self.request.stream if stream is None else stream
        attempt = Attempt(len(self.attempts), expert, stream, purpose)
        self.attempts.append(attempt)
        await self._reserve(attempt, self.max_cost(expert) if max_cost_usd is None
                            else max_cost_usd)
        try:
            attempt.replica = self.pool.acquire(expert)
            result = await attempt.replica.backend.chat(payload or self.payload(expert),
                                                        stream=stream)
            if isinstance(result, Body):
                await self.finish(attempt, 200, usage=_body_usage(result))
                return Outcome(attempt, body=result)
            first = await _first(result, expert)
        except GatewayError as exc:
            await self.finish(attempt, exc.status_code, error=exc.message)
            raise
        except asyncio.CancelledError:
            await asyncio.shield(self.finish(attempt, 499, error="client went away"))
            raise
        return Outcome(attempt, first=first, rest=result)

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

