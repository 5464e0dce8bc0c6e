"""Gateway processes: :func:`run_gateway` serves one gateway in this process; a
:class:`ProcessGroup` (``server.workers`` > 1) runs several on one port plus, in ``auto``
mode, the workers service they attach to.

Every gateway process listens on a socket it creates itself; with several, each binds its
own with ``SO_REUSEPORT`` and the kernel spreads new connections over them. Each is a
``spawn``-ed child in its own process group (so a terminal's Ctrl-C reaches only the
parent, which forwards it) that the kernel SIGTERMs when the parent dies
(``PR_SET_PDEATHSIG``). The parent forwards SIGTERM/SIGINT, waits for its children,
restarts a gateway process that dies unexpectedly (backoff doubling from
``workers.restart_backoff_s`` to ``workers.restart_backoff_max_s``), and gives up with exit
status 1 when the workers service exits before its workers were ever ready.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from coe_gateway.config import GatewayConfig, ServerConfig
from coe_gateway.logsetup import configure_logging
from coe_gateway.workers.fleet_file import FleetFileError, fleet_path, read_fleet_file
from coe_gateway.workers.kinds import local_experts
from coe_gateway.workers.supervisor import signal_on_parent_death

log = logging.getLogger("coe_gateway.server")

STOP_TIMEOUT_S = 40.0
"""How long the parent waits for a child after SIGTERM before it SIGKILLs it."""


def listen_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``SO_REUSEPORT`` when ``reuse_port``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any, server: ServerConfig) -> Any:
    """The uvicorn settings of every gateway process (uvloop, httptools, no extra headers)."""
    import uvicorn

    return uvicorn.Config(
        app, host=server.host, port=server.port, log_level=server.log_level,
        loop="uvloop", http="httptools", access_log=False, proxy_headers=False,
        server_header=False, date_header=False, timeout_graceful_shutdown=20,
    )


def run_gateway(cfg: GatewayConfig, *, reuse_port: bool = False) -> None:
    """Serve ``cfg``'s gateway in this process until SIGTERM/SIGINT."""
    import uvicorn

    from coe_gateway.server.app import create_app

    sock = listen_socket(cfg.server.host, cfg.server.port, reuse_port=reuse_port)
    server = uvicorn.Server(uvicorn_config(create_app(cfg), cfg.server))
    server.run(sockets=[sock])


def _become_child(parent_pid: int) -> None:
    """In a child of :class:`ProcessGroup`: own process group, die with the parent."""
    os.setpgid(0, 0)
    signal_on_parent_death(signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the line above
        sys.exit(1)


def pin_to_core(index: int) -> int:
    """Pin this process to the ``index``-th allowed core (modulo their number)."""
    cores = sorted(os.sched_getaffinity(0))
    core = cores[index % len(cores)]
    os.sched_setaffinity(0, {core})
    return core


def gateway_main(cfg_json: str, index: int, parent_pid: int) -> None:
    """Entry point of gateway process ``index`` (a spawned child)."""
    _become_child(parent_pid)
    cfg = GatewayConfig.model_validate_json(cfg_json)
    configure_logging(cfg.server.log_level)
    if cfg.server.cpu_affinity:
        log.info("gateway process %d pinned to core %d", index, pin_to_core(index))
    run_gateway(cfg, reuse_port=True)


def workers_main(cfg_json: str, parent_pid: int) -> None:
    """Entry point of the workers service (a spawned child)."""
    from coe_gateway.workers.service import run_workers

    _become_child(parent_pid)
    cfg = GatewayConfig.model_validate_json(cfg_json)
    configure_logging(cfg.server.log_level)
    sys.exit(run_workers(cfg))


class Child:
    """One child process of a :class:`ProcessGroup`, restartable."""

    def __init__(self, name: str, target: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.name, self.target, self.args = name, target, args
        self.process: multiprocessing.process.BaseProcess | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.next_start: float | None = None

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.process = ctx.Process(target=self.target, args=self.args, name=self.name)
        self.process.start()
        self.started_at, self.next_start = time.monotonic(), None
        log.info("started %s (pid %s)", self.name, self.process.pid)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def signal(self, sig: int) -> None:
        if self.alive and self.pid is not None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def join(self, deadline: float) -> None:
        """Wait until it exits or ``deadline`` (monotonic); then SIGKILL it."""
        if self.process is None:
            return
        self.process.join(max(0.0, deadline - time.monotonic()))
        if self.process.is_alive():
            log.warning("%s did not stop in time: killing it", self.name)
            self.process.kill()
            self.process.join(5)


class ProcessGroup:
    """``server.workers`` gateway processes on one port, and the workers service they
    attach to (``auto`` mode, when the config has local experts)."""

    def __init__(self, cfg: GatewayConfig) -> None:
        self.cfg = cfg
        cfg_json = cfg.model_dump_json()
        me = os.getpid()
        self.gateways = [Child(f"gateway-{i}", gateway_main, (cfg_json, i, me))
                         for i in range(cfg.server.workers)]
        launches = cfg.workers.mode == "auto" and local_experts(cfg)  # "attach": not ours
        self.service = Child("workers-service", workers_main, (cfg_json, me)) if launches else None
        self.service_ready = False
        self._stop = threading.Event()

    def _backoff(self, child: Child) -> float:
        w = self.cfg.workers
        if time.monotonic() - child.started_at > 300:  # it ran fine for a while
            return w.restart_backoff_s
        return float(min(w.restart_backoff_s * 2 ** min(child.restarts, 16),
                         w.restart_backoff_max_s))

    def _revive(self, child: Child) -> None:
        """Schedule, or do, the restart of a child that exited."""
        now = time.monotonic()
        if child.next_start is None:
            code = child.process.exitcode if child.process else None
            delay = self._backoff(child)
            child.next_start = now + delay
            log.warning("%s exited with %s; restarting in %.1fs", child.name, code, delay)
        elif now >= child.next_start:
            child.restarts += 1
            child.start()

    def _watch_service(self) -> bool:
        """False when the workers service failed before it was ever ready."""
        if self.service is None:
            return True
        if not self.service_ready:
            self.service_ready = self._published_ready()
        if self.service.alive:
            return True
        if not self.service_ready:
            code = self.service.process.exitcode if self.service.process else None
            log.error("the workers service could not start (exit %s); stopping", code)
            return False
        self._revive(self.service)
        return True

    def _published_ready(self) -> bool:
        try:
            fleet = read_fleet_file(fleet_path(self.cfg))
        except (FileNotFoundError, FleetFileError):
            return False
        return fleet.ready and fleet.publisher.pid == (self.service.pid if self.service else None)

    def _on_signal(self, signum: int, frame: object) -> None:
        log.info("signal %d: stopping every process", signum)
        self._stop.set()

    def run(self) -> int:
        """Start everything, supervise until SIGTERM/SIGINT, stop everything: 0, or 1 when
        the workers service could not start."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        if self.service is not None:
            self.service.start()
        for g in self.gateways:
            g.start()
        code = 0
        while not self._stop.wait(0.2):
            if not self._watch_service():
                code = 1
                break
            for g in self.gateways:
                if not g.alive:
                    self._revive(g)
        self.stop()
        return code

    def stop(self) -> None:
        """SIGTERM the gateway processes, then the workers service; wait for all."""
        for g in self.gateways:
            g.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for g in self.gateways:
            g.join(deadline)
        if self.service is not None:
            self.service.signal(signal.SIGTERM)
            self.service.join(time.monotonic() + STOP_TIMEOUT_S)


def check_port(host: str, port: int) -> None:
    """OSError when ``host:port`` cannot be listened on with ``SO_REUSEPORT``."""
    listen_socket(host, port, reuse_port=True).close()
