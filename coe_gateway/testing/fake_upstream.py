"""A fake OpenAI-compatible upstream, for benchmarks and tests that are about the gateway,
not the model: it answers instantly (or after ``delay_s``) with a fixed echo reply.

It is a raw ASGI app (no framework) so that its own latency is tiny and stable, which is
what ``coe-gateway bench overhead`` needs to measure the gateway's added latency.

Behaviour by request: ``max_tokens`` = number of words streamed; the first user message
``"fail:<status>"`` returns that HTTP status; ``"sleep:<seconds>"`` waits first.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _completion(model: str, text: str, prompt_tokens: int) -> dict[str, Any]:
    n = len(text.split())
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n,
                  "total_tokens": prompt_tokens + n},
    }


def _chunks(model: str, text: str, prompt_tokens: int, usage: bool) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}
    words = text.split()
    out = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                 "finish_reason": None}]}]
    for i, w in enumerate(words):
        out.append({**base, "choices": [{"index": 0, "delta": {"content": (" " if i else "") + w},
                                         "finish_reason": None}]})
    out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        out.append({**base, "choices": [], "usage": {
            "prompt_tokens": prompt_tokens, "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words)}})
    return out


class FakeUpstream:
    """ASGI app: ``/v1/chat/completions``, ``/v1/models``, ``/health``."""

    def __init__(self, model: str = "fake", delay_s: float = 0.0) -> None:
        self.model, self.delay_s = model, delay_s
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path == "/health":
            await _send(send, 200, b"{}")
        elif path == "/v1/models":
            await _send(send, 200, json.dumps({"object": "list", "data": [
                {"id": self.model, "object": "model"}]}).encode())
        elif path == "/v1/chat/completions":
            await self._chat(receive, send)
        else:
            await _send(send, 404, b'{"error": {"message": "not found"}}')

    async def _chat(self, receive: Receive, send: Send) -> None:
        raw = b""
        while True:
            msg = await receive()
            raw += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        body = json.loads(raw)
        self.requests.append(body)
        first = str(body["messages"][0].get("content") or "")
        if first.startswith("fail:"):
            status = int(first.split(":")[1])
            await _send(send, status, json.dumps({"error": {"message": f"fake {status}"}}).encode())
            return
        delay = float(first.split(":")[1]) if first.startswith("sleep:") else self.delay_s
        if delay:
            await asyncio.sleep(delay)
        n = int(body.get("max_tokens") or body.get("max_completion_tokens") or 8)
        text = " ".join(["echo"] * n)
        prompt_tokens = max(1, len(raw) // 4)
        if not body.get("stream"):
            await _send(send, 200, json.dumps(_completion(body["model"], text, prompt_tokens)).encode())
            return
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for chunk in _chunks(body["model"], text, prompt_tokens, usage):
            await send({"type": "http.response.body", "more_body": True,
                        "body": b"data: " + json.dumps(chunk).encode() + b"\n\n"})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _send(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def app_factory() -> FakeUpstream:
    """For ``uvicorn --factory coe_gateway.testing.fake_upstream:app_factory``."""
    return FakeUpstream()
