"""The one way the gateway opens a Redis client (ledger, cache).

A **blocking** connection pool: when every connection is busy a command waits for one (up to
``wait_s``, then a ``ConnectionError`` the callers already treat as Redis being unavailable)
instead of failing at once with "Too many connections", which is what redis-py's default pool
does past its limit under a burst. ``hiredis`` parses replies when it is installed (it is a
dependency).
"""

from __future__ import annotations

from typing import Any

MAX_CONNECTIONS = 64
"""Per gateway process and client; Redis serves thousands, a burst queues for a free one."""


def connect(url: str, *, connect_timeout_s: float, timeout_s: float,
            max_connections: int = MAX_CONNECTIONS, wait_s: float = 2.0,
            **kwargs: Any) -> Any:
    """A ``redis.asyncio.Redis`` on ``url`` over a blocking pool."""
    import redis.asyncio as aioredis

    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=wait_s,
        socket_connect_timeout=connect_timeout_s, socket_timeout=timeout_s, **kwargs)
    return aioredis.Redis(connection_pool=pool)
