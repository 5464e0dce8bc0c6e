"""The shared spend ledger: :class:`RedisLedger` (Lua scripts, one atomic round trip per
reserve or settle, shared by every gateway replica) and :class:`FailoverLedger`, which wraps
it with the configured fail mode (fail open to an in-process ledger whose spend is merged
back, or fail closed). The protocol, the in-memory ledger and the money and period helpers
are in :mod:`coe_gateway.ledger`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from coe_gateway.ids import IdSource
from coe_gateway.ledger import (
    InMemoryLedger,
    Ledger,
    LedgerUnavailableError,
    Limits,
    PERIODS,
    PeriodName,
    PeriodUsage,
    Reservation,
    _usage,
    budget_error,
    limit_nano,
    new_reservation,
    period_bounds,
    period_id,
    rate_error,
    to_nano,
    utcnow,
)

log = logging.getLogger(__name__)


class FailoverLedger:
    """The configured fail mode around a shared ledger.

    When ``primary`` raises :class:`LedgerUnavailableError`: fail closed (default) re-raises it
    (the request gets a 503 and nothing is spent); fail open admits the request and counts it
    in ``fallback`` (this process only) until the primary answers again. Spend counted in the
    fallback is not merged back into the shared ledger. ``fail_open`` may be a callable, read
    at each failure (so a reloaded budget file takes effect).
    """

    def __init__(self, primary: Ledger, *, fail_open: bool | Callable[[], bool] = False,
                 fallback: InMemoryLedger | None = None, warn_every_s: float = 30.0) -> None:
        self.primary = primary
        self.fail_open = fail_open
        self.fallback = fallback or InMemoryLedger()
        self._warn_every_s = warn_every_s
        self._warned_at = -math.inf

    def _degrade(self, exc: LedgerUnavailableError) -> None:
        fail_open = self.fail_open() if callable(self.fail_open) else self.fail_open
        if not fail_open:
            raise exc
        if time.monotonic() - self._warned_at > self._warn_every_s:
            self._warned_at = time.monotonic()
            log.warning("budget ledger unavailable, failing open (in-process counts): %s", exc)

    async def reserve(self, tenant: str, amount_usd: float, limits: Limits,
                      now: datetime | None = None, *, per_minute: int | None = None
                      ) -> Reservation:
        try:
            return await self.primary.reserve(tenant, amount_usd, limits, now,
                                              per_minute=per_minute)
        except LedgerUnavailableError as exc:
            self._degrade(exc)
        return await self.fallback.reserve(tenant, amount_usd, limits, now,
                                           per_minute=per_minute)

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        if reservation.backend == self.fallback.backend:
            await self.fallback.settle(reservation, actual_usd)
            return
        try:
            await self.primary.settle(reservation, actual_usd)
        except LedgerUnavailableError as exc:
            # the hold expires by itself in Redis; the spend of this request is lost there
            log.error("could not settle reservation %s of %r ($%.6f): %s", reservation.id,
                      reservation.tenant, actual_usd, exc)

    @property
    def peeks(self) -> bool:
        """Whether :meth:`reserve_unless` and :meth:`settle_and_set` reach a shared Redis."""
        return isinstance(self.primary, RedisLedger)

    async def reserve_unless(self, tenant: str, amount_usd: float, limits: Limits, key: str,
                             now: datetime | None = None, *, per_minute: int | None = None
                             ) -> Reservation | bytes:
        """:meth:`RedisLedger.reserve_unless` with the fail mode; failing open, a reservation
        of the fallback (``backend == "memory"``): the key was not read."""
        assert isinstance(self.primary, RedisLedger), "reserve_unless needs a Redis ledger"
        try:
            return await self.primary.reserve_unless(tenant, amount_usd, limits, key, now,
                                                     per_minute=per_minute)
        except LedgerUnavailableError as exc:
            self._degrade(exc)
        return await self.fallback.reserve(tenant, amount_usd, limits, now,
                                           per_minute=per_minute)

    async def settle_and_set(self, reservation: Reservation, actual_usd: float,
                             store: tuple[str, bytes, int] | None) -> bool:
        """:meth:`RedisLedger.settle_and_set` with the fail mode (nothing stored when the
        reservation is the fallback's or Redis is down: the settlement is what matters)."""
        if reservation.backend == self.fallback.backend or not isinstance(self.primary,
                                                                           RedisLedger):
            await self.settle(reservation, actual_usd)
            return False
        try:
            return await self.primary.settle_and_set(reservation, actual_usd, store)
        except LedgerUnavailableError as exc:
            log.error("could not settle reservation %s of %r ($%.6f): %s", reservation.id,
                      reservation.tenant, actual_usd, exc)
        return False

    async def usage(self, tenant: str, limits: Limits,
                    now: datetime | None = None) -> list[PeriodUsage]:
        try:
            return await self.primary.usage(tenant, limits, now)
        except LedgerUnavailableError as exc:
            self._degrade(exc)
        return await self.fallback.usage(tenant, limits, now)

    async def hit(self, tenant: str, per_minute: int, now: datetime | None = None) -> None:
        try:
            await self.primary.hit(tenant, per_minute, now)
            return
        except LedgerUnavailableError as exc:
            self._degrade(exc)
        await self.fallback.hit(tenant, per_minute, now)

    async def close(self) -> None:
        await self.primary.close()


# -- Redis ------------------------------------------------------------------------------------

# Every key of a tenant carries the hash tag {tenant}, so a tenant's keys share a cluster slot.
# Period hashes  P = <prefix>{t}:p:<period id>  fields spent, reserved (nano-USD integers)
# Holds          H = <prefix>{t}:holds          id -> "amount|periodkey,periodkey"
# Hold expiries  Z = <prefix>{t}:holds:exp      id -> expiry (ms)
# Rate counter       <prefix>{t}:rl:<minute>
_RELEASE = """
local function release(holds, exp, rid)
  local v = redis.call('HGET', holds, rid)
  redis.call('ZREM', exp, rid)
  if not v then return 0 end
  local sep = string.find(v, '|', 1, true)
  local neg = '-' .. string.sub(v, 1, sep - 1)
  for pkey in string.gmatch(string.sub(v, sep + 1), '[^,]+') do
    redis.call('HINCRBY', pkey, 'reserved', neg)
  end
  redis.call('HDEL', holds, rid)
  return 1
end
local function purge(holds, exp, now)
  for _, rid in ipairs(redis.call('ZRANGEBYSCORE', exp, '-inf', now)) do
    release(holds, exp, rid)
  end
end
"""

# KEYS: holds, exp, rate counter, [cached answer,] period keys...  ARGV: id, amount, now_ms,
# hold_exp_ms, rate limit per minute (-1 = none), counter ttl (ms), then per period key: limit
# (-1 = none), ttl (s). Admits and reserves in one step: returns {2, count} when the rate limit
# refuses, {0, index of the period, spent, held} when a budget does, else {1}. The form with
# a cached answer's key (``{peek}``) first reads it: the request is then counted against the
# rate limit like any other, and when the key holds a value nothing is reserved: {3, value}.
_RESERVE_TEMPLATE = _RELEASE + """
local P = {first}
local found = {peek}
local rl = tonumber(ARGV[5])
if rl >= 0 then
  local c = tonumber(redis.call('GET', KEYS[3]) or '0')
  if c >= rl then return {{2, c}} end
  if redis.call('INCR', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[6]) end
end
if found then return {{3, found}} end
purge(KEYS[1], KEYS[2], ARGV[3])
local amount = tonumber(ARGV[2])
local n = #KEYS - P
for i = 1, n do
  local limit = tonumber(ARGV[5 + 2 * i])
  if limit >= 0 then
    local row = redis.call('HMGET', KEYS[P + i], 'spent', 'reserved')
    local spent, held = tonumber(row[1] or '0'), tonumber(row[2] or '0')
    if spent + held + amount > limit then return {{0, i, spent, held}} end
  end
end
local pkeys = {{}}
for i = 1, n do
  redis.call('HINCRBY', KEYS[P + i], 'reserved', ARGV[2])
  redis.call('EXPIRE', KEYS[P + i], ARGV[6 + 2 * i])
  pkeys[i] = KEYS[P + i]
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. table.concat(pkeys, ','))
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return {{1}}
"""
_RESERVE = _RESERVE_TEMPLATE.format(first=3, peek="false")
_RESERVE_UNLESS = _RESERVE_TEMPLATE.format(first=4, peek="redis.call('GET', KEYS[4])")

# KEYS: holds, exp, period keys of the reservation[, cached answer].  ARGV: id, actual, ttl
# (s) per period key[, the answer, its ttl (s)]. Returns {hold found 0/1, answer stored 0/1}:
# the answer is stored after the settlement, and a failure to store it (out of memory) does
# not undo the settlement.
_SETTLE_TEMPLATE = _RELEASE + """
local found = release(KEYS[1], KEYS[2], ARGV[1])
local last = #KEYS - {stores}
for i = 3, last do
  redis.call('HINCRBY', KEYS[i], 'spent', ARGV[2])
  redis.call('EXPIRE', KEYS[i], ARGV[i])
end
local stored = 0
if last < #KEYS then
  local ok = redis.pcall('SET', KEYS[#KEYS], ARGV[#KEYS], 'EX', ARGV[#KEYS + 1])
  if type(ok) == 'table' and ok.ok then stored = 1 end
end
return {{found, stored}}
"""
_SETTLE = _SETTLE_TEMPLATE.format(stores=0)
_SETTLE_STORE = _SETTLE_TEMPLATE.format(stores=1)

# KEYS: holds, exp, period keys.  ARGV: now_ms.  Returns spent, held per period key.
_USAGE = _RELEASE + """
purge(KEYS[1], KEYS[2], ARGV[1])
local out = {}
for i = 3, #KEYS do
  local row = redis.call('HMGET', KEYS[i], 'spent', 'reserved')
  out[#out + 1] = tonumber(row[1] or '0')
  out[#out + 1] = tonumber(row[2] or '0')
end
return out
"""

# KEYS: counter.  ARGV: limit, ttl_ms.  Returns {admitted 0/1, count}.
_HIT = """
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
if c >= tonumber(ARGV[1]) then return {0, c} end
c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {1, c}
"""

T = TypeVar("T")
KEEP_AFTER_RESET_S = 35 * 86400  # period hashes stay readable this long after their reset


class RedisLedger:
    """The ledger shared by every gateway replica: atomic Lua scripts on one Redis.

    ``redis``: a ``redis.asyncio.Redis`` client (``decode_responses`` either way). Any
    connection failure becomes :class:`LedgerUnavailableError`; wrap in
    :class:`FailoverLedger` for the configured fail mode.
    """

    backend = "redis"

    def __init__(self, redis: Any, *, prefix: str = "coe:", reservation_ttl_s: float = 900.0
                 ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.reservation_ttl_s = reservation_ttl_s
        self._ids = IdSource()
        self._reserve = redis.register_script(_RESERVE)
        self._reserve_unless = redis.register_script(_RESERVE_UNLESS)
        self._settle = redis.register_script(_SETTLE)
        self._settle_store = redis.register_script(_SETTLE_STORE)
        self._usage = redis.register_script(_USAGE)
        self._hit = redis.register_script(_HIT)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisLedger:
        from coe_gateway.redis_client import connect

        client = connect(url, connect_timeout_s=0.5, timeout_s=2.0, health_check_interval=30)
        return cls(client, **kwargs)

    def _tkey(self, tenant: str, suffix: str) -> str:
        return f"{self.prefix}{{{tenant}}}:{suffix}"

    def _pkey(self, tenant: str, pid: str) -> str:
        return self._tkey(tenant, f"p:{pid}")

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        from redis.exceptions import ConnectionError as RConnectionError
        from redis.exceptions import TimeoutError as RTimeoutError

        try:
            return await fn()
        except (RConnectionError, RTimeoutError, OSError) as exc:
            raise LedgerUnavailableError(f"budget ledger (Redis) unavailable: {exc}") from exc

    async def reserve(self, tenant: str, amount_usd: float, limits: Limits,
                      now: datetime | None = None, *, per_minute: int | None = None
                      ) -> Reservation:
        res, _ = await self._reserve_or_peek(tenant, amount_usd, limits, now, per_minute, None)
        assert res is not None
        return res

    async def reserve_unless(self, tenant: str, amount_usd: float, limits: Limits, key: str,
                             now: datetime | None = None, *, per_minute: int | None = None
                             ) -> Reservation | bytes:
        """:meth:`reserve`, unless ``key`` (of the tenant's hash tag: a cached answer)
        holds a value: then that value, the request counted against the rate limit and
        nothing reserved. One round trip either way."""
        res, value = await self._reserve_or_peek(tenant, amount_usd, limits, now, per_minute,
                                                 key)
        return res if res is not None else value or b""

    async def _reserve_or_peek(self, tenant: str, amount_usd: float, limits: Limits,
                               now: datetime | None, per_minute: int | None, peek: str | None
                               ) -> tuple[Reservation | None, bytes | None]:
        now = now or utcnow()
        res = new_reservation(tenant, amount_usd, now, self.reservation_ttl_s, self.backend,
                              self._ids())
        keys = [self._tkey(tenant, "holds"), self._tkey(tenant, "holds:exp"),
                self._rate_key(tenant, now)]
        if peek is not None:
            keys.append(peek)
        args: list[Any] = [res.id, res.amount_nano, int(now.timestamp() * 1000),
                           int(res.expires_at * 1000),
                           -1 if per_minute is None else per_minute, 120_000]
        for period, pid in zip(PERIODS, res.periods):
            keys.append(self._pkey(tenant, pid))
            limit = limit_nano(limits, period)
            args += [-1 if limit is None else limit, self._ttl(period, now)]
        script = self._reserve if peek is None else self._reserve_unless
        out = await self._call(lambda: script(keys=keys, args=args))
        kind = int(out[0])
        if kind == 1:
            return res, None
        if kind == 3:
            value = out[1]
            return None, value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if kind == 2:
            raise rate_error(tenant, per_minute or 0, now)
        period = PERIODS[int(out[1]) - 1]
        raise budget_error(tenant, period, limit_nano(limits, period) or 0, int(out[2]),
                           int(out[3]), res.amount_nano, now)

    def _rate_key(self, tenant: str, now: datetime) -> str:
        return self._tkey(tenant, f"rl:{int(now.timestamp() // 60)}")

    @staticmethod
    def _ttl(period: PeriodName, now: datetime) -> int:
        """Seconds a period hash lives: to its reset, then KEEP_AFTER_RESET_S more."""
        return int((period_bounds(period, now)[1] - now).total_seconds()) + KEEP_AFTER_RESET_S

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        await self.settle_and_set(reservation, actual_usd, None)

    async def settle_and_set(self, reservation: Reservation, actual_usd: float,
                             store: tuple[str, bytes, int] | None) -> bool:
        """:meth:`settle`, then (same round trip) ``SET key value EX ttl_s`` of ``store``
        (a key of the tenant's hash tag: a cached answer); whether it was stored."""
        if reservation.settled:
            return False
        tenant = reservation.tenant
        keys = [self._tkey(tenant, "holds"), self._tkey(tenant, "holds:exp")]
        keys += [self._pkey(tenant, pid) for pid in reservation.periods]
        made = datetime.fromtimestamp(reservation.created_at, UTC)
        args: list[Any] = [reservation.id, to_nano(max(0.0, actual_usd))]
        args += [self._ttl(p, made) for p in PERIODS]
        script = self._settle
        if store is not None:
            keys.append(store[0])
            args += [store[1], store[2]]
            script = self._settle_store
        out = await self._call(lambda: script(keys=keys, args=args))
        reservation.settled = True
        return bool(int(out[1]))

    async def usage(self, tenant: str, limits: Limits,
                    now: datetime | None = None) -> list[PeriodUsage]:
        now = now or utcnow()
        keys = [self._tkey(tenant, "holds"), self._tkey(tenant, "holds:exp")]
        keys += [self._pkey(tenant, period_id(p, now)) for p in PERIODS]
        out = await self._call(lambda: self._usage(keys=keys,
                                                   args=[int(now.timestamp() * 1000)]))
        return [_usage(p, limits, int(out[2 * i]), int(out[2 * i + 1]), now)
                for i, p in enumerate(PERIODS)]

    async def hit(self, tenant: str, per_minute: int, now: datetime | None = None) -> None:
        now = now or utcnow()
        key = self._rate_key(tenant, now)
        out = await self._call(lambda: self._hit(keys=[key], args=[per_minute, 120_000]))
        if int(out[0]) == 0:
            raise rate_error(tenant, per_minute, now)

    async def close(self) -> None:
        await self.redis.aclose()
