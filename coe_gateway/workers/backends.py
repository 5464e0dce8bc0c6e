"""Backends: how one request reaches one replica of an expert.

``Backend.chat(body)`` takes an OpenAI chat-completion body (``model`` already set to the
upstream name) and returns the response dict, or, when ``body["stream"]`` is true, an async
iterator of chunk dicts. Every failure is an :class:`~coe_gateway.errors.UpstreamError`
subclass (or a :class:`~coe_gateway.errors.RequestError` when the upstream rejected the
request itself with a 4xx), so the pipeline can fall back to another expert.

- :class:`HttpBackend`: any OpenAI-compatible server (our vLLM workers, other endpoints),
  over one pooled ``httpx.AsyncClient`` per replica. Its transport is aiohttp's connection
  pool (``httpx-aiohttp``, the transport the OpenAI SDK offers): the httpx API with about
  half the CPU per request of httpx's own transport, measured here (2.0 -> 1.1 ms); pass
  ``transport="httpx"`` for the pure-httpx one.
- :class:`LiteLLMBackend`: a remote provider model through ``litellm.acompletion``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx

from coe_gateway.errors import (
    ContextLengthError,
    RequestError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

ChatResult = dict[str, Any] | AsyncIterator[dict[str, Any]]


class Backend(ABC):
    """One replica's transport."""

    name: str

    @abstractmethod
    async def chat(self, body: dict[str, Any]) -> ChatResult:
        """The response dict, or an async iterator of chunk dicts when ``body['stream']``."""

    async def health(self) -> bool:
        """True when the replica answers its health check."""
        return True

    async def aclose(self) -> None:
        """Release connections."""


def _upstream_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:500]
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return str(err.get("message") or err.get("detail") or err)[:500]
    return str(err)[:500]


def map_status(name: str, response: httpx.Response) -> Exception:
    """An upstream HTTP error response as a gateway error."""
    msg = _upstream_message(response)
    status = response.status_code
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


def _aiohttp_transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    from httpx_aiohttp import AiohttpTransport

    return AiohttpTransport(limits=limits)


def map_transport(name: str, exc: httpx.HTTPError) -> UpstreamError:
    """A transport failure as a gateway error. A connect timeout means unreachable (503):
    the aiohttp transport reports a refused connection that way too."""
    if isinstance(exc, httpx.ConnectTimeout):
        return UpstreamUnavailableError(f"expert {name} is unreachable: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError(f"expert {name} did not answer in time ({type(exc).__name__})")
    if isinstance(exc, (httpx.ConnectError, httpx.RemoteProtocolError)):
        return UpstreamUnavailableError(f"expert {name} is unreachable: {exc}")
    return UpstreamError(f"expert {name}: transport error: {exc}")


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """Chunk dicts from SSE ``data:`` lines, until ``[DONE]``."""
    async for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            yield json.loads(data)


class HttpBackend(Backend):
    """An OpenAI-compatible HTTP server at ``base_url`` (ending in ``/v1``)."""

    def __init__(
        self, name: str, base_url: str, *, timeout_s: float = 120.0, api_key: str | None = None,
        max_connections: int = 256, transport: Literal["aiohttp", "httpx"] = "aiohttp",
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=max_connections)
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            limits=limits,
            transport=_aiohttp_transport(limits) if transport == "aiohttp" else None,
        )

    async def chat(self, body: dict[str, Any]) -> ChatResult:
        if body.get("stream"):
            return await self._open_stream(body)
        try:
            response = await self.client.post("/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise map_transport(self.name, exc) from exc
        if response.status_code != 200:
            raise map_status(self.name, response)
        try:
            return response.json()
        except json.JSONDecodeError as exc:
            raise UpstreamError(f"expert {self.name} returned invalid JSON") from exc

    async def _open_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Send the request and wait for the status line, so that errors surface before the
        first byte goes to the client (and the pipeline can still fall back)."""
        request = self.client.build_request("POST", "/chat/completions", json=body)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise map_transport(self.name, exc) from exc
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            raise map_status(self.name, response)
        return self._chunks(response)

    async def _chunks(self, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        try:
            async for chunk in iter_sse(response.aiter_lines()):
                yield chunk
        except httpx.HTTPError as exc:
            raise map_transport(self.name, exc) from exc
        except json.JSONDecodeError as exc:
            raise UpstreamError(f"expert {self.name} sent an invalid stream chunk") from exc
        finally:
            await response.aclose()

    async def health(self) -> bool:
        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        try:
            r = await self.client.get(f"{root}/health", timeout=3.0)
            if r.status_code == 404:  # endpoints without /health: ask for the model list
                r = await self.client.get("/models", timeout=3.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    async def aclose(self) -> None:
        await self.client.aclose()


class LiteLLMBackend(Backend):
    """A remote provider model through litellm (``pip install coe-gateway[remote]``)."""

    def __init__(self, name: str, model: str, *, timeout_s: float = 120.0,
                 api_key: str | None = None, api_base: str | None = None) -> None:
        self.name, self.model, self.timeout_s = name, model, timeout_s
        self.api_key, self.api_base = api_key, api_base

    async def chat(self, body: dict[str, Any]) -> ChatResult:
        import litellm

        kwargs = {k: v for k, v in body.items() if k != "model"}
        kwargs.update(model=self.model, timeout=self.timeout_s)
        if self.api_key:
            kwargs["api_key"] = self.api_key
        if self.api_base:
            kwargs["api_base"] = self.api_base
        try:
            result = await litellm.acompletion(**kwargs)
        except Exception as exc:  # litellm raises its own tree; map by status
            raise self._map(exc) from exc
        if body.get("stream"):
            return self._chunks(result)
        return result.model_dump(exclude_none=True)

    async def _chunks(self, stream: Any) -> AsyncIterator[dict[str, Any]]:
        try:
            async for chunk in stream:
                yield chunk.model_dump(exclude_none=True)
        except Exception as exc:
            raise self._map(exc) from exc

    def _map(self, exc: Exception) -> Exception:
        status = getattr(exc, "status_code", None)
        msg = f"expert {self.name} (litellm {self.model}): {exc}"
        causes = {type(e).__name__ for e in _chain(exc)}
        if causes & {"Timeout", "TimeoutException", "ReadTimeout"} or status in (408, 504):
            return UpstreamTimeoutError(msg)
        if causes & {"APIConnectionError", "ServiceUnavailableError", "ConnectError"} or (
            status in (429, 503)
        ):
            return UpstreamUnavailableError(msg)
        if status is not None and 400 <= status < 500:
            if "context" in str(exc).lower():
                return ContextLengthError(msg, param="messages")
            return RequestError(msg)
        return UpstreamError(msg)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes/contexts (litellm wraps transport errors several times)."""
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out
