"""The spend ledger: in-process and on the real Redis (127.0.0.1:6379)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from coe_gateway.errors import BudgetExceededError, RateLimitError
from coe_gateway.redis_ledger import FailoverLedger, RedisLedger
from coe_gateway.ledger import (
    InMemoryLedger,
    Ledger,
    LedgerUnavailableError,
    period_bounds,
    period_elapsed,
    period_id,
)

NOW = datetime(2025, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "redis"])
async def ledger(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Ledger]:
    if request.param == "memory":
        yield InMemoryLedger(reservation_ttl_s=60)
        return
    prefix = request.getfixturevalue("redis_prefix")
    led = RedisLedger(aioredis.from_url(redis_url), prefix=prefix, reservation_ttl_s=60)
    yield led
    await led.close()


def test_periods_are_utc_calendar_periods() -> None:
    start, end = period_bounds("month", datetime(2025, 12, 31, 23, 59, tzinfo=UTC))
    assert (start, end) == (datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    assert period_bounds("day", NOW)[1] == datetime(2025, 11, 24, tzinfo=UTC)
    assert period_id("day", NOW) == "d2025-11-23" and period_id("month", NOW) == "m2025-11"
    assert period_elapsed("day", NOW) == pytest.approx(0.5)


async def test_reserve_settle_usage(ledger: Ledger) -> None:
    limits = {"day": 1.0, "month": 10.0}
    res = await ledger.reserve("acme", 0.4, limits, NOW)
    day, month = await ledger.usage("acme", limits, NOW)
    assert (day.reserved_usd, day.spent_usd, day.remaining_usd) == (0.4, 0.0, pytest.approx(0.6))
    assert month.reserved_usd == 0.4
    await ledger.settle(res, 0.1)
    await ledger.settle(res, 0.1)  # a second settle does nothing
    day, month = await ledger.usage("acme", limits, NOW)
    assert (day.reserved_usd, day.spent_usd) == (0.0, pytest.approx(0.1))
    assert month.spent_usd == pytest.approx(0.1)
    assert day.resets_at == datetime(2025, 11, 24, tzinfo=UTC)
    other = await ledger.usage("other", limits, NOW)
    assert other[0].spent_usd == 0.0


async def test_refusal_names_the_limit_and_reset(ledger: Ledger) -> None:
    limits = {"day": 1.0, "month": 1.5}
    await ledger.settle(await ledger.reserve("acme", 0.9, limits, NOW), 0.9)
    with pytest.raises(BudgetExceededError) as info:
        await ledger.reserve("acme", 0.2, limits, NOW)
    err = info.value.to_body()["error"]
    assert info.value.status_code == 402
    assert err["limit"] == "day" and err["limit_usd"] == 1.0
    assert err["resets_at"] == "2025-11-24T00:00:00+00:00"
    assert err["spent_usd"] == pytest.approx(0.9) and err["retry_after_s"] == 12 * 3600
    # the next day the day budget is fresh but the month one still binds
    tomorrow = NOW + timedelta(days=1)
    await ledger.settle(await ledger.reserve("acme", 0.5, limits, tomorrow), 0.5)
    with pytest.raises(BudgetExceededError) as info:
        await ledger.reserve("acme", 0.2, limits, tomorrow)
    assert info.value.extra["limit"] == "month"
    assert info.value.extra["resets_at"] == "2025-12-01T00:00:00+00:00"


async def test_unlimited_tenant_is_still_counted(ledger: Ledger) -> None:
    res = await ledger.reserve("free", 123.0, {}, NOW)
    await ledger.settle(res, 100.0)
    day, month = await ledger.usage("free", {}, NOW)
    assert day.limit_usd is None and day.remaining_usd is None
    assert month.spent_usd == pytest.approx(100.0)


async def test_expired_holds_are_released(ledger: Ledger) -> None:
    limits = {"day": 1.0}
    await ledger.reserve("acme", 0.8, limits, NOW)  # never settled: its replica died
    with pytest.raises(BudgetExceededError):
        await ledger.reserve("acme", 0.8, limits, NOW + timedelta(seconds=30))
    later = NOW + timedelta(seconds=61)
    assert (await ledger.usage("acme", limits, later))[0].reserved_usd == 0.0
    await ledger.reserve("acme", 0.8, limits, later)


async def test_spend_is_booked_in_the_period_of_the_reservation(ledger: Ledger) -> None:
    limits = {"day": 1.0}
    evening = datetime(2025, 11, 23, 23, 59, 50, tzinfo=UTC)
    res = await ledger.reserve("acme", 0.5, limits, evening)
    await ledger.settle(res, 0.3)
    assert (await ledger.usage("acme", limits, evening))[0].spent_usd == pytest.approx(0.3)
    nextday = evening + timedelta(seconds=20)
    assert (await ledger.usage("acme", limits, nextday))[0].spent_usd == 0.0


async def test_concurrent_reserves_never_pass_the_budget(ledger: Ledger) -> None:
    limits = {"month": 1.0}

    async def one() -> bool:
        try:
            res = await ledger.reserve("acme", 0.1, limits, NOW)
        except BudgetExceededError:
            return False
        await asyncio.sleep(0.01)
        await ledger.settle(res, 0.1)
        return True

    admitted = await asyncio.gather(*(one() for _ in range(100)))
    assert sum(admitted) == 10
    assert (await ledger.usage("acme", limits, NOW))[1].spent_usd == pytest.approx(1.0)


async def test_rate_limit(ledger: Ledger) -> None:
    for _ in range(3):
        await ledger.hit("acme", 3, NOW)
    with pytest.raises(RateLimitError) as info:
        await ledger.hit("acme", 3, NOW + timedelta(seconds=5))
    assert info.value.status_code == 429
    assert info.value.extra["limit"] == "requests_per_minute"
    assert info.value.extra["resets_at"] == "2025-11-23T12:01:00+00:00"
    await ledger.hit("acme", 3, NOW + timedelta(minutes=1))


async def test_two_replicas_share_one_redis_budget(redis_url: str, redis_prefix: str) -> None:
    replicas = [RedisLedger(aioredis.from_url(redis_url), prefix=redis_prefix)
                for _ in range(2)]
    limits = {"day": 0.5}
    results = await asyncio.gather(
        *(replicas[i % 2].reserve("acme", 0.1, limits, NOW) for i in range(20)),
        return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 5
    assert all(isinstance(r, BudgetExceededError) for r in results if isinstance(r, BaseException))
    for led in replicas:
        await led.close()


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_redis_down_fails_closed_by_default() -> None:
    dead = RedisLedger.from_url(f"redis://127.0.0.1:{_dead_port()}/0")
    closed = FailoverLedger(dead)
    with pytest.raises(LedgerUnavailableError) as info:
        await closed.reserve("acme", 0.1, {"day": 1.0}, NOW)
    assert info.value.status_code == 503
    with pytest.raises(LedgerUnavailableError):
        await closed.usage("acme", {}, NOW)
    await dead.close()


async def test_redis_down_fail_open_counts_in_process() -> None:
    dead = RedisLedger.from_url(f"redis://127.0.0.1:{_dead_port()}/0")
    opened = FailoverLedger(dead, fail_open=True)
    res = await opened.reserve("acme", 0.6, {"day": 1.0}, NOW)
    assert res.backend == "memory"
    await opened.settle(res, 0.6)
    with pytest.raises(BudgetExceededError):
        await opened.reserve("acme", 0.6, {"day": 1.0}, NOW)
    assert (await opened.usage("acme", {"day": 1.0}, NOW))[0].spent_usd == pytest.approx(0.6)
    await dead.close()


async def test_reserve_admits_against_the_rate_limit_in_the_same_step(ledger: Ledger) -> None:
    limits = {"day": 1.0}
    for _ in range(3):
        res = await ledger.reserve("t", 0.01, limits, NOW, per_minute=3)
        await ledger.settle(res, 0.01)
    with pytest.raises(RateLimitError) as info:
        await ledger.reserve("t", 0.01, limits, NOW, per_minute=3)
    assert info.value.extra["limit"] == "requests_per_minute"
    # a later attempt of an admitted request does not count again
    res = await ledger.reserve("t", 0.01, limits, NOW)
    await ledger.settle(res, 0.0)
    # a budget refusal still counted the request (it was made)
    with pytest.raises(BudgetExceededError):
        await ledger.reserve("u", 5.0, limits, NOW, per_minute=1)
    with pytest.raises(RateLimitError):
        await ledger.reserve("u", 0.01, limits, NOW, per_minute=1)


class CountingRedis:
    """A proxy of a redis.asyncio client counting the commands sent (round trips)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client, self.calls = client, 0

    def register_script(self, script: str) -> object:
        inner = self.client.register_script(script)

        async def run(keys: list[str], args: list[object]) -> object:
            self.calls += 1
            return await inner(keys=keys, args=args)

        return run

    async def aclose(self) -> None:
        await self.client.aclose()


async def test_redis_admit_and_reserve_is_one_round_trip(redis_url: str, redis_prefix: str
                                                         ) -> None:
    from coe_gateway.budget import BudgetGuard, Tenant

    counting = CountingRedis(aioredis.from_url(redis_url))
    guard = BudgetGuard(RedisLedger(counting, prefix=redis_prefix))
    tenant = Tenant(name="t", budgets={"day_usd": 1.0}, rate_limit={"requests_per_minute": 100})
    await guard.state(tenant)  # the first state read of a tenant goes to Redis
    counting.calls = 0
    res = await guard.reserve(tenant, 0.01, admit=True)
    assert counting.calls == 1  # rate limit + budget check + hold: one script
    await guard.settle(res, 0.005)
    assert counting.calls == 2
    await guard.state(tenant)  # fresh state is served from memory, kept exact by this process
    assert counting.calls == 2
    state = await guard.state(tenant)
    assert state.remaining_usd == pytest.approx(0.995)
    await counting.aclose()


async def test_redis_reserve_unless_a_cached_value_reserves_nothing(redis_url: str,
                                                                    redis_prefix: str) -> None:
    client = aioredis.from_url(redis_url)
    led = RedisLedger(client, prefix=redis_prefix)
    key = f"{redis_prefix}cache:{{t}}:x:abc"
    limits = {"day": 1.0}
    res = await led.reserve_unless("t", 0.3, limits, key, NOW, per_minute=2)
    assert not isinstance(res, bytes)  # nothing cached: reserved
    await client.set(key, b"answer")
    assert await led.reserve_unless("t", 0.3, limits, key, NOW) == b"answer"
    day, _ = await led.usage("t", limits, NOW)
    assert day.reserved_usd == pytest.approx(0.3)  # the first hold only
    # a cached answer still counts against the rate limit (2 a minute: this is the third)
    assert await led.reserve_unless("t", 0.3, limits, key, NOW, per_minute=2) == b"answer"
    with pytest.raises(RateLimitError):
        await led.reserve_unless("t", 0.3, limits, key, NOW, per_minute=2)
    with pytest.raises(BudgetExceededError):  # the budget is checked as by reserve
        await led.reserve_unless("t", 0.8, limits, f"{redis_prefix}cache:{{t}}:x:other", NOW)
    await led.settle(res, 0.1)
    await led.close()


async def test_redis_settle_and_set_settles_then_stores(redis_url: str, redis_prefix: str
                                                        ) -> None:
    client = aioredis.from_url(redis_url)
    led = FailoverLedger(RedisLedger(client, prefix=redis_prefix))
    key = f"{redis_prefix}cache:{{t}}:x:abc"
    limits = {"day": 1.0}
    res = await led.reserve("t", 0.3, limits, NOW)
    assert await led.settle_and_set(res, 0.1, (key, b"answer", 60))
    assert await led.settle_and_set(res, 0.1, (key, b"again", 60)) is False  # settled once
    day, _ = await led.usage("t", limits, NOW)
    assert (day.reserved_usd, day.spent_usd) == (0.0, pytest.approx(0.1))
    assert await client.get(key) == b"answer" and 55 <= await client.ttl(key) <= 60
    # a reservation of the fallback (Redis was down when it was made) is settled there
    held = await led.fallback.reserve("t", 0.2, limits, NOW)
    assert await led.settle_and_set(held, 0.05, (key, b"x", 60)) is False
    assert (await led.fallback.usage("t", limits, NOW))[0].spent_usd == pytest.approx(0.05)
    await led.close()
