"""`coe-gateway workers` with fake workers: it publishes its workers in the fleet file, a
gateway in attach mode routes a real chat completion through a published worker, a killed
worker is restarted by the service and the gateway follows, SIGTERM leaves no worker; a
second service on the same fleet file, or workers that cannot start, exit 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from coe_gateway.config import load_config
from coe_gateway.server.app import create_app
from coe_gateway.testing.fake_workers import fake_workers_config
from coe_gateway.testing.servers import pid_alive, serve_in_thread, wait_http
from coe_gateway.workers.fleet_file import FleetFileError, FleetState, read_fleet_file


def write_config(tmp_path: Path, name: str, cfg: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_service(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "coe_gateway", "workers", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def until(what: str, check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def fleet_if(path: Path, ok: Callable[[FleetState], bool]) -> FleetState | None:
    try:
        fleet = read_fleet_file(path)
    except (FileNotFoundError, FleetFileError):
        return None
    return fleet if ok(fleet) else None


@pytest.fixture
def service(tmp_path: Path) -> Iterator[dict[str, Any]]:
    cfg = fake_workers_config(tmp_path, experts=("e",))
    config = write_config(tmp_path, "workers.yaml", cfg)
    proc = start_service(config, tmp_path / "service.log")
    try:
        yield {"cfg": cfg, "config": config, "proc": proc, "fleet": Path(cfg["workers"]["fleet_file"])}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def chat(url: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=10, json={
        "model": "e", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})


def replica_of(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/health", timeout=5).json()["experts"]["e"][0]  # type: ignore[no-any-return]


def test_fake_worker_published_attached_restarted_stopped(
        tmp_path: Path, service: dict[str, Any]) -> None:
    fleet_file, proc = service["fleet"], service["proc"]
    fleet = until("a ready fleet", lambda: fleet_if(fleet_file, lambda f: f.ready))
    assert fleet.publisher.pid == proc.pid
    (published,) = fleet.experts["e"]
    assert published.healthy and published.state == "ready" and pid_alive(published.pid)
    assert published.url.startswith("http://127.0.0.1:") and published.url.endswith("/v1")

    gw = {**service["cfg"], "workers": {**service["cfg"]["workers"], "mode": "attach"}}
    app = create_app(load_config(write_config(tmp_path, "gateway.yaml", gw)))
    with serve_in_thread(app) as url:
        wait_http(f"{url}/ready", timeout_s=10)
        answer = chat(url)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-coe-expert"] == "e"
        assert answer.json()["choices"][0]["message"]["content"] == "echo echo echo"
        assert replica_of(url)["pid"] == published.pid

        os.kill(published.pid, signal.SIGKILL)  # the service restarts it ...
        restarted = until("the restarted worker", lambda: fleet_if(
            fleet_file, lambda f: f.experts["e"][0].restarts == 1 and f.experts["e"][0].healthy))
        new_pid = restarted.experts["e"][0].pid
        assert new_pid != published.pid and pid_alive(new_pid)
        until("the gateway to follow", lambda: (r := replica_of(url))["pid"] == new_pid
              and r["healthy"])  # ... and the gateway picks the new state up
        assert chat(url).status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        assert 'coe_worker_restarts_total{expert="e"} 1.0' in metrics

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not pid_alive(new_pid)
        final = read_fleet_file(fleet_file)
        assert not final.ready and final.experts["e"][0].state == "stopped"
        until("the gateway to see the fleet gone",
              lambda: httpx.get(f"{url}/ready").status_code == 503, timeout_s=10)
        assert chat(url).status_code == 503


def test_second_fake_worker_service_on_one_fleet_file_exits_1(
        tmp_path: Path, service: dict[str, Any]) -> None:
    until("the first service's fleet", lambda: fleet_if(service["fleet"], lambda f: True))
    second = start_service(service["config"], tmp_path / "second.log")
    assert second.wait(timeout=30) == 1
    assert "another workers service" in (tmp_path / "second.log").read_text()
    assert service["proc"].poll() is None


def test_fake_workers_that_cannot_start_exit_1(tmp_path: Path) -> None:
    cfg = fake_workers_config(tmp_path)
    cfg["workers"]["python"] = str(tmp_path / "no-such-python")
    proc = start_service(write_config(tmp_path, "w.yaml", cfg), tmp_path / "s.log")
    assert proc.wait(timeout=30) == 1
    assert "cannot launch a worker" in (tmp_path / "s.log").read_text()


def test_workers_command_rejects_an_invalid_config(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from coe_gateway.cli import build_app

    bad = write_config(tmp_path, "bad.yaml", {"experts": [
        {"name": "e", "backend": "tgi", "model": "m"}]})
    result = CliRunner().invoke(build_app(), ["workers", "--config", str(bad)])
    assert result.exit_code == 2
    assert "experts[0].backend" in result.output and "unknown backend 'tgi'" in result.output
