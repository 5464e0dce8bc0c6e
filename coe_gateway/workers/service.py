"""The workers service (``coe-gateway workers``): launches and supervises a config's local
workers (:class:`~coe_gateway.workers.supervisor.Supervisor`) and publishes where they are
in the fleet file (:mod:`coe_gateway.workers.fleet_file`), so that any number of gateway
processes can route over them (``workers.mode: attach``).

The file is rewritten on every state change of a worker and at every
``workers.health_interval_s`` (the heartbeat). One service per fleet file: the service holds
an exclusive lock on ``<fleet file>.lock`` while it runs, and a second one refuses to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from coe_gateway.config import GatewayConfig
from coe_gateway.workers.fleet_file import (
    FleetState,
    PublishedReplica,
    Publisher,
    ReplicaState,
    fleet_path,
    write_fleet_file,
)
from coe_gateway.workers.supervisor import Supervisor, WorkerProcess

log = logging.getLogger("coe_gateway.workers")


class ServiceError(RuntimeError):
    """The workers service cannot start (or its workers never became ready)."""


class FleetPublisher:
    """Writes a supervisor's workers to a fleet file."""

    def __init__(self, path: Path, supervisor: Supervisor) -> None:
        self.path = path
        self.supervisor = supervisor
        self.started_at = time.time()
        self.stopped = False
        self._seen: dict[tuple[str, int], tuple[PublishedReplica, float]] = {}

    def _replica(self, w: WorkerProcess, now: float) -> PublishedReplica:
        """``w`` as published; ``updated_at`` is the time its published state last changed."""
        current = PublishedReplica(
            replica=w.index, url=w.url, pid=w.process.pid if w.process else None,
            state=cast(ReplicaState, w.replica.state),
            healthy=w.replica.healthy, restarts=w.restarts, updated_at=0.0)
        key = (w.expert.name, w.index)
        previous = self._seen.get(key)
        if previous is None or previous[0] != current:
            self._seen[key] = (current, now)
        return current.model_copy(update={"updated_at": self._seen[key][1]})

    def state(self) -> FleetState:
        """The fleet as of now."""
        now = time.time()
        experts: dict[str, list[PublishedReplica]] = {}
        for w in self.supervisor.workers:
            experts.setdefault(w.expert.name, []).append(self._replica(w, now))
        publisher = Publisher(pid=os.getpid(), host=socket.gethostname(),
                              started_at=self.started_at, heartbeat=now)
        return FleetState(publisher=publisher, experts=experts,
                          ready=self.supervisor.ready and not self.stopped)

    def publish(self) -> None:
        """Write the fleet file now (never raises: a failed write is logged)."""
        try:
            write_fleet_file(self.path, self.state())
        except OSError as exc:
            log.error("cannot write the fleet file %s: %s", self.path, exc)


@contextlib.contextmanager
def publisher_lock(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` exclusively (ServiceError when another service holds it)."""
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            owner = fh.read().strip() or "?"
            raise ServiceError(f"another workers service (pid {owner}) publishes {path}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class WorkersService:
    """Supervises the local workers of ``cfg`` and publishes them."""

    def __init__(self, cfg: GatewayConfig) -> None:
        self.cfg = cfg
        self.path = fleet_path(cfg)
        self.supervisor = Supervisor(cfg, on_change=self._changed)
        self.publisher = FleetPublisher(self.path, self.supervisor)

    def _changed(self) -> None:
        self.publisher.publish()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.workers.health_interval_s)
            self.publisher.publish()

    async def _until_ready(self, stop: asyncio.Event) -> None:
        """Until every worker was healthy once, or ``stop``; ServiceError on timeout."""
        ready = asyncio.create_task(self.supervisor.wait_ready(self.cfg.workers.ready_timeout_s))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (ready, stopped):
                task.cancel()
        if ready.done() and not ready.cancelled() and ready.exception() is not None:
            raise ServiceError(str(ready.exception()))
        if ready.done() and not ready.cancelled():
            log.info("all %d workers ready; fleet published in %s",
                     len(self.supervisor.workers), self.path)
            self.publisher.publish()

    async def run(self, stop: asyncio.Event) -> None:
        """Launch, publish and supervise until ``stop`` is set; then stop every worker."""
        with publisher_lock(self.path):
            beat: asyncio.Task[None] | None = None
            try:
                self.publisher.publish()
                try:
                    await self.supervisor.start(wait_ready=False)
                except (OSError, subprocess.SubprocessError) as exc:
                    raise ServiceError(f"cannot launch a worker: {exc}") from exc
                beat = asyncio.create_task(self._heartbeat(), name="coe-fleet-heartbeat")
                await self._until_ready(stop)
                await stop.wait()
            finally:
                if beat is not None:
                    beat.cancel()
                self.publisher.stopped = True
                await self.supervisor.stop()


async def _serve(cfg: GatewayConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await WorkersService(cfg).run(stop)


def run_workers(cfg: GatewayConfig) -> int:
    """Run the workers service until SIGTERM/SIGINT: 0 then, 1 when it cannot start."""
    try:
        asyncio.run(_serve(cfg))
    except ServiceError as exc:
        log.error("workers service: %s", exc)
        return 1
    return 0
