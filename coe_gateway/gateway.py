"""The request pipeline, in one place and in this order:

1. budget check     the tenant's rate limit (429) and remaining budget (402 when used up)
                                                                      -> BudgetState
2. cache lookup     exact, then semantic; a hit is replayed (body or SSE chunks)
3. features         the routing text of the conversation             -> Query
4. router           predicted quality of every eligible expert       (routing.route)
5. policy           ranking from quality, cost estimate and budget   (routing.route); the
                    request's ``coe.policy`` may override it within the tenant's rights
6. dispatch         reserve the expert's maximum cost (else the next expert of the ranking
                    the budget can hold, else 402), then a healthy replica of it; on an
                    upstream failure, the next expert (at most ``routing.fallbacks`` more)
7. record           settle the spend with the real token counts, store the answer in the
                    cache, metrics, routing log

The server turns a :class:`Reply` into JSON or SSE; every reply says which expert answered
and why (``coe_routing`` field, ``x-coe-*`` headers).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coe_gateway.budget import ANONYMOUS, Tenant, check_expert_allowed, resolve_policy
from coe_gateway.cache import CacheHit, assemble_stream
from coe_gateway.config import GatewayConfig
from coe_gateway.errors import BudgetExceededError, GatewayError, UpstreamError
from coe_gateway.ledger import Reservation
from coe_gateway.metrics import GatewayMetrics
from coe_gateway.policies import Policy
from coe_gateway.protocol import (
    ChatCompletionRequest,
    estimate_prompt_tokens,
    message_text,
    routing_text,
)
from coe_gateway.routers.base import Query
from coe_gateway.routing import Decision, RouterSet, max_output_tokens, route
from coe_gateway.routing_log import RoutingLog
from coe_gateway.tenancy import Tenancy
from coe_gateway.workers.backends import ChatResult
from coe_gateway.workers.pool import WorkerPool

log = logging.getLogger("coe_gateway.gateway")


@dataclass
class Reply:
    """What the pipeline hands the server: a body or a stream of chunks, and the decision."""

    decision: Decision
    expert: str
    body: dict[str, Any] | None = None
    stream: AsyncIterator[dict[str, Any]] | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    cache: str | None = None  # "exact" / "semantic" for a cached answer, "miss" when looked up

    def headers(self) -> dict[str, str]:
        d = self.decision
        out = {
            "x-coe-expert": self.expert,
            "x-coe-router": d.router or "none",
            "x-coe-policy": str(d.policy.get("kind")),
            "x-coe-reason": d.reason_for(self.expert),
            "x-request-id": self.request_id,
        }
        if self.cache is not None:
            out["x-coe-cache"] = self.cache
        return out


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, usage: dict[str, Any] | None) -> None:
        if usage:
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)


class Gateway:
    """Routes and answers chat-completion requests."""

    def __init__(
        self, cfg: GatewayConfig, pool: WorkerPool, routers: RouterSet, policy: Policy,
        metrics: GatewayMetrics, routing_log: RoutingLog | None = None,
        tenancy: Tenancy | None = None,
    ) -> None:
        self.cfg, self.pool, self.routers, self.policy = cfg, pool, routers, policy
        self.metrics, self.routing_log = metrics, routing_log
        self.tenancy = tenancy or Tenancy.from_config(
            cfg.model_copy(update={"budget_file": None, "redis_url": None}), metrics.registry)

    def available_experts(self) -> set[str]:
        return {e for e in self.pool.experts if self.pool.is_available(e)}

    async def chat(self, request: ChatCompletionRequest, tenant: Tenant | None = None) -> Reply:
        """Route and dispatch one request of ``tenant`` (default: the unlimited anonymous
        tenant); raises a GatewayError on failure."""
        start = time.perf_counter()
        tenant = tenant or ANONYMOUS
        if request.unknown_fields:
            log.info("request has unknown fields %s (kept, sent upstream)", request.unknown_fields)
        budget = await self.tenancy.guard.admit(tenant)  # 429 / 402 before any work
        policy = self._policy(request, tenant)
        if request.model in self.cfg.expert_names:
            check_expert_allowed(tenant, request.model)
        cached = _Cached(self, request, tenant)
        hit = await cached.lookup()
        if hit is not None:
            return cached.reply(hit)
        category = request.coe.category if request.coe else None
        query = Query(text=routing_text(request), category=category,
                      metadata={"tenant": tenant.name})
        try:
            decision = await route(self.cfg, self.routers, policy, request, query,
                                   self.available_experts(), budget, tenant.allowed_experts)
        except BudgetExceededError as exc:  # the budget leaves no expert: name the limit
            costs = np.array(list(exc.extra.get("estimated_cost_usd", {}).values()))
            raise await self.tenancy.guard.unaffordable(tenant, costs) from None
        if decision.router:
            self.metrics.routing_latency.labels(decision.router).observe(decision.routing_s)
            self.metrics.choices.labels(decision.router, decision.expert).inc()
        expert, result, hold = await self._dispatch(request, decision, tenant)
        reply = Reply(decision=decision, expert=expert, cache=cached.state)
        ctx = _Context(self, request, query, tenant, reply, start, hold, cached)
        if isinstance(result, dict):
            reply.body = await ctx.finish_body(result)
        else:
            reply.stream = ctx.relay(result)
        return reply

    def _policy(self, request: ChatCompletionRequest, tenant: Tenant) -> Policy:
        """The request's policy: its ``coe.policy`` override (within the tenant's rights),
        else the tenant's, else the gateway's."""
        opts = request.coe
        if (opts is None or opts.policy is None) and tenant.policy is None \
                and tenant.quality_target is None:
            return self.policy
        override = None if opts is None or opts.policy is None else {
            "kind": opts.policy, "params": opts.params}
        return resolve_policy(tenant, self.cfg.routing.policy, override)

    def max_cost(self, request: ChatCompletionRequest, expert_name: str) -> float:
        """The most this request can cost with this expert: what its budget reserves."""
        expert = self.cfg.expert(expert_name)
        output = max_output_tokens(expert, request, estimate_prompt_tokens(request))
        return expert.price.cost(max_prompt_tokens(request), output)

    def upstream_body(self, request: ChatCompletionRequest, expert_name: str) -> dict[str, Any]:
        expert = self.cfg.expert(expert_name)
        body = request.upstream_body(expert.upstream_model)
        for key, value in expert.defaults.items():
            body.setdefault(key, value)
        if body.get("stream"):
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return body

    async def _dispatch(self, request: ChatCompletionRequest, decision: Decision,
                        tenant: Tenant) -> tuple[str, ChatResult, Reservation]:
        """The first expert of the ranking whose maximum cost the budget can hold and that
        answers; an upstream failure moves on at most ``routing.fallbacks`` times."""
        fallbacks = self.cfg.routing.fallbacks if decision.router else 0
        failure: GatewayError | None = None
        failed: str | None = None
        for expert in decision.ranking:
            try:
                hold = await self.tenancy.guard.reserve(tenant, self.max_cost(request, expert))
            except BudgetExceededError as exc:
                failure = failure or exc
                continue
            if failed is not None:
                self.metrics.fallbacks.labels(failed, expert).inc()
            try:
                result = await self.pool.chat(expert, self.upstream_body(request, expert))
                return expert, result, hold
            except UpstreamError as exc:
                await self.tenancy.guard.settle(hold, 0.0)
                failure, failed = exc, expert
                log.warning("expert %s failed: %s", expert, exc.message)
                if fallbacks == 0:
                    break
                fallbacks -= 1
        assert failure is not None
        raise failure


class _Context:
    """Book-keeping of one answered request: finishing the body or relaying the stream, then
    recording metrics, spend and the routing log."""

    def __init__(self, gw: Gateway, request: ChatCompletionRequest, query: Query,
                 tenant: Tenant, reply: Reply, start: float, hold: Reservation,
                 cached: _Cached) -> None:
        self.gw, self.request, self.query, self.tenant = gw, request, query, tenant.name
        self.reply, self.start, self.hold, self.cached = reply, start, hold, cached
        self.usage = Usage()
        self.reported = False  # whether the upstream reported token usage

    def _annotate(self, obj: dict[str, Any]) -> None:
        obj["model"] = self.reply.expert

    async def finish_body(self, body: dict[str, Any]) -> dict[str, Any]:
        self._annotate(body)
        body["coe_routing"] = self.reply.decision.extension(self.reply.expert)
        self._count(body.get("usage"))
        self.record(200)
        await self.settle()
        await self.cached.store(body)
        return body

    def _count(self, usage: dict[str, Any] | None) -> None:
        self.usage.add(usage)
        self.reported = self.reported or bool(usage)

    async def settle(self) -> None:
        """Book the real cost; without reported usage, the whole reservation (fail closed)."""
        price = self.gw.cfg.expert(self.reply.expert).price
        cost = (price.cost(self.usage.prompt_tokens, self.usage.completion_tokens)
                if self.reported else self.hold.amount_usd)
        await self.gw.tenancy.guard.settle(self.hold, cost)

    async def relay(self, stream: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        wants_usage = bool((self.request.stream_options or {}).get("include_usage"))
        first, status = True, 200
        chunks: list[dict[str, Any]] = []  # as the caller sees them, usage chunk included
        try:
            async for chunk in stream:
                self._annotate(chunk)
                chunks.append(chunk)
                if chunk.get("usage"):
                    self._count(chunk["usage"])
                    if not chunk.get("choices") and not wants_usage:
                        continue
                if first:
                    chunk["coe_routing"] = self.reply.decision.extension(self.reply.expert)
                    first = False
                yield chunk
        except UpstreamError:
            status = 502
            raise
        except BaseException:  # the client went away (cancelled) mid-stream
            status = 499
            raise
        finally:
            self.record(status)
            await asyncio.shield(self.settle())
        await self.cached.store(assemble_stream(chunks), chunks)

    def record(self, status: int) -> None:
        gw, expert = self.gw, self.reply.expert
        latency = time.perf_counter() - self.start
        price = gw.cfg.expert(expert).price
        cost = price.cost(self.usage.prompt_tokens, self.usage.completion_tokens)
        m = gw.metrics
        m.requests.labels(self.request.model, expert, str(status)).inc()
        m.latency.labels(expert, str(bool(self.request.stream)).lower()).observe(latency)
        m.tokens.labels(expert, "prompt").inc(self.usage.prompt_tokens)
        m.tokens.labels(expert, "completion").inc(self.usage.completion_tokens)
        m.spend.labels(expert).inc(cost)
        if gw.routing_log is not None:
            d = self.reply.decision
            gw.routing_log.write({
                "ts": time.time(), "request_id": self.reply.request_id, "tenant": self.tenant,
                "query": self.query.text, "category": self.query.category, "router": d.router,
                "policy": d.policy, "expert": expert, "ranking": d.ranking,
                "predicted": d.predicted, "cost_usd": cost, "latency_s": round(latency, 6),
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens, "outcome": None,
                "status": status,
            })


class _Cached:
    """The cache step of one request: lookup before routing, store after a whole answer."""

    def __init__(self, gw: Gateway, request: ChatCompletionRequest, tenant: Tenant) -> None:
        self.cache, self.request, self.tenant = gw.tenancy.cache, request, tenant.name
        self.settings = s = gw.tenancy.cache_settings(tenant)
        deterministic = request.seed is not None or request.temperature == 0
        self.active = self.cache is not None and ((s.exact and deterministic) or s.semantic)
        self.body = request.model_dump(exclude_unset=True, mode="json") if self.active else {}
        self.state: str | None = None  # exact / semantic / miss once looked up

    async def lookup(self) -> CacheHit | None:
        if not self.active or self.cache is None:
            return None
        hit = await self.cache.lookup(self.tenant, self.body, self.settings)
        self.state = hit.kind if hit is not None else "miss"
        return hit

    async def store(self, response: dict[str, Any],
                    chunks: list[dict[str, Any]] | None = None) -> None:
        if self.active and self.cache is not None:
            await self.cache.store(self.tenant, self.body, self.settings, response, chunks)

    def reply(self, hit: CacheHit) -> Reply:
        """The stored answer, as it was sent (body) or streamed (chunks)."""
        routing = hit.response.get("coe_routing") or {}
        expert = str(routing.get("expert") or hit.response.get("model") or "cache")
        decision = Decision([expert], routing.get("router"),
                            dict(routing.get("policy") or {"kind": "cache"}),
                            reason=f"cache hit ({hit.kind})")
        reply = Reply(decision=decision, expert=expert, cache=hit.kind)
        if self.request.stream:
            wants_usage = bool((self.request.stream_options or {}).get("include_usage"))
            reply.stream = _replay(hit.stream(wants_usage))
        else:
            reply.body = hit.response
        return reply


async def _replay(chunks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for chunk in chunks:
        yield chunk


def max_prompt_tokens(request: ChatCompletionRequest) -> int:
    """An upper bound of the prompt's tokens: a byte-level BPE token is at least one byte,
    plus room for the chat template (per message and a default system prompt)."""
    text = sum(len(message_text(m).encode("utf-8")) for m in request.messages)
    return text + 16 * len(request.messages) + 64
