"""The raw chat endpoint over real HTTP with in-memory fake backends put into the app's pool:
a client that disconnects mid-stream gets its attempt settled and the upstream call closed;
requests no expert can serve are 400s the OpenAI SDK does not retry."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from coe_gateway.server.app import GatewayApp, create_app
from coe_gateway.testing.fake_backend import FakeBackend, Script, fake_config
from coe_gateway.testing.servers import serve_in_thread


@pytest.fixture
def served() -> Iterator[tuple[str, GatewayApp, dict[str, FakeBackend]]]:
    app = create_app(fake_config(["cheap", "strong"]))
    backends = {"cheap": FakeBackend("cheap"),
                "strong": FakeBackend("strong", Script(text="a b c d e f", hang_after=3))}
    for r in app.runtime.pool.replicas():
        r.backend = backends[r.expert]
    with serve_in_thread(app) as url:
        for r in app.runtime.pool.replicas():  # after start-up's own health checks
            r.healthy, r.state = True, "ready"
        yield url, app, backends


def metric(app: GatewayApp, name: str, **labels: str) -> float:
    value = app.runtime.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_fake_backend_client_disconnect_mid_stream_settles(
        served: tuple[str, GatewayApp, dict[str, FakeBackend]]) -> None:
    url, app, backends = served
    with httpx.stream("POST", f"{url}/v1/chat/completions", json={
            "model": "strong", "stream": True,
            "messages": [{"role": "user", "content": "go"}]}) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        first = next(line for line in lines if line)
        assert json.loads(first[6:])["coe_routing"]["expert"] == "strong"
    # the client went away while the upstream stalled after three events
    deadline = time.monotonic() + 10
    while backends["strong"].open_streams and time.monotonic() < deadline:
        time.sleep(0.02)
    assert backends["strong"].open_streams == 0
    assert app.runtime.pool.replicas("strong")[0].in_flight == 0
    while not metric(app, "coe_requests_total", model="strong", expert="strong",
                     status="499") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert metric(app, "coe_requests_total", model="strong", expert="strong", status="499") == 1


def test_fake_backend_image_without_vision_expert_is_400(
        served: tuple[str, GatewayApp, dict[str, FakeBackend]]) -> None:
    url, _, _ = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    content: Any = [{"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="auto", messages=[{"role": "user",
                                                                "content": content}])
    assert info.value.code == "capability_not_available"
    assert info.value.param == "messages"


def test_fake_backend_plain_body_over_http(
        served: tuple[str, GatewayApp, dict[str, FakeBackend]]) -> None:
    url, _, _ = served
    r = httpx.post(f"{url}/v1/chat/completions", json={
        "model": "cheap", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.headers["x-coe-expert"] == "cheap"
    assert r.headers["content-length"] == str(len(r.content))
    assert r.json()["coe_routing"]["attempts"][0]["verdict"] == "accepted"
    big = httpx.post(f"{url}/v1/chat/completions", content=b"{" + b" " * 5_000_000 + b"}")
    assert big.status_code == 413 and big.json()["error"]["message"]
