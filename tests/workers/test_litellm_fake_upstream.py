"""The litellm backend, through the real litellm library, against the fake upstream as an
OpenAI-compatible provider (``openai/<model>`` with ``api_base``)."""

from __future__ import annotations

import json

import pytest

from coe_gateway.errors import UpstreamError, UpstreamUnavailableError
from coe_gateway.sse import Body
from coe_gateway.testing.fake_upstream import FakeUpstream
from coe_gateway.testing.servers import free_port, serve_in_thread
from coe_gateway.workers.backends import LiteLLMBackend

BODY = {"model": "ignored", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


def payload(**kw: object) -> bytes:
    return json.dumps({**BODY, **kw}).encode()


async def test_litellm_fake_upstream_plain_and_stream() -> None:
    with serve_in_thread(FakeUpstream()) as url:
        b = LiteLLMBackend("remote", "openai/fake", api_key="sk-test", api_base=f"{url}/v1")
        out = await b.chat(payload(), stream=False)
        assert isinstance(out, Body)
        assert out.json()["choices"][0]["message"]["content"] == "echo echo echo"
        assert out.json()["usage"]["completion_tokens"] == 3
        stream = await b.chat(payload(stream=True), stream=True)
        assert not isinstance(stream, Body)
        chunks = [e.json() async for e in stream]
        text = "".join((c["choices"][0].get("delta") or {}).get("content") or ""
                       for c in chunks if c.get("choices"))
        assert text == "echo echo echo"


async def test_litellm_fake_upstream_errors_are_mapped() -> None:
    with serve_in_thread(FakeUpstream()) as url:
        b = LiteLLMBackend("remote", "openai/fake", api_key="sk-test", api_base=f"{url}/v1")
        with pytest.raises(UpstreamError):
            await b.chat(payload(messages=[{"role": "user", "content": "fail:500"}]),
                         stream=False)
    dead = LiteLLMBackend("remote", "openai/fake", api_key="sk-test",
                          api_base=f"http://127.0.0.1:{free_port()}/v1", timeout_s=5)
    with pytest.raises(UpstreamUnavailableError):
        await dead.chat(payload(), stream=False)
