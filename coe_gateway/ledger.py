"""The spend ledger: what each tenant has spent and holds in reservations, per period.

A request reserves its *estimated maximum* cost before it is dispatched and settles with the
real token counts when it ends. The reserve is atomic: it succeeds only when, for every
limited period (day, month), ``spent + reserved + amount <= limit``, so concurrent requests
from any number of gateway replicas never spend more than a budget allows (as long as the
estimate is an upper bound). A refused reserve raises
:class:`~coe_gateway.errors.BudgetExceededError` (402) naming the period, its limit and when it
resets. A per-minute request counter gives :class:`~coe_gateway.errors.RateLimitError` (429).

Two implementations of the :class:`Ledger` protocol: :class:`InMemoryLedger` (one process) and
:class:`~coe_gateway.redis_ledger.RedisLedger` (Lua scripts, shared by every replica);
:class:`~coe_gateway.redis_ledger.FailoverLedger` wraps the Redis one with the configured
fail mode.

Money is kept in integer nano-dollars (1e-9 USD) so that sums are exact; the API speaks USD.
Periods are calendar periods in UTC: a day starts at 00:00 UTC, a month on its first day.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from coe_gateway.errors import BudgetExceededError, GatewayError, RateLimitError
from coe_gateway.ids import IdSource

log = logging.getLogger(__name__)

PeriodName = Literal["day", "month"]
PERIODS: tuple[PeriodName, ...] = ("day", "month")
NANO = 1_000_000_000


class LedgerUnavailableError(GatewayError):
    """The shared ledger (Redis) cannot be reached and budgets fail closed."""

    status_code = 503
    error_type = "service_unavailable"
    code = "budget_ledger_unavailable"


def to_nano(usd: float, *, up: bool = False) -> int:
    """USD -> integer nano-dollars (rounded up for reservations, to the nearest otherwise)."""
    return int(math.ceil(usd * NANO - 1e-6)) if up else int(round(usd * NANO))


def to_usd(nano: float) -> float:
    return float(nano) / NANO


# -- periods ----------------------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


def period_bounds(period: PeriodName, now: datetime) -> tuple[datetime, datetime]:
    """Start and end (= reset time) of the calendar period containing ``now`` (UTC)."""
    if now.tzinfo is not UTC:
        now = now.astimezone(UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    if period == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start.replace(year=start.year + 1, month=1) if start.month == 12
               else start.replace(month=start.month + 1))
        return start, end
    raise ValueError(f"unknown period {period!r}; known: {list(PERIODS)}")


def period_id(period: PeriodName, now: datetime) -> str:
    """A stable name of the period containing ``now``: ``d2025-11-23``, ``m2025-11``."""
    if now.tzinfo is not UTC:
        now = now.astimezone(UTC)
    if period == "day":
        return f"d{now.year:04d}-{now.month:02d}-{now.day:02d}"
    return f"m{now.year:04d}-{now.month:02d}"


def period_elapsed(period: PeriodName, now: datetime) -> float:
    """Fraction of the period already gone, 0..1."""
    start, end = period_bounds(period, now)
    return (now - start) / (end - start)


# -- values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodUsage:
    """One period of one tenant: limit (None = unlimited), spent, held in reservations."""

    period: PeriodName
    limit_usd: float | None
    spent_usd: float
    reserved_usd: float
    start: datetime
    resets_at: datetime

    @property
    def remaining_usd(self) -> float | None:
        if self.limit_usd is None:
            return None
        return max(0.0, self.limit_usd - self.spent_usd - self.reserved_usd)

    def as_dict(self) -> dict[str, object]:
        return {
            "period": self.period,
            "limit_usd": self.limit_usd,
            "spent_usd": round(self.spent_usd, 9),
            "reserved_usd": round(self.reserved_usd, 9),
            "remaining_usd": None if self.remaining_usd is None else round(self.remaining_usd, 9),
            "start": self.start.isoformat(),
            "resets_at": self.resets_at.isoformat(),
        }


@dataclass
class Reservation:
    """A held amount; settle (or release) it exactly once.

    ``periods`` are the period ids it was made in (spend is booked there even when the
    request ends after midnight); ``backend`` names the ledger that holds it.
    """

    tenant: str
    id: str
    amount_nano: int
    periods: tuple[str, ...]
    created_at: float
    expires_at: float
    backend: str = "memory"
    settled: bool = field(default=False, compare=False)

    @property
    def amount_usd(self) -> float:
        return to_usd(self.amount_nano)


def new_reservation(tenant: str, amount_usd: float, now: datetime, ttl_s: float,
                    backend: str, rid: str) -> Reservation:
    ts = now.timestamp()
    return Reservation(
        tenant=tenant, id=rid, amount_nano=to_nano(amount_usd, up=True),
        periods=period_ids(now.year, now.month, now.day) if now.tzinfo is UTC else tuple(
            period_id(p, now) for p in PERIODS),
        created_at=ts, expires_at=ts + ttl_s, backend=backend,
    )


@functools.lru_cache(maxsize=64)
def period_ids(year: int, month: int, day: int) -> tuple[str, ...]:
    """The ids of the periods containing a UTC day (:func:`period_id`, memoised)."""
    day_start = datetime(year, month, day, tzinfo=UTC)
    return tuple(period_id(p, day_start) for p in PERIODS)


Limits = Mapping[str, float | None]
"""Per period name (``day``, ``month``) its limit in USD; a missing or None limit = unlimited."""


def budget_error(tenant: str, period: PeriodName, limit_nano: int, spent: int, reserved: int,
                 amount: int, now: datetime) -> BudgetExceededError:
    """The 402 of a refused reserve, naming the limit and when it resets."""
    _, reset = period_bounds(period, now)
    return BudgetExceededError(
        f"the {period} budget of tenant {tenant!r} (${to_usd(limit_nano):.6f}) does not cover "
        f"this request (spent ${to_usd(spent):.6f}, held ${to_usd(reserved):.6f}, "
        f"estimated ${to_usd(amount):.6f}); it resets at {reset.isoformat()}",
        limit=period, limit_usd=to_usd(limit_nano), spent_usd=to_usd(spent),
        reserved_usd=to_usd(reserved), requested_usd=to_usd(amount),
        resets_at=reset.isoformat(), retry_after_s=int(math.ceil((reset - now).total_seconds())),
    )


def rate_error(tenant: str, per_minute: int, now: datetime) -> RateLimitError:
    """The 429 of a refused request, naming the limit and when the window resets."""
    reset = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return RateLimitError(
        f"tenant {tenant!r} exceeded {per_minute} requests per minute; "
        f"the window resets at {reset.isoformat()}",
        limit="requests_per_minute", limit_value=per_minute, resets_at=reset.isoformat(),
        retry_after_s=max(1, int(math.ceil((reset - now).total_seconds()))),
    )


# -- the protocol -----------------------------------------------------------------------------


class Ledger(Protocol):
    """Spend accounting per tenant and period."""

    async def reserve(self, tenant: str, amount_usd: float, limits: Limits,
                      now: datetime | None = None, *, per_minute: int | None = None
                      ) -> Reservation:
        """Hold ``amount_usd`` in every period, or raise BudgetExceededError (402). With
        ``per_minute``, first count the request against that rate limit (RateLimitError 429),
        in the same atomic step: one round trip admits and reserves."""
        ...

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Release the hold and book ``actual_usd`` as spent (idempotent per reservation)."""
        ...

    async def usage(self, tenant: str, limits: Limits,
                    now: datetime | None = None) -> list[PeriodUsage]:
        """Spent and held per period (day, month), with their limits and reset times."""
        ...

    async def hit(self, tenant: str, per_minute: int, now: datetime | None = None) -> None:
        """Count one request; raise RateLimitError (429) when over ``per_minute``."""
        ...

    async def close(self) -> None: ...


def _usage(period: PeriodName, limits: Limits, spent: int, reserved: int,
           now: datetime) -> PeriodUsage:
    start, end = period_bounds(period, now)
    return PeriodUsage(period, limits.get(period), to_usd(spent), to_usd(max(0, reserved)),
                       start, end)


def limit_nano(limits: Limits, period: PeriodName) -> int | None:
    value = limits.get(period)
    return None if value is None else to_nano(value)


class InMemoryLedger:
    """The ledger of one process (no Redis configured). Safe under asyncio: no method awaits
    between its check and its update."""

    backend = "memory"

    def __init__(self, reservation_ttl_s: float = 900.0) -> None:
        self.reservation_ttl_s = reservation_ttl_s
        self._ids = IdSource()
        self._spent: dict[tuple[str, str], int] = {}
        self._reserved: dict[tuple[str, str], int] = {}
        self._holds: dict[str, Reservation] = {}
        self._hits: dict[tuple[str, int], int] = {}

    def _purge(self, now: float) -> None:
        for rid in [r for r, res in self._holds.items() if res.expires_at <= now]:
            self._release(self._holds.pop(rid))

    def _release(self, res: Reservation) -> None:
        for pid in res.periods:
            key = (res.tenant, pid)
            self._reserved[key] = self._reserved.get(key, 0) - res.amount_nano

    async def reserve(self, tenant: str, amount_usd: float, limits: Limits,
                      now: datetime | None = None, *, per_minute: int | None = None
                      ) -> Reservation:
        now = now or utcnow()
        if per_minute is not None:
            await self.hit(tenant, per_minute, now)
        self._purge(now.timestamp())
        res = new_reservation(tenant, amount_usd, now, self.reservation_ttl_s, self.backend,
                              self._ids())
        for period, pid in zip(PERIODS, res.periods):
            limit = limit_nano(limits, period)
            spent = self._spent.get((tenant, pid), 0)
            held = self._reserved.get((tenant, pid), 0)
            if limit is not None and spent + held + res.amount_nano > limit:
                raise budget_error(tenant, period, limit, spent, held, res.amount_nano, now)
        for pid in res.periods:
            self._reserved[(tenant, pid)] = self._reserved.get((tenant, pid), 0) + res.amount_nano
        self._holds[res.id] = res
        return res

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        if self._holds.pop(reservation.id, None) is not None:
            self._release(reservation)
        actual = to_nano(max(0.0, actual_usd))
        for pid in reservation.periods:
            key = (reservation.tenant, pid)
            self._spent[key] = self._spent.get(key, 0) + actual

    async def usage(self, tenant: str, limits: Limits,
                    now: datetime | None = None) -> list[PeriodUsage]:
        now = now or utcnow()
        self._purge(now.timestamp())
        out = []
        for period in PERIODS:
            key = (tenant, period_id(period, now))
            out.append(_usage(period, limits, self._spent.get(key, 0),
                              self._reserved.get(key, 0), now))
        return out

    async def hit(self, tenant: str, per_minute: int, now: datetime | None = None) -> None:
        now = now or utcnow()
        minute = int(now.timestamp() // 60)
        for key in [k for k in self._hits if k[1] < minute]:
            del self._hits[key]
        count = self._hits.get((tenant, minute), 0)
        if count >= per_minute:
            raise rate_error(tenant, per_minute, now)
        self._hits[(tenant, minute)] = count + 1

    async def close(self) -> None:
        return None
