"""The HTTP API: ``POST /v1/chat/completions`` (JSON or SSE), ``GET /v1/models``,
``/health``, ``/ready``, ``/metrics``.

The chat body is parsed here (not by FastAPI's signature validation) so that malformed JSON,
a wrong type or a missing field each get a 400 with an OpenAI-style body naming the field.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from coe_gateway.errors import GatewayError, RequestError
from coe_gateway.gateway import Reply
from coe_gateway.protocol import ChatCompletionRequest, ModelCard, ModelList
from coe_gateway.server.auth import authenticate
from coe_gateway.server.errors import error_response, validation_error
from coe_gateway.server.runtime import Runtime

log = logging.getLogger("coe_gateway.server")

api = APIRouter()


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def parse_chat_request(request: Request, max_bytes: int) -> ChatCompletionRequest:
    """The validated request body, or a RequestError naming what is wrong."""
    raw = await request.body()
    if len(raw) > max_bytes:
        err = RequestError(f"The request body is {len(raw)} bytes; the limit is {max_bytes}.")
        err.status_code = 413
        raise err
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(
            f"We could not parse the JSON body of your request ({exc}). The body must be a "
            "JSON object.") from None
    if not isinstance(data, dict):
        raise RequestError("The request body must be a JSON object.")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def sse_stream(reply: Reply) -> AsyncIterator[bytes]:
    """The reply's chunks as SSE; an error after the first byte becomes an error event."""
    assert reply.stream is not None
    try:
        async for chunk in reply.stream:
            yield _sse(chunk)
    except GatewayError as exc:
        log.warning("stream from %s broke: %s", reply.expert, exc.message)
        yield _sse(exc.to_body())
    yield b"data: [DONE]\n\n"


@api.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    rt = runtime(request)
    try:
        tenant = authenticate(request)
        body = await parse_chat_request(request, rt.cfg.server.max_request_bytes)
        reply = await rt.gateway.chat(body, tenant)
    except GatewayError as exc:
        rt.metrics.errors.labels(exc.error_type, str(exc.code)).inc()
        return error_response(exc)
    if reply.stream is not None:
        return StreamingResponse(sse_stream(reply), media_type="text/event-stream",
                                 headers={**reply.headers(), "cache-control": "no-cache"})
    return Response(json.dumps(reply.body, separators=(",", ":")),
                    media_type="application/json", headers=reply.headers())


@api.get("/v1/models")
async def list_models(request: Request) -> ModelList:
    rt = runtime(request)
    cards = [
        ModelCard(id=name, coe={"kind": "router", "router": rt.routers.resolve(name),
                                "policy": rt.policy.describe()})
        for name in rt.routers.model_names
    ]
    for e in rt.cfg.experts:
        cards.append(ModelCard(id=e.name, coe={
            "kind": "expert", "backend": e.backend, "available": rt.pool.is_available(e.name),
            "capabilities": e.capabilities, "context_length": e.context_length,
            "price_per_mtok": e.price.model_dump(),
        }))
    return ModelList(data=cards)


@api.get("/health")
async def health(request: Request) -> JSONResponse:
    """Liveness plus per-replica state; 200 while the gateway process serves."""
    rt = runtime(request)
    experts = {e: [r.describe() for r in rt.pool.replicas(e)] for e in rt.cfg.expert_names}
    return JSONResponse({"status": "ok", "experts": experts})


@api.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """200 when every expert has a healthy replica, else 503 naming the missing ones."""
    rt = runtime(request)
    missing = [e for e in rt.cfg.expert_names if not rt.pool.is_available(e)]
    return JSONResponse({"ready": not missing, "unavailable": missing},
                        status_code=503 if missing else 200)


@api.get("/metrics")
async def metrics(request: Request) -> Response:
    rt = runtime(request)
    rt.update_gauges()
    return Response(rt.metrics.render(), media_type=CONTENT_TYPE_LATEST)
