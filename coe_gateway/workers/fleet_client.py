"""The fleet client: a gateway process in ``attach`` mode routes over the workers that a
``coe-gateway workers`` service publishes, and launches nothing.

Every ``workers.health_interval_s`` it looks at the fleet file (a new inode, mtime or size
means a new version: it is then read and validated), keeps one
:class:`~coe_gateway.workers.pool.Replica` per published replica of the config's local
experts in the pool (added, re-pointed when its URL changes, removed when it is no longer
published), and health-checks each itself (``backend.health()``). A replica is healthy only
when the publisher says so, the publisher is alive (heartbeat younger than
``workers.fleet_stale_s`` and, on this host, its process exists) and the replica answers.
Until the file appears, there are no replicas (``/ready`` says 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from coe_gateway.config import GatewayConfig
from coe_gateway.workers.fleet_file import (
    FleetFileError,
    FleetState,
    PublishedReplica,
    file_version,
    fleet_path,
    read_fleet_file,
)
from coe_gateway.workers.kinds import local_backend, local_experts
from coe_gateway.workers.pool import Replica, WorkerPool

log = logging.getLogger("coe_gateway.workers")

Key = tuple[str, int]


class FleetClient:
    """The published workers of ``cfg``'s local experts, kept in ``pool``."""

    def __init__(self, cfg: GatewayConfig, pool: WorkerPool,
                 on_restart: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.pool = pool
        self.path = fleet_path(cfg)
        self.experts = {e.name: e for e in local_experts(cfg)}
        self.fleet: FleetState | None = None
        self._on_restart = on_restart
        self._replicas: dict[Key, Replica] = {}
        self._published: dict[Key, PublishedReplica] = {}
        self._ready_once: set[Key] = set()
        self._retired: list[Replica] = []
        self._version: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def replicas(self) -> list[Replica]:
        return list(self._replicas.values())

    @property
    def ready(self) -> bool:
        """Every local expert is published and each of its replicas was healthy once."""
        published = {name for name, _ in self._replicas}
        return set(self.experts) <= published and self._ready_once >= set(self._replicas)

    async def start(self, wait_ready: bool = True) -> None:
        """Read the fleet file, start watching it, and (optionally) wait until ready."""
        await self.refresh()
        self._task = asyncio.create_task(self._watch(), name="coe-fleet-client")
        if wait_ready:
            await self.wait_ready(self.cfg.workers.ready_timeout_s)

    async def wait_ready(self, timeout_s: float) -> None:
        """Until :attr:`ready`; RuntimeError (saying what is missing) on timeout."""
        deadline = time.monotonic() + timeout_s
        while not self.ready:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fleet {self.path} not ready after {timeout_s:.0f}s: "
                                   f"{self._missing()}")
            await asyncio.sleep(min(0.2, self.cfg.workers.health_interval_s))

    def _missing(self) -> str:
        if self.fleet is None:
            return "no fleet file (is `coe-gateway workers` running with this config?)"
        unpublished = sorted(set(self.experts) - {name for name, _ in self._replicas})
        waiting = sorted(f"{n}#{i}" for n, i in set(self._replicas) - self._ready_once)
        return f"not published: {unpublished}; never healthy: {waiting}"

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.workers.health_interval_s)
            try:
                await self.refresh()
            except Exception:  # the loop must survive anything one round does
                log.exception("fleet client: refreshing %s failed", self.path)

    async def refresh(self) -> None:
        """Re-read the file if it changed, update the pool, health-check every replica."""
        async with self._lock:
            version = file_version(self.path)
            if version != self._version:
                self._version = version
                self._load()
            await self._check_health()
            await self._close_retired()

    def _load(self) -> None:
        try:
            fleet: FleetState | None = read_fleet_file(self.path)
        except FileNotFoundError:
            fleet = None
        except FleetFileError as exc:
            log.warning("ignoring an invalid fleet file: %s", exc)
            return
        self.fleet = fleet
        published = {} if fleet is None else {
            (name, r.replica): r for name, reps in fleet.experts.items()
            if name in self.experts for r in reps}
        for key in set(self._replicas) - set(published):
            self._retire(key)
        for key, pub in published.items():
            self._apply(key, pub)
        self._published = published

    def _apply(self, key: Key, pub: PublishedReplica) -> None:
        """Add or update the replica of one published entry."""
        old = self._published.get(key)
        replica = self._replicas.get(key)
        if replica is not None and old is not None and old.url != pub.url:
            self._retire(key)
            replica = None
        if replica is None:
            name, index = key
            replica = Replica(name, index, local_backend(self.experts[name], index, pub.url))
            self._replicas[key] = replica
            self.pool.add(replica)
            log.info("attached %s#%d at %s", name, index, pub.url)
        elif old is not None and pub.restarts > old.restarts and self._on_restart:
            for _ in range(pub.restarts - old.restarts):
                self._on_restart(key[0])
        if old is not None and pub.pid != old.pid:
            self._ready_once.discard(key)
        port = urlsplit(pub.url).port
        replica.detail.update(pid=pub.pid, restarts=pub.restarts, url=pub.url,
                              published_state=pub.state, **({"port": port} if port else {}))

    def _retire(self, key: Key) -> None:
        """Take a replica out of the pool; its backend closes once nothing is in flight."""
        replica = self._replicas.pop(key)
        self._ready_once.discard(key)
        replica.healthy, replica.state = False, "detached"
        self.pool.remove(replica)
        self._retired.append(replica)
        log.info("detached %s#%d", replica.expert, replica.index)

    async def _close_retired(self) -> None:
        idle = [r for r in self._retired if r.in_flight <= 0]
        self._retired = [r for r in self._retired if r.in_flight > 0]
        for r in idle:
            await r.backend.aclose()

    async def _check_health(self) -> None:
        live = self.fleet is not None and self.fleet.is_live(self.cfg.workers.fleet_stale_s)
        await asyncio.gather(*(self._check(key, replica, live)
                               for key, replica in list(self._replicas.items())))

    async def _check(self, key: Key, replica: Replica, live: bool) -> None:
        pub = self._published[key]
        if not live:
            healthy, state = False, "stale"
        elif not pub.healthy:
            healthy, state = False, pub.state
        else:
            healthy = await replica.backend.health()
            state = "ready" if healthy else "unreachable"
        if self._replicas.get(key) is replica:  # not detached meanwhile
            replica.healthy, replica.state = healthy, state
            if healthy:
                self._ready_once.add(key)

    async def stop(self) -> None:
        """Stop watching and close every backend (the workers themselves keep running)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for key in list(self._replicas):
            self._retire(key)
        for r in self._retired:
            await r.backend.aclose()
        self._retired = []
