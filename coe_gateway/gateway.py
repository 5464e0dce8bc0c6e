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

With the Redis ledger and cache and an exact-only cache step, 2 and 7 ride on the ledger's
round trips (:mod:`coe_gateway.request_guard`): the lookup on the first reservation (a hit
then reserves nothing and is replayed), the store on the last settlement; a miss costs two
Redis round trips, a hit one.

The server turns a :class:`~coe_gateway.relay.Reply` into HTTP; every reply says which expert
answered and why (``coe_routing`` field with every attempt, ``x-coe-*`` headers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from coe_gateway.budget import ANONYMOUS, BudgetGuard, Tenant, check_expert_allowed, resolve_policy
from coe_gateway.cache import CacheHit
from coe_gateway.config import GatewayConfig
from coe_gateway.errors import BudgetExceededError, GatewayError
from coe_gateway.ids import IdSource
from coe_gateway.metrics import GatewayMetrics
from coe_gateway.policies import Policy
from coe_gateway.protocol import ChatRequest, routing_text
from coe_gateway.relay import Recorder, Reply, body_reply, replay, stream_reply
from coe_gateway.request_guard import CachedAnswer, RequestGuard
from coe_gateway.routers.base import Query
from coe_gateway.routing import Decision, RouterSet, eligible_experts, route
from coe_gateway.routing_log import RoutingLog
from coe_gateway.strategies import Exchange, Strategy, build_strategy
from coe_gateway.tenancy import Tenancy
from coe_gateway.vision.images import LoadedImage, load_request_images
from coe_gateway.vision.step import FeatureStep
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
        self.features = FeatureStep.from_config(cfg.images)

    def available_experts(self) -> set[str]:
        return self.pool.available()

    async def chat(self, request: ChatRequest, tenant: Tenant | None = None) -> Reply:
        """Route and serve one request of ``tenant`` (default: the unlimited anonymous
        tenant); raises a GatewayError when it cannot be served."""
        step: list[_Cached] = []  # the request's cache step, once made
        try:
            return await self._chat(request, tenant, step)
        except CachedAnswer as found:  # found by the first reservation (request_guard)
            return step[0].reply(found.hit)
        except GatewayError:  # before any reservation: a cached answer is served anyway
            hit = await step[0].late_lookup() if step else None
            if hit is None:
                raise
            await self.tenancy.guard.count(tenant or ANONYMOUS)
            return step[0].reply(hit)
        finally:
            if step:
                await asyncio.shield(step[0].flush())

    async def _chat(self, request: ChatRequest, tenant: Tenant | None,
                    step: list[_Cached]) -> Reply:
        start = time.perf_counter()
        tenant = tenant or ANONYMOUS
        if request.unknown_fields:
            log.info("request has unknown fields %s (kept, sent upstream)", request.unknown_fields)
        policy = self._policy(request, tenant)
        if request.model in self.cfg.experts_by_name:
            check_expert_allowed(tenant, request.model)
        images: list[LoadedImage] = []
        if request.has_image():
            # 400s before the cache, the budget and any attempt: no vision expert first
            # (then nothing is decoded or fetched in vain), then a bad image
            named = request.model in self.cfg.experts_by_name
            eligible_experts(self.cfg, request, 0,
                             [request.model] if named else tenant.allowed_experts)
            images = await load_request_images(request, self.cfg.images)
        # the images go upstream unchanged (the body is relayed as sent); their features are
        # computed in the routing step, for a router that reads them
        cached = _Cached(self, request, tenant)
        step.append(cached)
        hit = await cached.lookup()
        if hit is not None:
            await self.tenancy.guard.count(tenant)
            return cached.reply(hit)
        budget = await self.tenancy.guard.state(tenant)
        category = request.coe.category if request.coe else None
        query = Query(text=routing_text(request), category=category,
                      metadata={"tenant": tenant.name})
        decision = await self._route(request, query, policy, budget, tenant, images)
        strategy = self._strategy(request, decision)
        ex = Exchange(self.cfg, self.pool, cached.guard, self.metrics, request, tenant,
                      decision)
        recorder = Recorder(self, ex, query, strategy.describe(), start, cached)
        try:
            outcome = await strategy.serve(ex)
        except GatewayError as exc:
            recorder.done(exc.status_code)
            raise
        if outcome.body is not None:
            return await body_reply(recorder, outcome, cached.state)
        await cached.flush()  # a stream settles at its end, before it is stored
        return stream_reply(recorder, outcome, cached.state)

    async def _route(self, request: ChatRequest, query: Query, policy: Policy, budget: Any,
                     tenant: Tenant, images: list[LoadedImage]) -> Decision:
        try:
            decision = await route(self.cfg, self.routers, policy, request, query,
                                   self.available_experts(), budget, tenant.allowed_experts,
                                   images, self.features)
        except BudgetExceededError as exc:  # the budget leaves no expert: name the limit
            costs = np.array(list(exc.extra.get("estimated_cost_usd", {}).values()))
            raise await self.tenancy.guard.unaffordable(tenant, costs) from None
        if decision.router:
            self.metrics.routing_latency.labels(decision.router).observe(decision.routing_s)
            if decision.features_s is not None:
                self.metrics.image_features.labels(decision.router).observe(decision.features_s)
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
    """The cache step of one request: lookup before routing, store after a whole answer.

    When the ledger and the cache are one Redis and the step is an exact lookup and store
    (the usual case), both ride on the ledger's round trips (:mod:`coe_gateway.request_guard`):
    the lookup on the first reservation, the store on the last settlement."""

    def __init__(self, gw: Gateway, request: ChatRequest, tenant: Tenant) -> None:
        self.cache, self.request, self.tenant = gw.tenancy.cache, request, tenant.name
        self.guard: BudgetGuard = gw.tenancy.guard
        self.merged: RequestGuard | None = None
        self.active = False
        self._state: str | None = None  # exact / semantic / miss once looked up
        if self.cache is None:
            return
        self.settings = s = gw.tenancy.cache_settings(tenant)
        self.active = (s.exact and request.deterministic) or s.semantic
        if self.active:
            self.merged = gw.tenancy.request_guard(request.body, tenant, s)
            self.guard = self.merged or self.guard

    @property
    def state(self) -> str | None:
        return self.merged.cache_state if self.merged is not None else self._state

    async def lookup(self) -> CacheHit | None:
        """The cached answer, or None (always None here when the first reservation looks)."""
        if not self.active or self.cache is None or self.merged is not None:
            return None
        hit = await self.cache.lookup(self.tenant, self.request.body, self.settings)
        self._state = hit.kind if hit is not None else "miss"
        return hit

    async def late_lookup(self) -> CacheHit | None:
        """The lookup a request that failed before its first reservation still makes (a hit
        is served whatever the budget or the routing say, as before routing)."""
        if self.merged is None or self.merged.looked_up or self.cache is None:
            return None
        hit = await self.cache.lookup(self.tenant, self.request.body, self.settings)
        self.merged.cache_state = "miss"
        return hit

    async def store(self, response: dict[str, Any],
                    chunks: list[dict[str, Any]] | None = None, *, raw: bytes | None = None,
                    events: list[tuple[bytes, bool]] | None = None) -> None:
        if self.merged is not None and self.merged.holding and self.cache is not None:
            await self.merged.settle_storing(self.cache.encode(response, chunks, raw=raw,
                                                               events=events))
        elif self.active and self.cache is not None:
            await self.cache.store(self.tenant, self.request.body, self.settings, response,
                                   chunks, raw=raw, events=events)

    async def flush(self) -> None:
        """Make the settlements held for the store (none left after it)."""
        if self.merged is not None:
            await self.merged.flush()

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
