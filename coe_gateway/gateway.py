"""The request pipeline, in one place and in this order:

1. tenant & policy  the request's policy (its ``coe.policy`` within the tenant's rights)
2. cache lookup     exact, then semantic (keyed by text and image hashes); a hit is
                    replayed (body or SSE) and counts against the rate limit only
3. budget state     the tenant's remaining budget and pace (memory, refreshed from the
                    ledger at most every second; 402 when a period is used up)
4. features+router  the routing text -> predicted quality of every eligible expert
5. policy           a ranking from quality, cost estimate and budget   (routing.route)
6. strategy         attempts over the ranking (``fallback`` by default): each attempt
                    reserves its maximum cost (the first one admits the request against
                    the rate limit in the same ledger round trip), calls a healthy replica
                    and settles with its real usage       (coe_gateway.strategies)
7. reply            the accepted answer's bytes relayed (coe_gateway.relay): routing
                    extension spliced into the body or the first SSE event, the rest
                    verbatim; metrics, one routing-log record per attempt, cache store

The server turns a :class:`~coe_gateway.relay.Reply` into HTTP; every reply says which expert
answered and why (``coe_routing`` field with every attempt, ``x-coe-*`` headers).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from coe_gateway.budget import ANONYMOUS, Tenant, check_expert_allowed, resolve_policy
from coe_gateway.cache import CacheHit
from coe_gateway.config import GatewayConfig
from coe_gateway.errors import BudgetExceededError, GatewayError
from coe_gateway.ids import IdSource
from coe_gateway.metrics import GatewayMetrics
from coe_gateway.policies import Policy
from coe_gateway.protocol import ChatRequest, routing_text
from coe_gateway.relay import Recorder, Reply, body_reply, replay, stream_reply
from coe_gateway.routers.base import Query
from coe_gateway.routing import Decision, RouterSet, route
from coe_gateway.routing_log import RoutingLog
from coe_gateway.strategies import Exchange, Strategy, build_strategy
from coe_gateway.tenancy import Tenancy
from coe_gateway.workers.pool import WorkerPool

log = logging.getLogger("coe_gateway.gateway")


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
        spec = cfg.routing.strategy
        self.strategy = build_strategy(spec.kind, spec.params, fallbacks=cfg.routing.fallbacks)
        self.single = build_strategy("single")
        self.ids = IdSource()

    def available_experts(self) -> set[str]:
        return self.pool.available()

    async def chat(self, request: ChatRequest, tenant: Tenant | None = None) -> Reply:
        """Route and serve one request of ``tenant`` (default: the unlimited anonymous
        tenant); raises a GatewayError when it cannot be served."""
        start = time.perf_counter()
        tenant = tenant or ANONYMOUS
        if request.unknown_fields:
            log.info("request has unknown fields %s (kept, sent upstream)", request.unknown_fields)
        policy = self._policy(request, tenant)
        if request.model in self.cfg.experts_by_name:
            check_expert_allowed(tenant, request.model)
        cached = _Cached(self, request, tenant)
        hit = await cached.lookup()
        if hit is not None:
            await self.tenancy.guard.count(tenant)
            return cached.reply(hit)
        budget = await self.tenancy.guard.state(tenant)
        category = request.coe.category if request.coe else None
        query = Query(text=routing_text(request), category=category,
                      metadata={"tenant": tenant.name})
        decision = await self._route(request, query, policy, budget, tenant)
        strategy = self._strategy(request, decision)
        ex = Exchange(self.cfg, self.pool, self.tenancy.guard, self.metrics, request, tenant,
                      decision)
        recorder = Recorder(self, ex, query, strategy.describe(), start, cached)
        try:
            outcome = await strategy.serve(ex)
        except GatewayError as exc:
            recorder.done(exc.status_code)
            raise
        if outcome.body is not None:
            return await body_reply(recorder, outcome, cached.state)
        return stream_reply(recorder, outcome, cached.state)

    async def _route(self, request: ChatRequest, query: Query, policy: Policy, budget: Any,
                     tenant: Tenant) -> Decision:
        try:
            decision = await route(self.cfg, self.routers, policy, request, query,
                                   self.available_experts(), budget, tenant.allowed_experts)
        except BudgetExceededError as exc:  # the budget leaves no expert: name the limit
            costs = np.array(list(exc.extra.get("estimated_cost_usd", {}).values()))
            raise await self.tenancy.guard.unaffordable(tenant, costs) from None
        if decision.router:
            self.metrics.routing_latency.labels(decision.router).observe(decision.routing_s)
            self.metrics.choices.labels(decision.router, decision.expert).inc()
        return decision

    def _policy(self, request: ChatRequest, tenant: Tenant) -> Policy:
        """The request's policy: its ``coe.policy`` override (within the tenant's rights),
        else the tenant's, else the gateway's."""
        opts = request.coe
        if (opts is None or opts.policy is None) and tenant.policy is None \
                and tenant.quality_target is None:
            return self.policy
        override = None if opts is None or opts.policy is None else {
            "kind": opts.policy, "params": opts.params}
        return resolve_policy(tenant, self.cfg.routing.policy, override)

    def _strategy(self, request: ChatRequest, decision: Decision) -> Strategy:
        """``single`` for a named expert; the request's ``coe.strategy``; the configured one.
        ``coe.params`` go to the request's strategy only when it overrides no policy (the
        extension has one ``params`` field; a policy override takes it)."""
        if decision.router is None:
            return self.single
        kind = request.coe.strategy if request.coe else None
        if kind is None or kind == self.strategy.kind:
            return self.strategy
        params = request.coe.params if request.coe and request.coe.policy is None else {}
        return build_strategy(kind, params, fallbacks=self.cfg.routing.fallbacks)


class _Cached:
    """The cache step of one request: lookup before routing, store after a whole answer."""

    def __init__(self, gw: Gateway, request: ChatRequest, tenant: Tenant) -> None:
        self.cache, self.request, self.tenant = gw.tenancy.cache, request, tenant.name
        self.active = False
        self.state: str | None = None  # exact / semantic / miss once looked up
        if self.cache is None:
            return
        self.settings = s = gw.tenancy.cache_settings(tenant)
        self.active = (s.exact and request.deterministic) or s.semantic

    async def lookup(self) -> CacheHit | None:
        if not self.active or self.cache is None:
            return None
        hit = await self.cache.lookup(self.tenant, self.request.body, self.settings)
        self.state = hit.kind if hit is not None else "miss"
        return hit

    async def store(self, response: dict[str, Any],
                    chunks: list[dict[str, Any]] | None = None, *, raw: bytes | None = None,
                    events: list[tuple[bytes, bool]] | None = None) -> None:
        if self.active and self.cache is not None:
            await self.cache.store(self.tenant, self.request.body, self.settings, response,
                                   chunks, raw=raw, events=events)

    @property
    def wanted(self) -> bool:
        """Whether an answer should be kept (then a stream is assembled)."""
        return self.active

    def reply(self, hit: CacheHit) -> Reply:
        """The stored answer, as it was sent (body) or streamed (chunks)."""
        routing = hit.response.get("coe_routing") or {}
        expert = str(routing.get("expert") or hit.response.get("model") or "cache")
        decision = Decision([expert], routing.get("router"),
                            dict(routing.get("policy") or {"kind": "cache"}),
                            reason=f"cache hit ({hit.kind})")
        return replay(decision, expert, hit, self.request)
