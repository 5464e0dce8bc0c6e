"""The local workers a gateway process routes over, whoever launched them.

:func:`open_fleet` gives the gateway's runtime one object to start, wait for and stop, whose
replicas are in the pool. By ``workers.mode`` (:func:`fleet_mode`):

- ``launch``: a :class:`~coe_gateway.workers.supervisor.Supervisor`; this process launches
  and supervises the workers (one gateway process: the embedded default);
- ``attach``: a :class:`~coe_gateway.workers.fleet_client.FleetClient`; the workers are a
  ``coe-gateway workers`` service's, read from the fleet file it publishes;
- ``auto``: ``launch`` when ``server.workers`` is 1, else ``attach`` (``coe-gateway serve``
  then runs the workers service itself, beside its gateway processes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

from coe_gateway.config import GatewayConfig
from coe_gateway.workers.fleet_client import FleetClient
from coe_gateway.workers.pool import Replica, WorkerPool
from coe_gateway.workers.supervisor import Supervisor


class Fleet(Protocol):
    """The local workers of one gateway process."""

    @property
    def replicas(self) -> list[Replica]: ...

    async def start(self, wait_ready: bool = True) -> None: ...

    async def wait_ready(self, timeout_s: float) -> None: ...

    async def stop(self) -> None: ...


def fleet_mode(cfg: GatewayConfig) -> Literal["launch", "attach"]:
    """What ``workers.mode`` means for one gateway process of ``cfg``."""
    if cfg.workers.mode != "auto":
        return cfg.workers.mode
    return "launch" if cfg.server.workers == 1 else "attach"


def open_fleet(cfg: GatewayConfig, pool: WorkerPool,
               on_restart: Callable[[str], None] | None = None) -> Fleet:
    """The fleet of ``cfg``'s local experts; its replicas are (or will be) in ``pool``."""
    if fleet_mode(cfg) == "attach":
        return FleetClient(cfg, pool, on_restart=on_restart)
    fleet = Supervisor(cfg, on_restart=on_restart)
    for r in fleet.replicas:
        pool.add(r)
    return fleet
