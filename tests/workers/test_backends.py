"""Error mapping of upstream answers, and the bare-aiohttp backend against the fake upstream
over real HTTP: bodies and SSE events as bytes, failures before and after the first byte."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from coe_gateway.errors import (
    ContextLengthError,
    RequestError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from coe_gateway.sse import Body
from coe_gateway.testing.fake_upstream import FakeUpstream
from coe_gateway.testing.servers import free_port, serve_in_thread
from coe_gateway.workers.backends import (
    BACKENDS,
    HttpBackend,
    map_status,
    map_transport,
)


@pytest.mark.parametrize(
    ("status", "message", "cls", "http"),
    [
        (400, "This model's maximum context length is 2048 tokens", ContextLengthError, 400),
        (400, "bad temperature", RequestError, 400),
        (404, "model not found", RequestError, 400),
        (429, "slow down", UpstreamUnavailableError, 503),
        (503, "loading", UpstreamUnavailableError, 503),
        (504, "gateway timeout", UpstreamTimeoutError, 504),
        (500, "boom", UpstreamError, 502),
    ],
)
def test_status_mapping(status: int, message: str, cls: type, http: int) -> None:
    err = map_status("e", status, json.dumps({"error": {"message": message}}).encode())
    assert type(err) is cls
    assert err.status_code == http
    assert message in str(err)


def test_transport_mapping() -> None:
    assert isinstance(map_transport("e", asyncio.TimeoutError()), UpstreamTimeoutError)
    assert isinstance(map_transport("e", aiohttp.ServerDisconnectedError()),
                      UpstreamUnavailableError)
    assert isinstance(map_transport("e", aiohttp.ClientPayloadError("cut")), UpstreamError)


def test_backend_kinds_are_registered() -> None:
    assert {"openai", "vllm", "litellm"} <= set(BACKENDS)
    from coe_gateway.workers.kinds import WORKER_KINDS

    assert "vllm" in WORKER_KINDS and not {"openai", "litellm"} & set(WORKER_KINDS)


def body(**kw: object) -> bytes:
    return json.dumps({"model": "fake", "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 3, **kw}).encode()


async def test_fake_upstream_plain_stream_and_errors() -> None:
    with serve_in_thread(FakeUpstream()) as url:
        b = HttpBackend("e", f"{url}/v1", timeout_s=0.5)
        out = await b.chat(body(), stream=False)
        assert isinstance(out, Body)
        assert out.json()["choices"][0]["message"]["content"] == "echo echo echo"
        stream = await b.chat(body(stream=True), stream=True)
        assert not isinstance(stream, Body)
        events = [e async for e in stream]
        assert all(e.raw.startswith(b"data: ") and e.raw.endswith(b"\n\n") for e in events)
        assert not any(e.is_done for e in events)  # [DONE] is the gateway's to send
        text = "".join(c["choices"][0]["delta"].get("content", "")
                       for c in (e.json() for e in events) if c["choices"])
        assert text == "echo echo echo"
        with pytest.raises(UpstreamError):
            await b.chat(body(messages=[{"role": "user", "content": "fail:500"}]), stream=False)
        with pytest.raises(UpstreamUnavailableError):  # a streamed 503 fails before any byte
            await b.chat(body(stream=True, messages=[{"role": "user", "content": "fail:503"}]),
                         stream=True)
        with pytest.raises(UpstreamTimeoutError):
            await b.chat(body(messages=[{"role": "user", "content": "sleep:2"}]), stream=False)
        assert await b.health()
        await b.aclose()


async def test_unreachable_endpoint_is_unavailable() -> None:
    b = HttpBackend("e", f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(UpstreamUnavailableError):
        await b.chat(body(), stream=False)
    assert not await b.health()
    await b.aclose()
