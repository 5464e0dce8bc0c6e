"""Backends: how one request reaches one replica of an expert (see :mod:`.base` for the
contract). Importing this package registers the built-in kinds: ``openai`` and ``vllm``
(:mod:`.http`), ``litellm`` (:mod:`.litellm`)."""

from coe_gateway.workers.backends.base import (
    BACKENDS,
    Backend,
    ChatResult,
    Endpoint,
    EventStream,
    build_backend,
    configured_endpoints,
    register_backend,
)
from coe_gateway.workers.backends.errors import map_status, map_transport
from coe_gateway.workers.backends.http import HttpBackend
from coe_gateway.workers.backends.litellm import LiteLLMBackend

__all__ = [
    "BACKENDS", "Backend", "ChatResult", "Endpoint", "EventStream", "HttpBackend",
    "LiteLLMBackend", "build_backend", "configured_endpoints", "map_status", "map_transport",
    "register_backend",
]
