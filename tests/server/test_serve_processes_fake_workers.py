"""`coe-gateway serve` over fake workers: with `server.workers: 2`, two gateway processes
answer on one port (SO_REUSEPORT) over one workers service, a killed gateway process is
replaced, SIGTERM stops everything and leaves no worker (nor does a SIGKILL of `serve`); a
workers service that cannot start makes `serve` exit 1; with one process, `serve` launches
its workers itself."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from coe_gateway.server.processes import listen_socket, uvicorn_config
from coe_gateway.testing.fake_workers import fake_workers_config
from coe_gateway.testing.servers import free_port, wait_http
from coe_gateway.workers.fleet_file import read_fleet_file


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_serve(tmp_path: Path, cfg: dict[str, Any]) -> subprocess.Popen[bytes]:
    config = tmp_path / "gw.yaml"
    config.write_text(yaml.safe_dump(cfg))
    with (tmp_path / "serve.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "coe_gateway", "serve", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def serve(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    cfg = fake_workers_config(tmp_path, experts=("e",))
    cfg["server"]["workers"] = request.param
    proc = start_serve(tmp_path, cfg)
    url = f"http://127.0.0.1:{cfg['server']['port']}"
    try:
        wait_http(f"{url}/ready", timeout_s=60, proc=proc)
        yield {"proc": proc, "url": url, "port": cfg["server"]["port"], "cfg": cfg}
    finally:
        family = psutil.Process(proc.pid).children(recursive=True) if running(proc.pid) else []
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in family:
            if running(p.pid):
                p.kill()


def listeners(parent: int, port: int) -> set[int]:
    """The children of ``parent`` listening on ``port``: the gateway processes."""
    out = set()
    for child in psutil.Process(parent).children():
        try:
            conns = child.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
            out.add(child.pid)
    return out


def until_listening(parent: int, port: int, count: int, without: int | None = None,
                    timeout_s: float = 60.0) -> set[int]:
    """Until ``count`` children of ``parent`` (none of them ``without``) listen on ``port``."""
    deadline = time.monotonic() + timeout_s
    while len(now := listeners(parent, port) - {without}) != count:
        assert time.monotonic() < deadline, f"listening: {now}, expected {count}"
        time.sleep(0.2)
    return now


def answering_pid(port: int, candidates: set[int]) -> int:
    """Send one request on a new connection; the pid of the process that accepted it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        mine = s.getsockname()[1]
        for pid in candidates:
            for c in psutil.Process(pid).net_connections(kind="tcp"):
                if c.raddr and c.raddr.port == mine and c.laddr.port == port:
                    return pid
    raise AssertionError("no gateway process holds the connection")


def chat(url: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=10, json={
        "model": "e", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})


@pytest.mark.parametrize("serve", [2], indirect=True)
def test_fake_workers_two_gateway_processes_share_the_port(serve: dict[str, Any]) -> None:
    proc, port, url = serve["proc"], serve["port"], serve["url"]
    gateways = until_listening(proc.pid, port, 2)  # /ready answered: one of them is up
    service = read_fleet_file(serve["cfg"]["workers"]["fleet_file"]).publisher.pid
    assert service in {c.pid for c in psutil.Process(proc.pid).children()}
    assert service not in gateways
    answered = Counter(answering_pid(port, gateways) for _ in range(50))
    assert set(answered) == gateways, answered  # the kernel spread them over both
    assert all(chat(url).status_code == 200 for _ in range(5))

    victim = next(iter(gateways))
    psutil.Process(victim).kill()  # a gateway process dies: serve starts another
    assert victim not in until_listening(proc.pid, port, 2, without=victim)
    wait_http(f"{url}/ready", timeout_s=30)
    assert chat(url).status_code == 200

    family = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    workers = [r.pid for r in read_fleet_file(serve["cfg"]["workers"]["fleet_file"])
               .experts["e"]]
    assert set(workers) <= set(family)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    time.sleep(0.5)
    assert not [p for p in family if running(p)], "processes left after SIGTERM"


@pytest.mark.parametrize("serve", [2], indirect=True)
def test_fake_workers_killed_serve_leaves_no_process(serve: dict[str, Any]) -> None:
    proc = serve["proc"]
    family = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    assert len(family) >= 4  # two gateway processes, the workers service, its worker
    proc.kill()  # no chance to forward anything: the kernel's PR_SET_PDEATHSIG does it
    proc.wait()
    deadline = time.monotonic() + 30
    while [p for p in family if running(p)]:
        assert time.monotonic() < deadline, [p for p in family if running(p)]
        time.sleep(0.2)


@pytest.mark.parametrize("serve", [1], indirect=True)
def test_fake_workers_one_gateway_process_launches_its_workers(serve: dict[str, Any]) -> None:
    proc, url = serve["proc"], serve["url"]
    assert chat(url).status_code == 200
    pid = httpx.get(f"{url}/health").json()["experts"]["e"][0]["pid"]
    assert psutil.Process(pid).ppid() == proc.pid  # launched by the gateway itself
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    assert not running(pid)


def test_fake_workers_service_that_cannot_start_makes_serve_exit_1(tmp_path: Path) -> None:
    cfg = fake_workers_config(tmp_path)
    cfg["server"]["workers"] = 2
    cfg["workers"]["python"] = str(tmp_path / "no-such-python")
    proc = start_serve(tmp_path, cfg)
    try:
        assert proc.wait(timeout=60) == 1
    finally:
        proc.kill()
    assert "workers service could not start" in (tmp_path / "serve.log").read_text()


def test_reuse_port_sockets_and_uvicorn_settings() -> None:
    port = free_port()
    a = listen_socket("127.0.0.1", port, reuse_port=True)
    b = listen_socket("127.0.0.1", port, reuse_port=True)  # a second listener on one port
    try:
        with pytest.raises(OSError):
            listen_socket("127.0.0.1", port, reuse_port=False).close()
    finally:
        a.close()
        b.close()
    from coe_gateway.config import ServerConfig

    c = uvicorn_config(object(), ServerConfig())
    assert (c.loop, c.http, c.access_log, c.proxy_headers, c.server_header, c.date_header) == (
        "uvloop", "httptools", False, False, False, False)


def test_serve_rejects_several_processes_that_would_each_launch(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from coe_gateway.cli import build_app

    cfg = fake_workers_config(tmp_path)
    cfg["workers"]["mode"] = "launch"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(build_app(), ["serve", "-c", str(tmp_path / "c.yaml"), "-w", "2"])
    assert result.exit_code == 2 and "server.workers > 1" in result.output
