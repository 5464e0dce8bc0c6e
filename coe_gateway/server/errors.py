"""OpenAI-style error bodies for every failure the API can return.

``{"error": {"message", "type", "param", "code"}}`` with the status of the
:mod:`coe_gateway.errors` class, for the FastAPI routes (the chat endpoint sends its own:
:mod:`coe_gateway.server.chat`); unexpected exceptions become a 500 whose message hides
internals (logged instead).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from coe_gateway.errors import GatewayError

log = logging.getLogger("coe_gateway.server")


def error_response(exc: GatewayError, headers: dict[str, str] | None = None) -> JSONResponse:
    retry = exc.extra.get("retry_after_s")  # 402 / 429: when the limit resets
    if retry is not None:
        headers = {**(headers or {}), "retry-after": str(retry)}
    return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    err = GatewayError(str(exc.detail))
    err.status_code = exc.status_code
    err.error_type = "invalid_request_error" if exc.status_code < 500 else "internal_error"
    err.code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return error_response(err)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(GatewayError("The gateway hit an internal error; it is logged."))


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
