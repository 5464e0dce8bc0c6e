"""Everything one gateway process runs, built from a config and started/stopped with the app:
the worker supervisor (local vLLM experts), the pool (all replicas), the routers, the policy,
metrics, the routing log and the health loop of the replicas the supervisor does not own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from coe_gateway.config import ExpertConfig, GatewayConfig
from coe_gateway.gateway import Gateway
from coe_gateway.metrics import GatewayMetrics
from coe_gateway.policies import build_policy
from coe_gateway.routing import RouterSet
from coe_gateway.routing_log import RoutingLog
from coe_gateway.tenancy import Tenancy
from coe_gateway.workers.backends import Backend, HttpBackend, LiteLLMBackend
from coe_gateway.workers.pool import Replica, WorkerPool
from coe_gateway.workers.supervisor import Supervisor

log = logging.getLogger("coe_gateway.server")


def remote_backends(expert: ExpertConfig) -> list[Backend]:
    """Backends of an expert the gateway does not launch (``openai`` or ``litellm``)."""
    key = os.environ.get(expert.api_key_env) if expert.api_key_env else None
    if expert.backend == "openai":
        return [HttpBackend(f"{expert.name}#{i}", url, timeout_s=expert.timeout_s, api_key=key)
                for i, url in enumerate(expert.urls)]
    if expert.backend == "litellm":
        bases = expert.urls or [None]
        return [LiteLLMBackend(f"{expert.name}#{i}", expert.model, timeout_s=expert.timeout_s,
                               api_key=key, api_base=base) for i, base in enumerate(bases)]
    raise ValueError(f"expert {expert.name}: backend {expert.backend} is launched locally")


class Runtime:
    """The live parts of one gateway process."""

    def __init__(self, cfg: GatewayConfig, *, wait_ready: bool = True) -> None:
        self.cfg = cfg
        self.wait_ready = wait_ready
        self.metrics = GatewayMetrics()
        self.supervisor = Supervisor(cfg, on_restart=self._restarted)
        self.remote: list[Replica] = [
            Replica(e.name, i, b)
            for e in cfg.experts if e.backend != "vllm"
            for i, b in enumerate(remote_backends(e))
        ]
        self.pool = WorkerPool([*self.supervisor.replicas, *self.remote])
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
        await self.pool.check_health(self.remote)
        self._health_task = asyncio.create_task(self._health_loop(), name="coe-remote-health")
        await self.supervisor.start(wait_ready=self.wait_ready)
        if not self.wait_ready:  # serve now; /ready says 503 until every worker answers
            self._ready_task = asyncio.create_task(self._log_when_ready(), name="coe-ready")
        self.update_gauges()

    async def _log_when_ready(self) -> None:
        try:
            await self.supervisor.wait_ready(self.cfg.workers.ready_timeout_s)
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
        await self.supervisor.stop()
        for r in self.remote:
            await r.backend.aclose()
        if self.routing_log:
            self.routing_log.close()
        await self.tenancy.close()
