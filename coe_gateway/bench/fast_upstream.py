"""A fast fake OpenAI upstream for ``coe-gateway bench compare``: a raw ``asyncio.Protocol``
HTTP/1.1 keep-alive server on uvloop, in its own process.

It parses just enough HTTP (request line, headers, a ``content-length`` or chunked body) and
answers:

* ``POST /v1/chat/completions``: a ``chat.completion`` with ``usage`` (``max_tokens`` words of
  ``echo``), or, with ``"stream": true``, an SSE stream sent with
  ``transfer-encoding: chunked``: a role chunk and the first content chunk at once, then one
  content chunk every ``chunk_interval_s``, then the finish chunk, a usage chunk when
  ``stream_options.include_usage`` is set, and ``data: [DONE]``;
* ``GET /v1/models`` and ``GET /health``.

Run it with ``python -m coe_gateway.bench.fast_upstream --port P [--chunk-interval-ms 20]``;
it prints ``ready`` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from coe_gateway.bench.http1 import body_framing, chunk_size

JSON_HEADERS = b"content-type: application/json\r\n"
SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
DONE_EVENT = b"data: [DONE]\n\n"
REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 411: b"Length Required"}


@dataclass(frozen=True)
class UpstreamSettings:
    """How the fake upstream answers."""

    chunk_interval_s: float = 0.02
    model: str = "x"


def http_response(status: int, body: bytes, keep_alive: bool = True) -> bytes:
    """A complete HTTP/1.1 response with a JSON body."""
    conn = b"" if keep_alive else b"connection: close\r\n"
    return (b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Error")) + JSON_HEADERS + conn
            + b"content-length: %d\r\n\r\n" % len(body) + body)


def http_chunk(data: bytes) -> bytes:
    """One chunk of a chunked transfer-encoded body."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


def sse_event(obj: dict[str, Any]) -> bytes:
    """``data: <json>`` and the blank line that ends an SSE event."""
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def completion_body(model: str, words: int, prompt_tokens: int, created: int) -> bytes:
    """The JSON of a non-streaming ``chat.completion``."""
    text = " ".join(["echo"] * words)
    return json.dumps({
        "id": "chatcmpl-fast", "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": words,
                  "total_tokens": prompt_tokens + words},
    }, separators=(",", ":")).encode()


@dataclass(frozen=True)
class StreamFrames:
    """Pre-built HTTP chunks of one model's stream: first (role + first word), next word,
    and the closing frames with or without usage."""

    first: bytes
    word: bytes
    finish: bytes

    @classmethod
    def build(cls, model: str, created: int) -> StreamFrames:
        base = {"id": "chatcmpl-fast", "object": "chat.completion.chunk", "created": created,
                "model": model}

        def delta(d: dict[str, str], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}

        first = sse_event(delta({"role": "assistant", "content": ""})) + sse_event(
            delta({"content": "echo"}))
        return cls(first=http_chunk(first), word=http_chunk(sse_event(delta({"content": " echo"}))),
                   finish=sse_event(delta({}, "stop")))

    def closing(self, model: str, created: int, usage: tuple[int, int] | None) -> bytes:
        """Finish event, optional usage event, ``[DONE]``, and the end of the chunked body."""
        body = self.finish
        if usage is not None:
            prompt, completion = usage
            body += sse_event({"id": "chatcmpl-fast", "object": "chat.completion.chunk",
                               "created": created, "model": model, "choices": [],
                               "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                         "total_tokens": prompt + completion}})
        return http_chunk(body + DONE_EVENT) + b"0\r\n\r\n"


@dataclass
class ResponseCache:
    """Pre-built response bytes shared by every connection of one server."""

    settings: UpstreamSettings
    created: int = field(default_factory=lambda: int(time.time()))
    completions: dict[tuple[str, int, int], bytes] = field(default_factory=dict)
    frames: dict[str, StreamFrames] = field(default_factory=dict)

    def completion(self, model: str, words: int, prompt_tokens: int) -> bytes:
        key = (model, words, prompt_tokens)
        out = self.completions.get(key)
        if out is None:
            if len(self.completions) > 1024:
                self.completions.clear()
            out = http_response(200, completion_body(model, words, prompt_tokens, self.created))
            self.completions[key] = out
        return out

    def stream_frames(self, model: str) -> StreamFrames:
        out = self.frames.get(model)
        if out is None:
            out = self.frames[model] = StreamFrames.build(model, self.created)
        return out

    def models(self) -> bytes:
        return http_response(200, json.dumps({"object": "list", "data": [
            {"id": self.settings.model, "object": "model", "owned_by": "fake"}]}).encode())


@dataclass
class _Request:
    method: bytes
    path: bytes
    body: bytes
    keep_alive: bool


def parse_request(buf: bytearray) -> tuple[_Request | None, int]:
    """The first complete request in ``buf`` and the bytes it used; ``(None, 0)`` while
    incomplete. Raises ValueError on a request this server cannot read."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > 65536:
            raise ValueError("header too large")
        return None, 0
    lines = bytes(buf[:end]).split(b"\r\n")
    method, path, version = lines[0].split(b" ", 2)
    length, chunked, connection = body_framing(lines[1:])
    length = max(length, 0)
    keep_alive = version != b"HTTP/1.0" if connection is None else connection
    start = end + 4
    if chunked:
        body, used = _dechunk(buf, start)
        if body is None:
            return None, 0
        return _Request(method, path, body, keep_alive), used
    if len(buf) < start + length:
        return None, 0
    return _Request(method, path, bytes(buf[start:start + length]), keep_alive), start + length


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes | None, int]:
    """Decode a chunked body starting at ``pos``: (body, end offset), or (None, 0)."""
    parts: list[bytes] = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None, 0
        size = chunk_size(buf[pos:eol])
        pos = eol + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n", pos)
            while trailer_end >= 0 and trailer_end != pos:  # skip trailer lines
                pos = trailer_end + 2
                trailer_end = buf.find(b"\r\n", pos)
            if trailer_end < 0:
                return None, 0
            return b"".join(parts), trailer_end + 2
        if len(buf) < pos + size + 2:
            return None, 0
        parts.append(bytes(buf[pos:pos + size]))
        pos += size + 2


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive client connection; requests are answered in order."""

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache
        self.settings = cache.settings
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._process()

    def _process(self) -> None:
        while not self.streaming and self.transport is not None:
            try:
                request, used = parse_request(self.buf)
            except ValueError:
                self.transport.write(http_response(400, b'{"error":{"message":"bad request"}}',
                                                   keep_alive=False))
                self.transport.close()
                return
            if request is None:
                return
            del self.buf[:used]
            self._answer(request)

    def _answer(self, request: _Request) -> None:
        assert self.transport is not None
        path = request.path.split(b"?", 1)[0]
        if path == b"/v1/chat/completions" and request.method == b"POST":
            self._chat(request)
        elif path == b"/health":
            self.transport.write(http_response(200, b"{}"))
        elif path in (b"/v1/models", b"/models"):
            self.transport.write(self.cache.models())
        else:
            self.transport.write(http_response(404, b'{"error":{"message":"not found"}}'))
        if not request.keep_alive and not self.streaming and self.transport is not None:
            self.transport.close()

    def _chat(self, request: _Request) -> None:
        assert self.transport is not None
        try:
            body = json.loads(request.body)
            model = str(body.get("model") or self.settings.model)
            words = max(1, int(body.get("max_tokens") or body.get("max_completion_tokens") or 8))
        except (ValueError, TypeError, AttributeError):
            self.transport.write(http_response(400, b'{"error":{"message":"invalid json"}}'))
            return
        prompt_tokens = max(1, len(request.body) // 4)
        if not body.get("stream"):
            self.transport.write(self.cache.completion(model, words, prompt_tokens))
            return
        options = body.get("stream_options") or {}
        usage = (prompt_tokens, words) if options.get("include_usage") else None
        self._stream(model, words, usage, request.keep_alive)

    def _stream(self, model: str, words: int, usage: tuple[int, int] | None,
                keep_alive: bool) -> None:
        """Send the head and first frames now, then one word per interval on a timer."""
        assert self.transport is not None
        frames = self.cache.stream_frames(model)
        self.streaming = True
        self.transport.write(SSE_HEAD + frames.first)
        start = self.loop.time()
        interval = self.settings.chunk_interval_s

        def tick(sent: int) -> None:
            if self.transport is None:
                return
            if sent < words:
                self.transport.write(frames.word)
                sent += 1
            if sent < words:
                self.loop.call_at(start + sent * interval, tick, sent)
                return
            self.transport.write(frames.closing(model, self.cache.created, usage))
            self.streaming = False
            if not keep_alive:
                self.transport.close()
                return
            self._process()

        if words > 1:
            self.loop.call_at(start + interval, tick, 1)
        else:
            tick(1)


async def serve(host: str, port: int, settings: UpstreamSettings) -> None:
    """Listen until cancelled."""
    loop = asyncio.get_running_loop()
    cache = ResponseCache(settings)
    server = await loop.create_server(lambda: UpstreamProtocol(cache), host, port, backlog=4096,
                                      reuse_address=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m coe_gateway.bench.fast_upstream --port P``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunk-interval-ms", type=float, default=20.0)
    parser.add_argument("--model", default="x")
    args = parser.parse_args(argv)
    settings = UpstreamSettings(chunk_interval_s=args.chunk_interval_ms / 1e3, model=args.model)
    try:
        import uvloop
    except ImportError:  # still correct, only slower
        asyncio.run(serve(args.host, args.port, settings))
        return
    uvloop.run(serve(args.host, args.port, settings))


if __name__ == "__main__":
    main()
