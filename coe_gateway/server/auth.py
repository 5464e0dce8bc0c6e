"""Authentication: the API key of a request -> its tenant.

The key comes from ``Authorization: Bearer <key>`` (what the OpenAI SDKs send) or from an
``x-api-key`` header. Without a budget file in the config auth is off and every request is
the unlimited ``anonymous`` tenant. Keys are checked against the SHA-256 hashes of the budget
file in constant time (:class:`coe_gateway.budget.KeyIndex`).
"""

from __future__ import annotations

from fastapi import Request

from coe_gateway.budget import Tenant


def api_key(request: Request) -> str | None:
    """The key the caller sent, or None."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key")


def authenticate(request: Request) -> Tenant:
    """The caller's tenant (AuthenticationError 401 when the key is missing or unknown)."""
    tenancy = request.app.state.runtime.tenancy
    return tenancy.authenticate(api_key(request))
