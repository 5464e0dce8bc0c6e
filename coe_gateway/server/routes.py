"""The HTTP API besides the hot path: ``GET /v1/models``, ``/health``, ``/ready``,
``/metrics`` (FastAPI routes). ``POST /v1/chat/completions`` is the raw ASGI endpoint of
:mod:`coe_gateway.server.chat`."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from coe_gateway.protocol import ModelCard, ModelList
from coe_gateway.server.runtime import Runtime

log = logging.getLogger("coe_gateway.server")

api = APIRouter()


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


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
