"""The FastAPI app factory. No module-level state: each app owns its :class:`Runtime`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from coe_gateway import __version__
from coe_gateway.config import GatewayConfig
from coe_gateway.server import errors, usage
from coe_gateway.server.routes import api
from coe_gateway.server.runtime import Runtime


def create_app(cfg: GatewayConfig, *, wait_ready: bool = False) -> FastAPI:
    """An app serving ``cfg``; workers start with the app's lifespan and stop with it.

    With ``wait_ready`` the app accepts no connection until every worker is ready; without
    it (the default) it serves at once and ``/ready`` answers 503 until they are."""
    runtime = Runtime(cfg, wait_ready=wait_ready)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await runtime.start()
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="coe-gateway", version=__version__, lifespan=lifespan)
    app.state.runtime = runtime
    errors.install(app)
    app.include_router(api)
    app.include_router(usage.router)
    return app
