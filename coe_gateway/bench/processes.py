"""The processes of ``coe-gateway bench compare``: which cores the server under test and the
harness get, starting a server pinned to its cores and waiting until it answers, stopping
it, and reading its process tree's CPU time and memory from ``/proc``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from coe_gateway.bench.settings import HOST

# -- the core plan ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CorePlan:
    """Which cores the server under test and the harness (upstream + load generator) use."""

    server: tuple[int, ...]
    harness: tuple[int, ...]

    @property
    def shared(self) -> bool:
        return bool(set(self.server) & set(self.harness))


def plan_cores(available: Sequence[int], server_processes: int = 1) -> CorePlan:
    """The server on the first ``server_processes`` cores, the harness on the rest; when
    there are not enough cores, the server gets them all and shares the last one."""
    cores = sorted(available)
    if len(cores) < 2:
        return CorePlan(tuple(cores), tuple(cores))
    if server_processes < len(cores):
        return CorePlan(tuple(cores[:server_processes]), tuple(cores[server_processes:]))
    return CorePlan(tuple(cores), (cores[-1],))


# -- watching a process tree ------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name (field 3 onwards), or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2:].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root``'s process tree, reaped children included."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mb(root: int) -> float:
    """Resident memory of ``root``'s process tree in MB (pages shared by forks count per
    process)."""
    pages = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, IndexError, ValueError):
            pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def wait_quiet(pid: int, limit_s: float = 15.0, busy_share: float = 0.1) -> float:
    """Until ``pid``'s tree uses under ``busy_share`` of a core over 0.25 s (a server still
    working off an abandoned backlog), at most ``limit_s``; returns the seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        before, t0 = cpu_seconds(pid), time.perf_counter()
        await asyncio.sleep(0.25)
        if (cpu_seconds(pid) - before) / (time.perf_counter() - t0) < busy_share:
            break
    return time.perf_counter() - start


# -- starting and stopping a server -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _log_tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float, log: Path,
              headers: dict[str, str] | None = None) -> None:
    """Until ``url`` answers 200; RuntimeError (with the log's tail) on timeout or exit."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before {url} answered:\n"
                               f"{_log_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0, headers=headers).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s:.0f}s:\n{_log_tail(log)}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()


@contextlib.contextmanager
def service(argv: Sequence[str], ready_url: str, cores: Sequence[int], log: Path,
            env: dict[str, str] | None = None, timeout_s: float = 120.0,
            headers: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` pinned to ``cores`` (its children inherit the pinning), wait for
    ``ready_url``, and stop its process group on exit."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
            # the harness starts servers from its only thread, before any load runs
            preexec_fn=functools.partial(os.sched_setaffinity, 0, set(cores)))  # noqa: PLW1509
    try:
        wait_http(ready_url, proc, timeout_s, log, headers)
        yield proc
    finally:
        stop_process(proc)
