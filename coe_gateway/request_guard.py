"""One request's budget and exact-cache steps, with their Redis round trips merged.

With the Redis ledger and the Redis cache (one server; every key of a tenant carries its hash
tag, so one script may touch both), a budgeted, exactly cached request that misses took four
round trips: cache ``GET``, the admit+reserve script, the settle script, cache ``SET``.
:class:`RequestGuard`, the :class:`~coe_gateway.budget.BudgetGuard` of one such request,
makes it two:

* **lookup + admit + reserve.** The exact lookup rides on the request's first reservation
  (:meth:`~coe_gateway.redis_ledger.RedisLedger.reserve_unless`): the gateway routes first, and the
  first attempt's reservation either reserves (a miss) or finds the cached answer and
  reserves nothing (a hit, raised through the strategy as :class:`CachedAnswer`; the request
  is counted against the rate limit, as a hit always is).
* **settle + store.** The request's settlements are held back until the reply stores its
  answer, and the last one carries the ``SET``
  (:meth:`~coe_gateway.redis_ledger.RedisLedger.settle_and_set`). Any further reservation, a
  stream, a failure and the end of the request flush them first: a later attempt never sees
  an earlier one's hold, and no reservation outlives its request.

The ledger's guarantees are those of its scripts: the same atomic checks, the same exact
settlement per reservation, the same fail mode (a Redis failure is a cache bypass and a
ledger failure at once).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from coe_gateway.budget import BudgetGuard, Tenant
from coe_gateway.cache import CacheHit, ResponseCache
from coe_gateway.errors import BudgetExceededError
from coe_gateway.ledger import LedgerUnavailableError, Reservation
from coe_gateway.redis_ledger import FailoverLedger


class CachedAnswer(Exception):  # noqa: N818 - a signal, not an error
    """The request's answer is in the cache (found by its first reservation): the strategy
    stops and the gateway replays it."""

    def __init__(self, hit: CacheHit) -> None:
        super().__init__("the answer is cached")
        self.hit = hit


class RequestGuard(BudgetGuard):
    """The budget guard of one request whose exact lookup and store ride on its ledger
    round trips. Shares the gateway guard's ledger and remembered budget states."""

    def __init__(self, guard: BudgetGuard, ledger: FailoverLedger, cache: ResponseCache,
                 key: str, ttl_s: int) -> None:
        self.ledger, self.state_ttl_s, self._states = ledger, guard.state_ttl_s, guard._states
        self.failover, self.cache, self.key, self.ttl_s = ledger, cache, key, ttl_s
        self.cache_state: str | None = None  # "miss" once looked up (a hit raises CachedAnswer)
        self._hit: CacheHit | None = None
        self._lock = asyncio.Lock()
        self._held: list[tuple[Reservation, float]] | None = []  # None: settle at once

    @property
    def looked_up(self) -> bool:
        return self.cache_state is not None or self._hit is not None

    async def reserve(self, tenant: Tenant, amount_usd: float,
                      now: datetime | None = None, *, admit: bool = False) -> Reservation:
        """:meth:`BudgetGuard.reserve`; the first one also looks the answer up (and raises
        :class:`CachedAnswer` on a hit). Held settlements are made first."""
        await self.flush(keep_holding=True)
        if self.looked_up and self._hit is None:
            return await super().reserve(tenant, amount_usd, now, admit=admit)
        async with self._lock:  # attempts in parallel wait for the first one's lookup
            if self._hit is not None:
                raise CachedAnswer(self._hit)
            if self.looked_up:
                return await super().reserve(tenant, amount_usd, now, admit=admit)
            return await self._reserve_unless(tenant, amount_usd, now, admit)

    async def _reserve_unless(self, tenant: Tenant, amount_usd: float,
                              now: datetime | None, admit: bool) -> Reservation:
        per_minute = tenant.rate_limit.requests_per_minute if admit else None
        try:
            out = await self.failover.reserve_unless(tenant.name, amount_usd, tenant.limits,
                                                     self.key, now, per_minute=per_minute)
        except LedgerUnavailableError as exc:  # failing closed: Redis is down for both
            self._bypass(exc)
            raise
        except BudgetExceededError:
            self._found(None)  # the key was read (a hit returns before the budget check)
            raise
        if isinstance(out, bytes):
            hit = self._found(out)
            assert hit is not None
            raise CachedAnswer(hit)
        if out.backend == self.failover.fallback.backend:  # failed open: the key unread
            self._bypass(ConnectionError("Redis unavailable (the ledger failed open)"))
        else:
            self._found(None)
        self._book(tenant.name, out.amount_usd, 0.0)
        return out

    def _found(self, raw: bytes | None) -> CacheHit | None:
        hit = self.cache.found(raw)
        self.cache_state, self._hit = ("miss", None) if hit is None else (None, hit)
        return hit

    def _bypass(self, exc: Exception) -> None:
        self.cache.bypassed(exc)
        self.cache_state = "miss"

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Held until the reply's store (or the next reservation, or the request's end)."""
        if self._held is None:
            await super().settle(reservation, actual_usd)
        else:
            self._held.append((reservation, actual_usd))

    async def flush(self, *, keep_holding: bool = False) -> None:
        """Make the held settlements; afterwards settle at once unless ``keep_holding``."""
        held = self._held or []
        self._held = [] if keep_holding else None
        for reservation, actual_usd in held:
            await super().settle(reservation, actual_usd)

    @property
    def holding(self) -> bool:
        """Whether settlements are held back for the store."""
        return bool(self._held)

    async def settle_storing(self, body: bytes | None) -> None:
        """Make the held settlements, the last with the ``SET`` of ``body`` (the encoded
        answer; None: not cacheable) in its round trip; settle at once afterwards."""
        held = self._held or []
        self._held = None
        if body is None or not held:
            for reservation, actual_usd in held:
                await super().settle(reservation, actual_usd)
            return
        for reservation, actual_usd in held[:-1]:
            await super().settle(reservation, actual_usd)
        reservation, actual_usd = held[-1]
        if await self.failover.settle_and_set(reservation, actual_usd,
                                              (self.key, body, self.ttl_s)):
            self.cache.stored()
        self._book(reservation.tenant, -reservation.amount_usd, max(0.0, actual_usd))
