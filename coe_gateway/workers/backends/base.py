"""The backend contract and its registry.

A backend is how one request reaches one replica of an expert. ``Backend.chat(payload,
stream=...)`` takes the request body as JSON bytes (``model`` already the upstream's name) and
returns a :class:`~coe_gateway.sse.Body` or, when streaming, an async iterator of
:class:`~coe_gateway.sse.Event` (raw SSE events, ``[DONE]`` not included). A streamed call
returns only once the upstream accepted the request (status 200), so a refusal is raised
before the first byte reaches the client and the strategy can still try another expert.

Every failure is an :class:`~coe_gateway.errors.UpstreamError` subclass (or a
:class:`~coe_gateway.errors.RequestError` when the upstream rejected the request itself with
a 4xx); see :mod:`coe_gateway.errors` for the tree.

Backend kinds (``openai``, ``vllm``, ``litellm``, and whatever registers next) are entries of
:data:`BACKENDS`: a factory from the expert's config and one endpoint to a backend. Adding a
kind is one module that calls :func:`register_backend`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from coe_gateway.config import ExpertConfig
from coe_gateway.sse import Body, Event

EventStream = AsyncIterator[Event]
ChatResult = Body | EventStream


class Backend(ABC):
    """One replica's transport."""

    name: str

    @abstractmethod
    async def chat(self, payload: bytes, *, stream: bool) -> ChatResult:
        """The answer as bytes: a :class:`Body`, or the stream's events when ``stream``."""

    async def health(self) -> bool:
        """True when the replica answers its health check."""
        return True

    async def aclose(self) -> None:
        """Release connections."""


@dataclass(frozen=True)
class Endpoint:
    """Where one replica of an expert is reached: a base URL (ending in ``/v1``; None for a
    provider reached by name, such as a litellm model without ``api_base``), and its key."""

    url: str | None
    api_key: str | None = None


BackendFactory = Callable[[ExpertConfig, int, Endpoint], Backend]
BACKENDS: dict[str, BackendFactory] = {}
"""Backend kind -> factory. Filled by :func:`register_backend` at import of each kind."""


def register_backend(kind: str) -> Callable[[BackendFactory], BackendFactory]:
    """Decorator: make ``factory`` the backend of experts with ``backend: <kind>``. Whether
    such an expert is launched locally is for the worker-kind registry to say
    (:func:`coe_gateway.workers.kinds.is_local`)."""

    def add(factory: BackendFactory) -> BackendFactory:
        BACKENDS[kind] = factory
        return factory

    return add


def build_backend(expert: ExpertConfig, index: int, endpoint: Endpoint) -> Backend:
    """The backend of replica ``index`` of ``expert`` at ``endpoint``."""
    try:
        factory = BACKENDS[expert.backend]
    except KeyError:
        raise ValueError(f"expert {expert.name}: unknown backend kind {expert.backend!r}; "
                         f"known: {sorted(BACKENDS)}") from None
    return factory(expert, index, endpoint)


def configured_endpoints(expert: ExpertConfig) -> list[Endpoint]:
    """The endpoints an expert's config names (``urls``, key from ``api_key_env``)."""
    key = os.environ.get(expert.api_key_env) if expert.api_key_env else None
    return [Endpoint(url, key) for url in expert.urls]
