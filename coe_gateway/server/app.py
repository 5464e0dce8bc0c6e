"""The ASGI app: the raw chat-completions endpoint in front, FastAPI for everything else.

No module-level state: each app owns its :class:`Runtime`. The hot path
(``POST /v1/chat/completions``) never enters FastAPI's routing, middleware or exception
machinery (:mod:`coe_gateway.server.chat`); ``/v1/models``, ``/v1/usage``, ``/health``,
``/ready``, ``/metrics``, the OpenAPI pages and the lifespan (which starts and stops the
runtime) are FastAPI's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from coe_gateway import __version__
from coe_gateway.config import GatewayConfig
from coe_gateway.server import errors, usage
from coe_gateway.server.chat import ChatEndpoint, Receive, Scope, Send
from coe_gateway.server.routes import api
from coe_gateway.server.runtime import Runtime

CHAT_PATH = "/v1/chat/completions"


class GatewayApp:
    """ASGI callable: chat completions to the raw endpoint, the rest to FastAPI."""

    def __init__(self, runtime: Runtime, api_app: FastAPI) -> None:
        self.runtime = runtime
        self.api = api_app
        self.chat = ChatEndpoint(runtime)

    @property
    def state(self) -> Any:
        """The FastAPI app's state (``state.runtime``)."""
        return self.api.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["path"] == CHAT_PATH
                and scope["method"] == "POST"):
            await self.chat(scope, receive, send)
            return
        await self.api(scope, receive, send)


def create_app(cfg: GatewayConfig, *, wait_ready: bool = False) -> GatewayApp:
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

    api_app = FastAPI(title="coe-gateway", version=__version__, lifespan=lifespan)
    api_app.state.runtime = runtime
    errors.install(api_app)
    api_app.include_router(api)
    api_app.include_router(usage.router)

    return GatewayApp(runtime, api_app)
