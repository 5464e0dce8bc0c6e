"""OpenAI-style error bodies for every failure the API can return.

``{"error": {"message", "type", "param", "code"}}`` with the status of the
:mod:`coe_gateway.errors` class; request-validation failures name the offending field in
``param``; unexpected exceptions become a 500 whose message hides internals (logged instead).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from coe_gateway.errors import GatewayError, RequestError

log = logging.getLogger("coe_gateway.server")


def error_response(exc: GatewayError, headers: dict[str, str] | None = None) -> JSONResponse:
    retry = exc.extra.get("retry_after_s")  # 402 / 429: when the limit resets
    if retry is not None:
        headers = {**(headers or {}), "retry-after": str(retry)}
    return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_error(exc: ValidationError) -> RequestError:
    """The first pydantic error as a 400 naming the field (``messages[0].role``)."""
    err = exc.errors()[0]
    # drop union-branch markers such as 'str' / 'list[ContentPart]' from the location
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in {
        "str", "int", "float", "bool", "list", "dict"})))
    field = _loc(loc) or "body"
    if err["type"] == "missing":
        msg = f"'{field}' is a required property"
    else:
        msg = f"Invalid value for '{field}': {err['msg']}"
        if "input" in err and not isinstance(err["input"], (dict, list)):
            msg += f" (got {err['input']!r})"
    more = exc.error_count() - 1
    if more:
        msg += f" ({more} more error{'s' if more > 1 else ''})"
    return RequestError(msg, param=field)


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
