"""A remote provider model through ``litellm.acompletion`` (``pip install coe-gateway[remote]``).

litellm returns its own objects; they become the same bytes an OpenAI-compatible server sends
(a body, SSE events), so the rest of the gateway sees one contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from coe_gateway.config import ExpertConfig
from coe_gateway.errors import (
    ContextLengthError,
    GatewayError,
    RequestError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from coe_gateway.sse import Body, Event, dumps, loads
from coe_gateway.workers.backends.base import Backend, ChatResult, Endpoint, register_backend


class LiteLLMBackend(Backend):
    """A litellm model string (``anthropic/claude-3-5-haiku``), optionally at ``api_base``."""

    def __init__(self, name: str, model: str, *, timeout_s: float = 120.0,
                 api_key: str | None = None, api_base: str | None = None) -> None:
        self.name, self.model, self.timeout_s = name, model, timeout_s
        self.api_key, self.api_base = api_key, api_base

    async def chat(self, payload: bytes, *, stream: bool) -> ChatResult:
        import litellm

        kwargs = {k: v for k, v in loads(payload).items() if k != "model"}
        kwargs.update(model=self.model, timeout=self.timeout_s)
        if self.api_key:
            kwargs["api_key"] = self.api_key
        if self.api_base:
            kwargs["api_base"] = self.api_base
        try:
            result = await litellm.acompletion(**kwargs)
        except Exception as exc:  # litellm raises its own tree; map by status
            raise self._map(exc) from exc
        if stream:
            return self._events(result)
        return Body(dumps(result.model_dump(exclude_none=True)))

    async def _events(self, stream: Any) -> AsyncIterator[Event]:
        try:
            async for chunk in stream:
                yield Event.of(chunk.model_dump(exclude_none=True))
        except Exception as exc:
            raise self._map(exc) from exc

    def _map(self, exc: Exception) -> GatewayError:
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


@register_backend("litellm")
def litellm_backend(expert: ExpertConfig, index: int, endpoint: Endpoint) -> Backend:
    return LiteLLMBackend(f"{expert.name}#{index}", expert.model, timeout_s=expert.timeout_s,
                          api_key=endpoint.api_key, api_base=endpoint.url)
