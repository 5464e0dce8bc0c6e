"""A fused expert behind the gateway, for real: `coe-gateway serve` launches a `mot` worker
(`python -m coe_gateway.fusion.server` on an untrained fused model of the two shipped
experts, which answers exactly as its frozen primary SmolLM2); the official OpenAI client
asks for it by name, plain and streamed; `coe_routing` says the answer was fused and which
experts were active, and its price is the sum of its parts'. Stopping the gateway stops the
worker.

The parts (`fused_from`) are configured as `openai` experts at an address where nothing
listens: they are there for the fused expert's price and are never asked. Needs the prepared
checkpoints (`coe-gateway models prepare`).
"""

from __future__ import annotations

import gc
import os
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

from coe_gateway.config import DEFAULT_MODELS_DIR, expand
from coe_gateway.testing.servers import free_port, pid_alive, wait_http

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SMOL, GEMMA = "smollm2-135m-instruct", "gemma-3-270m"
FUSED = "mot"
ASK = [{"role": "user", "content": "What is the capital of France?"}]
PRICES = {SMOL: 0.05, GEMMA: 0.10}


def _save_untrained(out: Path) -> None:
    """An untrained fused model of the shipped experts in ``out`` (its experts freed after)."""
    from coe_gateway.fusion.config import MotConfig
    from coe_gateway.fusion.model import MixtureOfThoughts
    from coe_gateway.fusion.store import load_experts, save

    models_dir = Path(expand(DEFAULT_MODELS_DIR))
    if not (models_dir / GEMMA).exists():
        pytest.fail("the shipped checkpoints are missing: run `coe-gateway models prepare`")
    cfg = MotConfig(encoder={"kind": "static", "dim": 256})
    save(MixtureOfThoughts(load_experts(cfg, models_dir), cfg, 256), out, {"untrained": True})
    gc.collect()


def _config(tmp: Path, fused_dir: Path) -> dict:
    parts = [{"name": name, "backend": "openai", "model": name,
              "urls": [f"http://127.0.0.1:{free_port()}/v1"],
              "price": {"input_per_mtok": price, "output_per_mtok": price}}
             for name, price in PRICES.items()]
    fused = {"name": FUSED, "backend": "mot", "model": str(fused_dir),
             "fused_from": [SMOL, GEMMA], "cpu_threads": ["0-1"], "context_length": 2048}
    return {"experts": [*parts, fused],
            "server": {"port": free_port(), "log_level": "info"},
            "cache": {"enabled": False},
            "routing": {"routing_log": str(tmp / "routing.jsonl")},
            "workers": {"base_port": free_port() + 100, "log_dir": str(tmp / "logs"),
                        "fleet_file": str(tmp / "fleet.json"), "ready_timeout_s": 600,
                        "health_interval_s": 1.0}}


def _wait_fused_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 600
                        ) -> int:
    """Until the gateway says the mot worker is healthy (its parts never are); its pid."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        (replica,) = httpx.get(f"{url}/health", timeout=5).json()["experts"][FUSED]
        if replica["healthy"]:
            return int(replica["pid"])
        time.sleep(0.5)
    raise RuntimeError(f"the mot worker did not become healthy: {replica}")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("mot-gw")
    _save_untrained(tmp / "fused")
    cfg = _config(tmp, tmp / "fused")
    (tmp / "gw.yaml").write_text(yaml.safe_dump(cfg))
    log = (tmp / "gateway.log").open("wb")
    proc = subprocess.Popen(  # faulthandler: a stuck shutdown dumps its stacks on SIGABRT
        [sys.executable, "-m", "coe_gateway", "serve", "--config", str(tmp / "gw.yaml")],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    url = f"http://127.0.0.1:{cfg['server']['port']}"
    pid = None
    try:
        wait_http(f"{url}/health", timeout_s=900, proc=proc)
        pid = _wait_fused_healthy(url, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # say where it is stuck, then fail
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=30)
            log.close()
            tail = (tmp / "gateway.log").read_text(errors="replace")[-6000:]
            pytest.fail(f"the gateway did not stop within 60 s of SIGTERM; its log:\n{tail}")
        log.close()
        if pid is not None:
            time.sleep(1)
            assert not pid_alive(pid), "the mot worker outlived its gateway"


@pytest.fixture
def client(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0,
                         timeout=300)


def _fused_attempt(routing: dict) -> dict:
    (attempt,) = routing["attempts"]
    assert attempt["expert"] == FUSED and attempt["verdict"] == "accepted"
    assert attempt["fused"] == {"primary": SMOL, "active": [SMOL, GEMMA]}
    return attempt


def test_real_mot_worker_answers_through_the_gateway(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=FUSED, messages=ASK, max_tokens=8, temperature=0)  # type: ignore[arg-type]
    out = raw.parse()
    assert raw.headers["x-coe-expert"] == FUSED and out.model == FUSED
    assert "Paris" in (out.choices[0].message.content or "")
    assert out.usage is not None and 0 < out.usage.completion_tokens <= 8
    extra = out.model_extra or {}
    assert extra["coe_fusion"]["primary"] == SMOL and extra["coe_fusion"]["peer_tokens"] > 0
    attempt = _fused_attempt(extra["coe_routing"])
    price = sum(PRICES.values())  # the sum of its parts, per 1M tokens in and out
    tokens = out.usage.prompt_tokens + out.usage.completion_tokens
    assert attempt["cost_usd"] == pytest.approx(tokens * price / 1e6)


def test_real_mot_worker_streams_through_the_gateway(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model=FUSED, messages=ASK, max_tokens=8, temperature=0,  # type: ignore[arg-type]
        stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    first = chunks[0].model_extra or {}
    assert first["coe_fusion"]["active"] == [SMOL, GEMMA]
    _fused_attempt(first["coe_routing"])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
