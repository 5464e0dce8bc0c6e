"""The supervisor: launches one worker process per replica of every local expert (an expert
whose backend is a worker kind, :mod:`coe_gateway.workers.kinds`), waits until each is
ready, health-checks them, restarts a crashed one with exponential backoff, and stops them
all on shutdown.

Each worker runs in its own process group (so vLLM's engine subprocesses go with it) and
asks the kernel to SIGTERM it when the supervising process dies (``PR_SET_PDEATHSIG``), so
no worker outlives it even when it is killed. Logs go to
``workers.log_dir/<expert>-<replica>.log``. ``on_change`` is called after every change of a
worker's state (started, healthy, unhealthy, exited), e.g. to publish the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from coe_gateway.config import ExpertConfig, GatewayConfig, WorkersConfig, expand
from coe_gateway.workers.kinds import local_backend, local_experts, worker_kind
from coe_gateway.workers.pool import Replica

log = logging.getLogger("coe_gateway.workers")

PR_SET_PDEATHSIG = 1


def signal_on_parent_death(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def _die_with_parent() -> None:
    """In the child, before exec: new process group, SIGTERM when the parent dies."""
    os.setsid()
    signal_on_parent_death(signal.SIGTERM)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(start: int, count: int) -> list[int]:
    """``count`` free TCP ports from ``start`` upwards."""
    ports: list[int] = []
    port = start
    while len(ports) < count:
        if port > 65535:
            raise RuntimeError(f"no {count} free ports from {start}")
        if port_is_free(port):
            ports.append(port)
        port += 1
    return ports


@dataclass(eq=False)
class WorkerProcess:
    """One supervised worker process."""

    expert: ExpertConfig
    index: int
    port: int
    url: str
    health_url: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    replica: Replica
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    ready_once: bool = False
    history: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.expert.name}#{self.index}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None


class Supervisor:
    """Runs and watches the local workers of a config."""

    def __init__(self, cfg: GatewayConfig,
                 on_restart: Callable[[str], None] | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.cfg = cfg
        self.settings: WorkersConfig = cfg.workers
        self.workers: list[WorkerProcess] = []
        self._monitor: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._stopping = False
        self._on_restart = on_restart
        self._on_change = on_change
        self._plan()

    def _plan(self) -> None:
        local = local_experts(self.cfg)
        ports = iter(free_ports(self.settings.base_port, sum(e.replicas for e in local)))
        log_dir = Path(expand(self.settings.log_dir))
        for expert in local:
            kind = worker_kind(expert)
            for i in range(expert.replicas):
                port = next(ports)
                url = kind.base_url(port)
                replica = Replica(expert.name, i, local_backend(expert, i, url),
                                  detail={"port": port})
                self.workers.append(WorkerProcess(
                    expert=expert, index=i, port=port, url=url, health_url=kind.health_url(port),
                    argv=kind.argv(self.cfg, expert, i, port), env=kind.env(expert, i),
                    log_path=log_dir / f"{expert.name}-{i}.log", replica=replica,
                ))

    @property
    def replicas(self) -> list[Replica]:
        return [w.replica for w in self.workers]

    @property
    def ready(self) -> bool:
        """Every worker has been healthy at least once."""
        return all(w.ready_once for w in self.workers)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    async def _spawn(self, w: WorkerProcess) -> None:
        w.log_path.parent.mkdir(parents=True, exist_ok=True)
        with w.log_path.open("ab") as fh:
            fh.write(f"\n=== start {time.strftime('%F %T')}: {' '.join(w.argv)}\n".encode())
            w.process = await asyncio.create_subprocess_exec(
                *w.argv, env=w.env, stdout=fh, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent,
            )
        w.started_at = time.monotonic()
        w.replica.healthy, w.replica.state = False, "starting"
        w.replica.detail.update(pid=w.process.pid, restarts=w.restarts, log=str(w.log_path))
        log.info("started worker %s (pid %s, port %s)", w.label, w.process.pid, w.port)
        self._changed()

    async def start(self, wait_ready: bool = True) -> None:
        """Launch every worker, start monitoring, and (optionally) wait until all are ready."""
        for w in self.workers:
            await self._spawn(w)
        self._monitor = asyncio.create_task(self._watch(), name="coe-supervisor")
        if wait_ready:
            await self.wait_ready(self.settings.ready_timeout_s)

    async def wait_ready(self, timeout_s: float) -> None:
        """Until every worker has been healthy once; RuntimeError (with log tails) on timeout."""
        deadline = time.monotonic() + timeout_s
        while not self.ready:
            if time.monotonic() > deadline:
                late = [w for w in self.workers if not w.ready_once]
                tails = "\n".join(f"--- {w.label} ({w.log_path}):\n{tail(w.log_path)}" for w in late)
                raise RuntimeError(f"workers not ready after {timeout_s:.0f}s: "
                                   f"{[w.label for w in late]}\n{tails}")
            await asyncio.sleep(0.5)

    async def _watch(self) -> None:
        while not self._stopping:
            for w in self.workers:
                await self._check(w)
            await asyncio.sleep(self.settings.health_interval_s if self.ready else 0.5)

    async def _probe(self, w: WorkerProcess) -> bool:
        """True when the worker's health URL answers 200 within 3 s."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        try:
            async with self._http.get(w.health_url, timeout=aiohttp.ClientTimeout(total=3)) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def _check(self, w: WorkerProcess) -> None:
        if not w.alive:
            await self._handle_exit(w)
            return
        healthy = await self._probe(w)
        if healthy and not w.replica.healthy:
            log.info("worker %s ready after %.1fs", w.label, time.monotonic() - w.started_at)
        before = (w.replica.healthy, w.replica.state)
        w.replica.healthy = healthy
        w.replica.state = "ready" if healthy else ("starting" if not w.ready_once else "unhealthy")
        w.ready_once = w.ready_once or healthy
        if healthy:
            w.next_start = 0.0
        if (w.replica.healthy, w.replica.state) != before:
            self._changed()

    async def _handle_exit(self, w: WorkerProcess) -> None:
        now = time.monotonic()
        if w.replica.state != "restarting":
            code = w.process.returncode if w.process else None
            _signal_group(w, signal.SIGKILL)  # what it left behind (vLLM's engine processes)
            w.replica.healthy, w.replica.state = False, "restarting"
            backoff = min(self.settings.restart_backoff_s * 2 ** min(w.restarts, 16),
                          self.settings.restart_backoff_max_s)
            if now - w.started_at > 300:  # it ran fine for a while: reset the backoff
                backoff = self.settings.restart_backoff_s
            w.next_start = now + backoff
            w.history.append(f"exit {code} at {time.strftime('%T')}")
            log.warning("worker %s exited with %s; restarting in %.1fs", w.label, code, backoff)
            self._changed()
            return
        if now >= w.next_start and not self._stopping:
            w.restarts += 1
            if self._on_restart:
                self._on_restart(w.expert.name)
            await self._spawn(w)

    async def stop(self, timeout_s: float = 15.0) -> None:
        """Stop monitoring and terminate every worker's process group (SIGTERM, then KILL)."""
        self._stopping = True
        if self._monitor:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for w in self.workers:
            _signal_group(w, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for w in self.workers:
            if w.process is None:
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(w.process.wait(), max(0.1, deadline - time.monotonic()))
            _signal_group(w, signal.SIGKILL)
            w.replica.healthy, w.replica.state = False, "stopped"
        for w in self.workers:
            await w.replica.backend.aclose()
        if self._http is not None:
            await self._http.close()
        self._changed()


def _signal_group(w: WorkerProcess, sig: int) -> None:
    if w.process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(w.process.pid, sig)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"
