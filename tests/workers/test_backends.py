"""Error mapping of upstream answers, against the fake upstream over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from coe_gateway.errors import (
    ContextLengthError,
    RequestError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from coe_gateway.testing.fake_upstream import FakeUpstream
from coe_gateway.testing.servers import free_port, serve_in_thread
from coe_gateway.workers.backends import HttpBackend, map_status, map_transport


def response(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message}})


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
    err = map_status("e", response(status, message))
    assert type(err) is cls
    assert err.status_code == http  # type: ignore[attr-defined]
    assert message in str(err)


def test_transport_mapping() -> None:
    req = httpx.Request("POST", "http://x")
    assert isinstance(map_transport("e", httpx.ReadTimeout("t", request=req)), UpstreamTimeoutError)
    assert isinstance(map_transport("e", httpx.ConnectError("c", request=req)),
                      UpstreamUnavailableError)


async def test_fake_upstream_plain_stream_and_errors() -> None:
    with serve_in_thread(FakeUpstream()) as url:
        b = HttpBackend("e", f"{url}/v1", timeout_s=0.5)
        body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        out = await b.chat(body)
        assert isinstance(out, dict) and out["choices"][0]["message"]["content"] == "echo echo echo"
        stream = await b.chat({**body, "stream": True})
        chunks = [c async for c in stream]  # type: ignore[union-attr]
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks
                       if c["choices"]) == "echo echo echo"
        with pytest.raises(UpstreamError):
            await b.chat({**body, "messages": [{"role": "user", "content": "fail:500"}]})
        with pytest.raises(UpstreamUnavailableError):  # a streamed 503 fails before any byte
            await b.chat({**body, "stream": True,
                          "messages": [{"role": "user", "content": "fail:503"}]})
        with pytest.raises(UpstreamTimeoutError):
            await b.chat({**body, "messages": [{"role": "user", "content": "sleep:2"}]})
        assert await b.health()
        await b.aclose()


async def test_unreachable_endpoint_is_unavailable() -> None:
    b = HttpBackend("e", f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(UpstreamUnavailableError):
        await b.chat({"model": "x", "messages": []})
    assert not await b.health()
    await b.aclose()
