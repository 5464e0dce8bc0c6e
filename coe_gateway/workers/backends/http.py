"""Any OpenAI-compatible HTTP server (our vLLM workers, other endpoints), over the lean
keep-alive client of :mod:`.wire`: the request body sent as the bytes the gateway built, the
answer read as bytes (a body) or relayed event by event (a stream).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from coe_gateway.config import ExpertConfig
from coe_gateway.errors import (
    GatewayError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from coe_gateway.sse import Body, Event, split_events
from coe_gateway.workers.backends.base import Backend, ChatResult, Endpoint, register_backend
from coe_gateway.workers.backends.errors import map_status
from coe_gateway.workers.backends.wire import Origin, Pool, Response, WireError


class HttpBackend(Backend):
    """An OpenAI-compatible server at ``base_url`` (ending in ``/v1``).

    ``timeout_s`` bounds the wait for the answer's head, for a whole non-streamed body, and
    for each piece of a stream; connecting is bounded by ``connect_timeout_s``.
    """

    def __init__(self, name: str, base_url: str, *, timeout_s: float = 120.0,
                 api_key: str | None = None, max_connections: int = 1024,
                 connect_timeout_s: float = 5.0) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        origin = Origin.parse(self.base_url)
        self.pool = Pool(origin, limit=max_connections, connect_timeout_s=connect_timeout_s)
        auth = f"authorization: Bearer {api_key}\r\n" if api_key else ""
        self._post_headers = f"content-type: application/json\r\n{auth}".encode()
        self._get_headers = auth.encode()
        prefix = origin.prefix
        self._chat_path = f"{prefix}/chat/completions"
        root = prefix[:-3] if prefix.endswith("/v1") else None
        # vLLM's /health at the server root; endpoints without it: the model list
        self._health_paths = ([f"{root}/health"] if root is not None else []) + [f"{prefix}/models"]

    async def chat(self, payload: bytes, *, stream: bool) -> ChatResult:
        request = self.pool.request_bytes("POST", self._chat_path, self._post_headers, payload)
        response = await self._send(request, self.timeout_s)
        try:
            if response.status != 200:
                raise map_status(self.name, response.status, await response.read())
            if not stream:
                return Body(await response.read())
        except WireError as exc:
            raise self._map(exc) from None
        except GatewayError:
            raise
        except BaseException:
            response.release()
            raise
        return self._events(response)

    async def _send(self, request: bytes, timeout_s: float) -> Response:
        try:
            return await self.pool.request(request, timeout_s=timeout_s)
        except WireError as exc:
            raise self._map(exc) from None

    def _map(self, exc: WireError) -> UpstreamError:
        """Unreachable (refused, closed before answering) is 503, no answer in time 504,
        a connection lost mid-answer 502."""
        if exc.kind == "timeout":
            return UpstreamTimeoutError(f"expert {self.name} did not answer in time ({exc})")
        if exc.kind == "connect" or not exc.received:
            return UpstreamUnavailableError(f"expert {self.name} is unreachable: {exc}")
        return UpstreamError(f"expert {self.name}: {exc}")

    async def _events(self, response: Response) -> AsyncIterator[Event]:
        """The stream's events until ``[DONE]``; a stream that ends without it broke."""
        buffer = bytearray()
        pieces = response.pieces()
        try:
            async for piece in pieces:
                buffer += piece
                for event in split_events(buffer):
                    if event.is_done:
                        return
                    yield event
        except WireError as exc:
            raise self._map(exc) from None
        finally:
            await pieces.aclose()
        raise UpstreamError(f"expert {self.name}: the stream ended before [DONE]")

    async def health(self) -> bool:
        """``GET /health`` at the server root (vLLM's); on a 404, ``GET /v1/models``."""
        for path in self._health_paths:
            request = self.pool.request_bytes("GET", path, self._get_headers, b"")
            try:
                response = await self.pool.request(request, timeout_s=3.0)
                await response.read()
            except WireError:
                return False
            if response.status != 404:
                return response.status == 200
        return False

    async def aclose(self) -> None:
        await self.pool.close()


@register_backend("openai")
@register_backend("vllm")
def http_backend(expert: ExpertConfig, index: int, endpoint: Endpoint) -> Backend:
    """``openai`` endpoints and our own vLLM workers speak the same HTTP API."""
    if endpoint.url is None:
        raise ValueError(f"expert {expert.name}: backend {expert.backend} needs a URL")
    return HttpBackend(f"{expert.name}#{index}", endpoint.url, timeout_s=expert.timeout_s,
                       api_key=endpoint.api_key)
