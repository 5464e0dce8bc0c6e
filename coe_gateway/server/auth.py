"""Authentication: the API key of a request -> its tenant.

The key comes from ``Authorization: Bearer <key>`` (what the OpenAI SDKs send) or from an
``x-api-key`` header. Without a budget file in the config auth is off and every request is
the unlimited ``anonymous`` tenant. Keys are checked against the SHA-256 hashes of the budget
file in constant time (:class:`coe_gateway.budget.KeyIndex`).
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import Request

from coe_gateway.budget import Tenant


def bearer(auth: str | None, x_api_key: str | None) -> str | None:
    """The key of an ``authorization`` header (Bearer) or else of ``x-api-key``."""
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return x_api_key


def key_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key the caller sent, from raw ASGI headers (lower-case names)."""
    auth = x_key = None
    for name, value in headers:
        if name == b"authorization":
            auth = value.decode("latin-1")
        elif name == b"x-api-key":
            x_key = value.decode("latin-1")
    return bearer(auth, x_key)


def api_key(request: Request) -> str | None:
    """The key the caller sent, or None."""
    return bearer(request.headers.get("authorization"), request.headers.get("x-api-key"))


def authenticate(request: Request) -> Tenant:
    """The caller's tenant (AuthenticationError 401 when the key is missing or unknown)."""
    tenancy = request.app.state.runtime.tenancy
    tenant: Tenant = tenancy.authenticate(api_key(request))
    return tenant
