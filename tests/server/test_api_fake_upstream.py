"""The HTTP API end to end over fake upstreams (real HTTP, real gateway, fake models):
routing headers and extension field, streaming, models list, metrics, bad input -> 4xx with
an OpenAI-style body, dead upstreams -> 502/503/504 with the gateway still serving."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from coe_gateway.config import GatewayConfig
from coe_gateway.server.app import create_app
from coe_gateway.testing.fake_upstream import FakeUpstream
from coe_gateway.testing.servers import free_port, serve_in_thread


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    log_path = tmp_path_factory.mktemp("log") / "routing.jsonl"
    with serve_in_thread(FakeUpstream("cheap-model")) as cheap, \
            serve_in_thread(FakeUpstream("strong-model")) as strong:
        cfg = GatewayConfig.model_validate({
            "experts": [
                {"name": "cheap", "backend": "openai", "model": "x", "urls": [f"{cheap}/v1"],
                 "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.1},
                 "context_length": 512, "quality_prior": 0.5},
                {"name": "strong", "backend": "openai", "model": "x", "urls": [f"{strong}/v1"],
                 "price": {"input_per_mtok": 10, "output_per_mtok": 30},
                 "context_length": 4096, "capabilities": ["text", "tools"]},
                {"name": "dead", "backend": "openai", "model": "x",
                 "urls": [f"http://127.0.0.1:{free_port()}/v1"]},
            ],
            "routing": {
                "default_router": "prior",
                "routers": [
                    {"name": "prior", "kind": "prior",
                     "options": {"priors": {"cheap": 0.5, "strong": 0.9, "dead": 0.99}}},
                ],
                "policy": {"kind": "trade-off", "params": {"lam": 0.01}},
                "routing_log": str(log_path),
            },
        })
        with serve_in_thread(create_app(cfg)) as url:
            yield {"url": url, "log": str(log_path)}


def wait_for_record(path: Path, query: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The last routing-log record of ``query`` (the log is written by its own thread, so
    a record lands shortly after the response)."""
    deadline = time.monotonic() + timeout_s
    while True:
        recs = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        mine = [x for x in recs if x["query"] == query]
        if mine or time.monotonic() > deadline:
            assert mine, f"no routing-log record of {query!r} in {path}"
            return mine[-1]
        time.sleep(0.02)


@pytest.fixture
def client(gateway: dict[str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway['url']}/v1", api_key="unused", max_retries=0)


def test_fake_upstream_auto_routes_and_says_why(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hello"}], max_tokens=4)
    out = raw.parse()
    # dead has the best prior but no healthy replica; strong beats cheap at lam=0.01
    assert raw.headers["x-coe-expert"] == "strong"
    assert raw.headers["x-coe-router"] == "prior"
    routing = out.model_extra["coe_routing"]  # type: ignore[index]
    assert routing["expert"] == "strong" and routing["ranking"][0] == "strong"
    assert set(routing["predicted"]) == {"cheap", "strong", "dead"}
    assert routing["policy"]["kind"] == "trade-off"
    assert out.model == "strong"
    assert out.choices[0].message.content == "echo echo echo echo"


def test_fake_upstream_expert_by_name_and_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="cheap", messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo echo echo"
    assert chunks[0].model_extra["coe_routing"]["expert"] == "cheap"  # type: ignore[index]
    assert all(c.usage is None for c in chunks)  # the caller did not ask for usage


def test_fake_upstream_stream_usage_when_asked(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "hi"}], max_tokens=2, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2


def test_fake_upstream_models_lists_experts_and_routers(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids == ["auto", "router:prior", "cheap", "strong", "dead"]


def test_fake_upstream_tools_restrict_to_capable_experts(gateway: dict[str, str]) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    r = httpx.post(f"{gateway['url']}/v1/chat/completions", json={
        "model": "auto", "messages": [{"role": "user", "content": "x"}], "tools": tools})
    assert r.status_code == 200 and r.headers["x-coe-expert"] == "strong"


@pytest.mark.parametrize(
    ("payload", "status", "param", "code"),
    [
        ("{not json", 400, None, None),
        ("[1, 2]", 400, None, None),
        ({"model": "auto"}, 400, "messages", None),
        ({"model": "auto", "messages": []}, 400, "messages", None),
        ({"model": "auto", "messages": [{"role": "user", "content": 5}]}, 400,
         "messages[0].content", None),
        ({"model": "auto", "messages": [{"role": "user", "content": "x"}],
          "temperature": "hot"}, 400, "temperature", None),
        ({"model": "gpt-17", "messages": [{"role": "user", "content": "x"}]}, 404, "model",
         "model_not_found"),
        ({"model": "cheap", "messages": [{"role": "user", "content": "word " * 3000}]}, 400,
         "messages", "context_length_exceeded"),
        ({"model": "auto", "messages": [{"role": "user", "content": "word " * 30000}]}, 400,
         "messages", "context_length_exceeded"),
        ({"model": "dead", "messages": [{"role": "user", "content": "x"}]}, 503, None,
         "upstream_unavailable"),
    ],
)
def test_fake_upstream_bad_input_gets_openai_error(
    gateway: dict[str, str], payload: object, status: int, param: str | None, code: str | None
) -> None:
    content = payload if isinstance(payload, str) else json.dumps(payload)
    r = httpx.post(f"{gateway['url']}/v1/chat/completions", content=content,
                   headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert err["message"]
    assert err["param"] == param
    assert err["code"] == code


def test_fake_upstream_openai_client_sees_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="auto", messages=[])


def test_fake_upstream_failure_gives_502_and_gateway_stays_up(gateway: dict[str, str]) -> None:
    url = f"{gateway['url']}/v1/chat/completions"
    r = httpx.post(url, json={"model": "cheap", "messages": [{"role": "user", "content": "fail:500"}]})
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"
    r = httpx.post(url, json={"model": "cheap", "messages": [{"role": "user", "content": "ok"}]})
    assert r.status_code == 200


def test_fake_upstream_routed_request_falls_back(gateway: dict[str, str]) -> None:
    # strong (first choice) fails with 500; one fallback -> cheap answers
    r = httpx.post(f"{gateway['url']}/v1/chat/completions", json={
        "model": "auto", "messages": [{"role": "user", "content": "fail:500"}]})
    # both fake upstreams fail on this prompt, so the last error comes back as 502
    assert r.status_code == 502
    metrics = httpx.get(f"{gateway['url']}/metrics").text
    assert 'coe_fallbacks_total{from_expert="strong",to_expert="cheap"}' in metrics


def test_fake_upstream_health_ready_metrics(gateway: dict[str, str]) -> None:
    health = httpx.get(f"{gateway['url']}/health").json()
    assert health["experts"]["dead"][0]["healthy"] is False
    assert health["experts"]["cheap"][0]["healthy"] is True
    ready = httpx.get(f"{gateway['url']}/ready")
    assert ready.status_code == 503 and ready.json()["unavailable"] == ["dead"]
    text = httpx.get(f"{gateway['url']}/metrics").text
    for name in ("coe_requests_total", "coe_request_latency_seconds", "coe_tokens_total",
                 "coe_expert_choices_total", "coe_errors_total", "coe_healthy_replicas"):
        assert name in text
    assert 'coe_healthy_replicas{expert="dead"} 0.0' in text


def test_fake_upstream_unknown_route_is_openai_404(gateway: dict[str, str]) -> None:
    r = httpx.get(f"{gateway['url']}/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_fake_upstream_routing_log_records_decisions(
    gateway: dict[str, str], client: openai.OpenAI
) -> None:
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "log me"}])
    rec = wait_for_record(Path(gateway["log"]), "log me")
    assert rec["expert"] == "strong" and rec["router"] == "prior" and rec["status"] == 200
    assert rec["completion_tokens"] == 8 and rec["cost_usd"] > 0
    assert set(rec) >= {"ts", "request_id", "predicted", "ranking", "latency_s", "outcome"}
