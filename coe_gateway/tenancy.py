"""Who calls, what they may spend, what is cached: the per-tenant parts of the pipeline.

:class:`Tenancy` is built once per gateway process from the config: the budget store (API
key -> tenant; ``None`` when the config names no budget file, and then every request is the
unlimited ``anonymous`` tenant and no key is asked for), the budget guard over the ledger
(Redis when ``redis_url`` is set, else in-process) and the response cache (Redis-backed or
in-process; ``None`` when ``cache.enabled`` is false and no tenant enables it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from coe_gateway.budget import ANONYMOUS, BudgetGuard, BudgetStore, Tenant
from coe_gateway.cache import (
    CacheMetrics,
    CacheSettings,
    MemoryBackend,
    RedisBackend,
    ResponseCache,
)
from coe_gateway.config import CacheConfig, GatewayConfig
from coe_gateway.ledger import InMemoryLedger, Ledger
from coe_gateway.redis_ledger import FailoverLedger, RedisLedger
from coe_gateway.request_guard import RequestGuard

log = logging.getLogger(__name__)


@dataclass
class Tenancy:
    store: BudgetStore | None
    guard: BudgetGuard
    cache: ResponseCache | None
    cache_defaults: CacheConfig
    merges: bool = False
    """Whether the ledger and the cache are one Redis, so that a request's exact lookup and
    store may ride on its ledger round trips (:mod:`coe_gateway.request_guard`)."""

    @classmethod
    def from_config(cls, cfg: GatewayConfig, registry: CollectorRegistry | None = None,
                    prefix: str = "coe:") -> Tenancy:
        """Everything from ``cfg`` (ConfigError when the budget file is invalid)."""
        store = None
        if cfg.budget_file:
            store = BudgetStore(cfg.budget_file, known_experts=cfg.expert_names)
        guard = BudgetGuard(_ledger(cfg, store, prefix))
        cache = None
        if cfg.cache.enabled or _any_tenant_caches(store):
            backend: Any = (RedisBackend.from_url(cfg.redis_url) if cfg.redis_url
                            else MemoryBackend())
            cache = ResponseCache(backend, metrics=CacheMetrics(registry),
                                  embedder=_embed, prefix=prefix)
        merges = cache is not None and isinstance(cache.backend, RedisBackend) \
            and isinstance(guard.ledger, FailoverLedger) and guard.ledger.peeks
        return cls(store, guard, cache, cfg.cache, merges)

    def request_guard(self, request: Mapping[str, Any], tenant: Tenant,
                      settings: CacheSettings) -> RequestGuard | None:
        """The guard of one request whose whole cache step is an exact lookup and store
        that its ledger round trips can carry; None when it is not such a request."""
        if not self.merges or self.cache is None:
            return None
        key = self.cache.exact_only_key(tenant.name, request, settings)
        if key is None:
            return None
        ledger = self.guard.ledger
        assert isinstance(ledger, FailoverLedger)
        return RequestGuard(self.guard, ledger, self.cache, key, settings.ttl_s)

    def authenticate(self, key: str | None) -> Tenant:
        """The caller's tenant (AuthenticationError 401); ``anonymous`` when auth is off."""
        return ANONYMOUS if self.store is None else self.store.authenticate(key)

    def cache_settings(self, tenant: Tenant) -> CacheSettings:
        """The gateway's ``cache`` section with the tenant's own settings over it."""
        d, t = self.cache_defaults, tenant.cache
        return CacheSettings(
            exact=d.enabled if t.exact is None else t.exact,
            semantic=d.semantic if t.semantic is None else t.semantic,
            semantic_threshold=(d.semantic_threshold if t.semantic_threshold is None
                                else t.semantic_threshold),
            ttl_s=d.ttl_s if t.ttl_s is None else t.ttl_s,
        )

    async def close(self) -> None:
        await self.guard.ledger.close()
        if self.cache is not None:
            await self.cache.close()


def _ledger(cfg: GatewayConfig, store: BudgetStore | None, prefix: str) -> Ledger:
    settings = store.file.ledger if store is not None else None
    ttl = settings.reservation_ttl_s if settings is not None else 900.0
    if not cfg.redis_url:
        return InMemoryLedger(reservation_ttl_s=ttl)
    redis = RedisLedger.from_url(cfg.redis_url, prefix=prefix, reservation_ttl_s=ttl)

    def fail_open() -> bool:  # read at each failure: a reloaded file takes effect
        return store is not None and store.file.ledger.fail_open

    return FailoverLedger(redis, fail_open=fail_open)


def _embed(texts: Sequence[str]) -> np.ndarray:
    """The semantic cache's embedder: the routers' shared default encoder (all-MiniLM-L6-v2,
    loaded on the first semantic lookup, once per process)."""
    from coe_gateway.routers.embedding import get_encoder

    return get_encoder().encode(texts)  # (B, D), unit norm


def _any_tenant_caches(store: BudgetStore | None) -> bool:
    if store is None:
        return False
    return any(t.cache.exact or t.cache.semantic for t in store.file.tenants)
