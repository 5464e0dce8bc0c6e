"""``GET /v1/usage``: the caller's spend per period, its limits and when they reset.

Body::

    {"object": "usage", "tenant": "acme",
     "periods": [{"period": "day", "limit_usd": 2.0, "spent_usd": 0.0132,
                  "reserved_usd": 0.0004, "remaining_usd": 1.9864,
                  "start": "2025-11-23T00:00:00+00:00",
                  "resets_at": "2025-11-24T00:00:00+00:00"},
                 {"period": "month", ...}],
     "request_cap_usd": 0.05, "rate_limit": {"requests_per_minute": 600}}
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from coe_gateway.server.auth import authenticate

router = APIRouter()


@router.get("/v1/usage")
async def usage(request: Request) -> JSONResponse:
    """The authenticated tenant's usage (401 without a valid key when auth is on)."""
    tenant = authenticate(request)
    body = await request.app.state.runtime.tenancy.guard.usage(tenant)
    return JSONResponse(body)
