"""Upstream HTTP failures as gateway errors (:mod:`coe_gateway.errors`)."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from coe_gateway.errors import (
    ContextLengthError,
    GatewayError,
    RequestError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)


def upstream_message(raw: bytes) -> str:
    """The message of an upstream error body (OpenAI ``{"error": {...}}``, FastAPI
    ``{"detail": ...}`` or plain text), at most 500 characters."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")[:500]
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return str(err.get("message") or err.get("detail") or err)[:500]
    return str(err)[:500]


def map_status(name: str, status: int, raw: bytes) -> GatewayError:
    """An upstream HTTP error response as a gateway error."""
    msg = upstream_message(raw)
    if 400 <= status < 500 and status not in (408, 429):
        lowered = msg.lower()
        if "context length" in lowered or "maximum context" in lowered or "too long" in lowered:
            return ContextLengthError(f"expert {name}: {msg}", param="messages")
        return RequestError(f"expert {name} rejected the request: {msg}")
    if status in (429, 503):
        return UpstreamUnavailableError(f"expert {name} is overloaded ({status}): {msg}")
    if status in (408, 504):
        return UpstreamTimeoutError(f"expert {name} timed out upstream ({status}): {msg}")
    return UpstreamError(f"expert {name} failed ({status}): {msg}")


def map_transport(name: str, exc: BaseException) -> UpstreamError:
    """An aiohttp transport failure as a gateway error: unreachable (refused, reset before an
    answer, connect timeout) is 503, no answer in time is 504, anything else 502."""
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError,
                        aiohttp.ConnectionTimeoutError)):
        return UpstreamUnavailableError(f"expert {name} is unreachable: {exc!r}")
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeoutError(f"expert {name} did not answer in time")
    if isinstance(exc, aiohttp.ClientOSError):
        return UpstreamUnavailableError(f"expert {name} is unreachable: {exc!r}")
    return UpstreamError(f"expert {name}: transport error: {exc!r}")
