"""Everything one gateway process runs, built from a config and started/stopped with the app:
the fleet of local workers (launched by this process, or published by a ``coe-gateway
workers`` service it attaches to), the pool (all replicas), the routers, the policy, the
strategy, metrics, the routing log and the health loop of the remote endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os

from coe_gateway.config import ExpertConfig, GatewayConfig
from coe_gateway.gateway import Gateway
from coe_gateway.metrics import GatewayMetrics
from coe_gateway.policies import build_policy
from coe_gateway.routing import RouterSet
from coe_gateway.routing_log import RoutingLog
from coe_gateway.tenancy import Tenancy
from coe_gateway.workers.backends import Endpoint, build_backend, configured_endpoints
from coe_gateway.workers.fleet import Fleet, open_fleet
from coe_gateway.workers.kinds import is_local
from coe_gateway.workers.pool import Replica, WorkerPool

log = logging.getLogger("coe_gateway.server")


def remote_replicas(cfg: GatewayConfig) -> list[Replica]:
    """Replicas of the experts reached at configured endpoints (``openai``, ``litellm``):
    one per URL (a litellm model without ``urls``: one, at the provider's default)."""
    out = []
    for e in cfg.experts:
        if is_local(e):
            continue
        endpoints = configured_endpoints(e) or [Endpoint(None, _key(e))]
        out += [Replica(e.name, i, build_backend(e, i, ep)) for i, ep in enumerate(endpoints)]
    return out


def _key(expert: ExpertConfig) -> str | None:
    return os.environ.get(expert.api_key_env) if expert.api_key_env else None


class Runtime:
    """The live parts of one gateway process."""

    def __init__(self, cfg: GatewayConfig, *, wait_ready: bool = True) -> None:
        self.cfg = cfg
        self.wait_ready = wait_ready
        self.metrics = GatewayMetrics()
        self.remote = remote_replicas(cfg)
        self.pool = WorkerPool(self.remote)
        self.fleet: Fleet = open_fleet(cfg, self.pool, on_restart=self._restarted)
        self.routers = RouterSet(cfg.routing.routers, cfg.expert_names, cfg.routing.default_router)
        self.policy = build_policy(cfg.routing.policy.kind, cfg.routing.policy.params)
        self.routing_log = RoutingLog(cfg.routing.routing_log) if cfg.routing.routing_log else None
        self.tenancy = Tenancy.from_config(cfg, self.metrics.registry)
        self.gateway = Gateway(cfg, self.pool, self.routers, self.policy, self.metrics,
                               self.routing_log, self.tenancy)
        self._health_task: asyncio.Task[None] | None = None
        self._ready_task: asyncio.Task[None] | None = None

    def _restarted(self, expert: str) -> None:
        self.metrics.worker_restarts.labels(expert).inc()

    async def start(self) -> None:
        """Load routers, launch workers (waiting until ready when asked), start health checks."""
        await asyncio.to_thread(self.routers.warm_up)
        await self.gateway.features.warm_up(self.routers.built())
        await self.pool.check_health(self.remote)
        self._health_task = asyncio.create_task(self._health_loop(), name="coe-remote-health")
        await self.fleet.start(wait_ready=self.wait_ready)
        if not self.wait_ready:  # serve now; /ready says 503 until every worker answers
            self._ready_task = asyncio.create_task(self._log_when_ready(), name="coe-ready")
        self.update_gauges()
        # what start-up loaded (routers, encoders, weights) lives as long as the process:
        # move it out of the collector's sight so gen-2 collections stay short
        gc.collect()
        gc.freeze()

    async def _log_when_ready(self) -> None:
        try:
            await self.fleet.wait_ready(self.cfg.workers.ready_timeout_s)
        except RuntimeError as exc:
            log.error("%s", exc)
            return
        log.info("all workers ready: experts %s", self.cfg.expert_names)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.workers.health_interval_s)
            with contextlib.suppress(Exception):
                await self.pool.check_health(self.remote)
            self.update_gauges()

    def update_gauges(self) -> None:
        for e in self.cfg.expert_names:
            healthy = sum(r.healthy for r in self.pool.replicas(e))
            self.metrics.healthy_replicas.labels(e).set(healthy)

    @property
    def ready(self) -> bool:
        return all(self.pool.is_available(e) for e in self.cfg.expert_names)

    async def stop(self) -> None:
        for task in (self._health_task, self._ready_task):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.fleet.stop()
        for r in self.remote:
            await r.backend.aclose()
        if self.routing_log:
            self.routing_log.close()
        await self.tenancy.close()
