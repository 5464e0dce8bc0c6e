"""``POST /v1/chat/completions`` as a raw ASGI endpoint: the hot path of the gateway.

No framework between the server and the pipeline: the body is read from ``receive`` (413
past ``server.max_request_bytes``), parsed once into a :class:`~coe_gateway.protocol.ChatRequest`,
served by the :class:`~coe_gateway.gateway.Gateway`, and the reply's bytes go straight to
``send``. A stream runs beside a watcher of ``receive``: when the client goes away the
stream is cancelled, which settles its attempt (the spend of what was generated is booked)
and closes the upstream call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from coe_gateway.errors import GatewayError, RequestError
from coe_gateway.protocol import ChatRequest
from coe_gateway.relay import Reply
from coe_gateway.server.auth import key_from_headers
from coe_gateway.sse import dumps

if TYPE_CHECKING:
    from coe_gateway.server.runtime import Runtime

log = logging.getLogger("coe_gateway.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = (b"content-type", b"application/json")
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


class ChatEndpoint:
    """The chat-completions endpoint of one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = self.rt
        try:
            tenant = rt.tenancy.authenticate(key_from_headers(scope["headers"]))
            raw = await read_body(scope, receive, rt.cfg.server.max_request_bytes)
            reply = await rt.gateway.chat(ChatRequest.parse(raw), tenant)
        except GatewayError as exc:
            rt.metrics.errors.labels(exc.error_type, str(exc.code)).inc()
            await send_error(send, exc)
            return
        except Exception:
            log.exception("unhandled error on POST /v1/chat/completions")
            await send_error(send, GatewayError("The gateway hit an internal error; it is logged."))
            return
        if reply.stream is None:
            await send_json(send, 200, reply.body or b"{}", _headers(reply))
            return
        await send_stream(send, receive, reply)


async def read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes:
    """The whole request body (413 as soon as it passes ``max_bytes``)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > max_bytes:
            raise _too_large(int(value), max_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError("The client closed the connection before sending the body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(size, max_bytes)
        chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(size: int, max_bytes: int) -> RequestError:
    err = RequestError(f"The request body is {size} bytes; the limit is {max_bytes}.")
    err.status_code = 413
    return err


def _headers(reply: Reply) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode("latin-1", "replace")) for k, v in reply.headers().items()]


async def send_json(send: Send, status: int, body: bytes,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [JSON_TYPE, (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: GatewayError) -> None:
    """The OpenAI error body of ``exc`` (with ``retry-after`` for 402/429)."""
    headers = []
    retry = exc.extra.get("retry_after_s")
    if retry is not None:
        headers.append((b"retry-after", str(retry).encode()))
    await send_json(send, exc.status_code, dumps(exc.to_body()), headers)


async def send_stream(send: Send, receive: Receive, reply: Reply) -> None:
    """Relay the reply's SSE bytes; a client disconnect cancels the relay."""
    assert reply.stream is not None
    stream = reply.stream
    await send({"type": "http.response.start", "status": 200,
                "headers": [*SSE_HEADERS, *_headers(reply)]})

    async def pump() -> None:
        async for chunk in stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    pumping = asyncio.ensure_future(pump())
    watching = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((pumping, watching), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pumping, watching):
            if not task.done():
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
    if pumping.done() and not pumping.cancelled() and pumping.exception() is not None:
        log.error("stream relay failed", exc_info=pumping.exception())


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
