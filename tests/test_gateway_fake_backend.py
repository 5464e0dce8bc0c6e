"""The pipeline on in-memory fake backends (coe_gateway.testing.fake_backend): strategies and
attempts, streams failing before and after the first byte, empty streams, missing usage,
client disconnects, several attempts per request, spend = the sum of the attempts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from coe_gateway.budget import Tenant
from coe_gateway.errors import NoEligibleExpertError, UpstreamError
from coe_gateway.protocol import ChatRequest
from coe_gateway.relay import Reply
from coe_gateway.routing_log import RoutingLog
from coe_gateway.testing.fake_backend import FakeBackend, Script, fake_config, fake_gateway

MSG = [{"role": "user", "content": "hello"}]


def req(**kw: Any) -> ChatRequest:
    return ChatRequest({"model": "auto", "messages": MSG, **kw})


async def read(reply: Reply) -> list[bytes]:
    assert reply.stream is not None
    return [chunk async for chunk in reply.stream]


def events(chunks: list[bytes]) -> list[Any]:
    return [json.loads(c[6:]) for c in chunks if c != b"data: [DONE]\n\n"]


def routing(reply: Reply) -> dict[str, Any]:
    assert reply.body is not None
    out: dict[str, Any] = json.loads(reply.body)["coe_routing"]
    return out


def attempts(gw: Any, outcome: str) -> float:
    total = 0.0
    for metric in gw.metrics.attempts.collect():
        for s in metric.samples:
            if s.name.endswith("_total") and s.labels["outcome"] == outcome:
                total += s.value
    return total


async def test_fake_backend_body_carries_routing_and_one_attempt() -> None:
    gw = fake_gateway({"cheap": FakeBackend(), "strong": FakeBackend()})
    reply = await gw.chat(req())
    assert reply.expert == "strong"  # highest prior at lam 0
    body = json.loads(reply.body or b"")
    assert body["model"] == "strong" and body["choices"][0]["message"]["content"]
    r = body["coe_routing"]
    assert r["strategy"] == {"kind": "fallback", "fallbacks": 1}
    assert [(a["expert"], a["verdict"], a["status"]) for a in r["attempts"]] == [
        ("strong", "accepted", 200)]
    assert r["attempts"][0]["completion_tokens"] == 3 and r["attempts"][0]["cost_usd"] > 0
    assert attempts(gw, "accepted") == 1


async def test_fake_backend_failure_before_first_byte_falls_back() -> None:
    strong = FakeBackend("strong", Script(fail_status=500))
    gw = fake_gateway({"cheap": FakeBackend(), "strong": strong})
    for stream in (False, True):
        reply = await gw.chat(req(stream=stream))
        assert reply.expert == "cheap"
        if stream:
            first = events(await read(reply))[0]
            tried = first["coe_routing"]["attempts"]
        else:
            tried = routing(reply)["attempts"]
        assert [(a["expert"], a["verdict"]) for a in tried] == [
            ("strong", "failed"), ("cheap", "accepted")]
        assert tried[0]["status"] == 502 and "scripted 500" in tried[0]["error"]
    assert attempts(gw, "failed") == 2 and attempts(gw, "accepted") == 2


async def test_fake_backend_single_strategy_never_falls_back() -> None:
    gw = fake_gateway({"cheap": FakeBackend(), "strong": FakeBackend("s", Script(fail_status=503))})
    with pytest.raises(UpstreamError) as info:
        await gw.chat(req(coe={"strategy": "single"}))
    assert info.value.status_code == 503
    assert len(gw.pool.replicas("cheap")[0].backend.calls) == 0  # type: ignore[attr-defined]


async def test_fake_backend_empty_stream_is_a_failed_attempt_not_a_broken_reply() -> None:
    # before the fix the relay raised after the last (absent) chunk and no [DONE] came
    gw = fake_gateway({"cheap": FakeBackend(), "strong": FakeBackend("s", Script(empty=True))})
    chunks = await read(await gw.chat(req(stream=True)))
    assert chunks[-1] == b"data: [DONE]\n\n"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in events(chunks)
                   if c.get("choices")) == "echo echo echo"
    only = fake_gateway({"strong": FakeBackend("s", Script(empty=True))})
    with pytest.raises(UpstreamError, match="empty stream"):  # a clean 502, never half an SSE
        await only.chat(req(stream=True))


async def test_fake_backend_failure_after_first_byte_ends_with_error_event_and_done() -> None:
    gw = fake_gateway({"strong": FakeBackend("s", Script(text="a b c d", fail_after=3))})
    chunks = await read(await gw.chat(req(stream=True)))
    assert chunks[-1] == b"data: [DONE]\n\n"
    objs = events(chunks)
    assert objs[-1]["error"]["code"] == "upstream_error"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in objs[:-1]) == "a b"


async def test_fake_backend_stream_relays_upstream_bytes_verbatim() -> None:
    backend = FakeBackend("s")
    gw = fake_gateway({"strong": backend})
    chunks = await read(await gw.chat(req(stream=True, stream_options={"include_usage": True})))
    assert chunks[0].startswith(b'data: {"coe_routing":')
    assert chunks[1:-1] == backend.sent[1:]  # the rest: byte for byte what the backend sent
    assert events(chunks)[-1]["usage"]["completion_tokens"] == 3


async def test_fake_backend_usage_chunk_only_when_asked_but_always_billed() -> None:
    gw = fake_gateway({"strong": FakeBackend()})
    objs = events(await read(await gw.chat(req(stream=True))))
    assert all(o.get("choices") for o in objs)  # the usage-only chunk was not relayed
    usage = await gw.tenancy.guard.ledger.usage("anonymous", {})
    assert usage[0].spent_usd > 0  # but it was billed by it


async def test_fake_backend_missing_usage_bills_the_whole_reservation() -> None:
    gw = fake_gateway({"strong": FakeBackend("s", Script(usage=False))})
    reply = await gw.chat(req(max_tokens=10))
    a = routing(reply)["attempts"][0]
    held = gw.cfg.expert("strong").price
    assert a["cost_usd"] > held.cost(0, 10) * 0.99  # fail closed: the maximum was booked


async def test_fake_backend_client_disconnect_settles_and_closes_upstream() -> None:
    backend = FakeBackend("s", Script(text="a b c d e f", hang_after=3))
    gw = fake_gateway({"strong": backend})
    reply = await gw.chat(req(stream=True))
    assert reply.stream is not None
    got = []

    async def consume() -> None:
        assert reply.stream is not None
        async for c in reply.stream:
            got.append(c)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    assert len(got) == 3 and backend.open_streams == 1  # stalled upstream, client waiting
    task.cancel()  # what the server does when the client goes away
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert backend.open_streams == 0  # the upstream call was closed
    assert gw.pool.replicas("strong")[0].in_flight == 0
    usage = await gw.tenancy.guard.ledger.usage("anonymous", {})
    assert usage[0].reserved_usd == 0 and usage[0].spent_usd > 0  # settled, by what was sent


async def test_fake_backend_spend_is_the_sum_of_attempts_and_each_is_logged(
    tmp_path: Path,
) -> None:
    cfg = fake_config(["a", "b", "c"], routing={"fallbacks": 2})
    backends = {"a": FakeBackend(), "b": FakeBackend("b", Script(fail_status=502)),
                "c": FakeBackend("c", Script(fail_status=500))}
    log = RoutingLog(tmp_path / "log.jsonl")
    gw = fake_gateway(backends, cfg, routing_log=log)
    tenant = Tenant(name="t", budgets={"day_usd": 1.0})
    reply = await gw.chat(req(), tenant)
    r = routing(reply)
    assert [a["expert"] for a in r["attempts"]] == ["c", "b", "a"]
    assert [a["verdict"] for a in r["attempts"]] == ["failed", "failed", "accepted"]
    usage = await gw.tenancy.guard.ledger.usage("t", tenant.limits)
    assert usage[0].spent_usd == pytest.approx(sum(a["cost_usd"] for a in r["attempts"]))
    assert usage[0].reserved_usd == 0
    log.flush()
    recs = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(x["attempt"], x["expert"], x["final"]) for x in recs] == [
        (0, "c", False), (1, "b", False), (2, "a", True)]
    assert len({x["request_id"] for x in recs}) == 1
    log.close()


async def test_fake_backend_capability_missing_is_400_not_503() -> None:
    gw = fake_gateway({"cheap": FakeBackend(), "strong": FakeBackend()})
    image = [{"role": "user", "content": [
        {"type": "text", "text": "what is it"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
    with pytest.raises(NoEligibleExpertError) as info:
        await gw.chat(ChatRequest({"model": "auto", "messages": image}))
    assert info.value.status_code == 400 and info.value.param == "messages"
    assert "vision" in info.value.message
    tools = [{"type": "function", "function": {"name": "f"}}]
    with pytest.raises(NoEligibleExpertError) as info:
        await gw.chat(req(tools=tools))
    assert info.value.status_code == 400 and info.value.param == "tools"
    assert info.value.code == "capability_not_available"


async def test_fake_backend_unknown_strategy_is_400() -> None:
    gw = fake_gateway({"strong": FakeBackend()})
    with pytest.raises(Exception) as info:
        await gw.chat(req(coe={"strategy": "telepathy"}))
    assert getattr(info.value, "status_code", None) == 400
