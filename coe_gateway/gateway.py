"""The request pipeline, in one place and in this order:

1. budget check     the tenant's remaining budget (ledger)           -> BudgetState
2. cache lookup     exact, then semantic
3. features         the routing text of the conversation             -> Query
4. router           predicted quality of every eligible expert       (routing.route)
5. policy           ranking from quality, cost estimate and budget   (routing.route)
6. dispatch         a healthy replica of the first choice; on an upstream failure, the next
                    expert of the ranking (at most ``routing.fallbacks`` more)
7. record           spend, metrics, routing log

The server turns a :class:`Reply` into JSON or SSE; every reply says which expert answered
and why (``coe_routing`` field, ``x-coe-*`` headers).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from coe_gateway.config import GatewayConfig
from coe_gateway.errors import UpstreamError
from coe_gateway.metrics import GatewayMetrics
from coe_gateway.policies import BudgetState, Policy
from coe_gateway.protocol import ChatCompletionRequest, routing_text
from coe_gateway.routers.base import Query
from coe_gateway.routing import Decision, RouterSet, route
from coe_gateway.routing_log import RoutingLog
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

    def headers(self) -> dict[str, str]:
        d = self.decision
        return {
            "x-coe-expert": self.expert,
            "x-coe-router": d.router or "none",
            "x-coe-policy": str(d.policy.get("kind")),
            "x-coe-reason": d.extension(self.expert)["reason"],
            "x-request-id": self.request_id,
        }


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
    ) -> None:
        self.cfg, self.pool, self.routers, self.policy = cfg, pool, routers, policy
        self.metrics, self.routing_log = metrics, routing_log

    def available_experts(self) -> set[str]:
        return {e for e in self.pool.experts if self.pool.is_available(e)}

    async def chat(
        self, request: ChatCompletionRequest, tenant: str | None = None,
        budget: BudgetState | None = None,
    ) -> Reply:
        """Route and dispatch one request (raises a GatewayError on failure)."""
        start = time.perf_counter()
        if request.unknown_fields:
            log.info("request has unknown fields %s (kept, sent upstream)", request.unknown_fields)
        category = request.coe.category if request.coe else None
        query = Query(text=routing_text(request), category=category,
                      metadata={"tenant": tenant} if tenant else {})
        decision = await route(self.cfg, self.routers, self.policy, request, query,
                               self.available_experts(), budget)
        if decision.router:
            self.metrics.routing_latency.labels(decision.router).observe(decision.routing_s)
            self.metrics.choices.labels(decision.router, decision.expert).inc()
        expert, result = await self._dispatch(request, decision)
        reply = Reply(decision=decision, expert=expert)
        ctx = _Context(self, request, query, tenant, reply, start)
        if isinstance(result, dict):
            reply.body = ctx.finish_body(result)
        else:
            reply.stream = ctx.relay(result)
        return reply

    def upstream_body(self, request: ChatCompletionRequest, expert_name: str) -> dict[str, Any]:
        expert = self.cfg.expert(expert_name)
        body = request.upstream_body(expert.upstream_model)
        for key, value in expert.defaults.items():
            body.setdefault(key, value)
        if body.get("stream"):
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return body

    async def _dispatch(self, request: ChatCompletionRequest,
                        decision: Decision) -> tuple[str, ChatResult]:
        tries = decision.ranking[: 1 + (self.cfg.routing.fallbacks if decision.router else 0)]
        failure: UpstreamError | None = None
        for i, expert in enumerate(tries):
            try:
                return expert, await self.pool.chat(expert, self.upstream_body(request, expert))
            except UpstreamError as exc:
                failure = exc
                log.warning("expert %s failed: %s", expert, exc.message)
                if i + 1 < len(tries):
                    self.metrics.fallbacks.labels(expert, tries[i + 1]).inc()
        assert failure is not None
        raise failure


class _Context:
    """Book-keeping of one answered request: finishing the body or relaying the stream, then
    recording metrics, spend and the routing log."""

    def __init__(self, gw: Gateway, request: ChatCompletionRequest, query: Query,
                 tenant: str | None, reply: Reply, start: float) -> None:
        self.gw, self.request, self.query, self.tenant = gw, request, query, tenant
        self.reply, self.start = reply, start
        self.usage = Usage()

    def _annotate(self, obj: dict[str, Any]) -> None:
        obj["model"] = self.reply.expert

    def finish_body(self, body: dict[str, Any]) -> dict[str, Any]:
        self._annotate(body)
        body["coe_routing"] = self.reply.decision.extension(self.reply.expert)
        self.usage.add(body.get("usage"))
        self.record(200)
        return body

    async def relay(self, stream: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        wants_usage = bool((self.request.stream_options or {}).get("include_usage"))
        first, status = True, 200
        try:
            async for chunk in stream:
                self._annotate(chunk)
                if chunk.get("usage"):
                    self.usage.add(chunk["usage"])
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
