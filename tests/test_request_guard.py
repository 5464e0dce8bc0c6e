"""Round trips of a budgeted, exactly cached request on the real Redis (coe_gateway.request_guard):
the lookup rides on the first reservation, the store on the last settlement; every request's
spend is still settled exactly and a cached answer is still counted against the rate limit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio.connection as rconn

from coe_gateway.budget import Tenant
from coe_gateway.errors import BudgetExceededError, RateLimitError
from coe_gateway.gateway import Gateway
from coe_gateway.protocol import ChatRequest, estimate_prompt_tokens, max_prompt_tokens
from coe_gateway.routing import max_output_tokens
from coe_gateway.tenancy import Tenancy
from coe_gateway.testing.fake_backend import FakeBackend, Script, fake_config, fake_gateway

pytestmark = pytest.mark.redis


class RoundTrips:
    """Counts what redis-py sends: one ``send_packed_command`` per round trip (a command or
    a whole pipeline)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        original = rconn.AbstractConnection.send_packed_command

        async def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            self.n += 1
            await original(conn, command, check_health)

        monkeypatch.setattr(rconn.AbstractConnection, "send_packed_command", counting)

    def take(self) -> int:
        n, self.n = self.n, 0
        return n


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    return RoundTrips(monkeypatch)


@pytest.fixture
async def gw(redis_url: str, redis_prefix: str) -> AsyncIterator[Gateway]:
    cfg = fake_config(["cheap", "strong"], redis_url=redis_url,
                      cache={"enabled": True, "semantic": False})
    tenancy = Tenancy.from_config(cfg, prefix=redis_prefix)
    assert tenancy.merges
    gw = fake_gateway({"cheap": FakeBackend("c"), "strong": FakeBackend("s")}, cfg,
                      tenancy=tenancy)
    yield gw
    await tenancy.close()


def ask(text: str = "hello", **kw: Any) -> ChatRequest:
    return ChatRequest({"model": "auto", "temperature": 0, "max_tokens": 8,
                        "messages": [{"role": "user", "content": text}], **kw})


async def usage(gw: Gateway, tenant: Tenant) -> tuple[float, float]:
    """(spent, reserved) of the day."""
    day = (await gw.tenancy.guard.ledger.usage(tenant.name, tenant.limits))[0]
    return day.spent_usd, day.reserved_usd


def cost(reply: Any) -> float:
    return float(sum(a["cost_usd"] for a in json.loads(reply.body)["coe_routing"]["attempts"]))


async def test_fake_miss_is_two_round_trips_and_a_hit_one(gw: Gateway, trips: RoundTrips
                                                          ) -> None:
    tenant = Tenant(name="t", budgets={"day_usd": 10.0})
    await gw.tenancy.guard.state(tenant)  # the first state read of a tenant goes to Redis
    trips.take()
    miss = await gw.chat(ask(), tenant)
    assert miss.cache == "miss" and trips.take() == 2  # lookup+reserve, settle+store
    hit = await gw.chat(ask(), tenant)
    assert hit.cache == "exact" and trips.take() == 1  # the lookup, nothing reserved
    assert hit.body == miss.body
    spent, reserved = await usage(gw, tenant)
    assert spent == pytest.approx(cost(miss)) and spent > 0 and reserved == 0.0
    metrics = gw.tenancy.cache.metrics if gw.tenancy.cache else None
    assert metrics is not None and metrics.value("exact", "hit") == 1.0
    assert metrics.value("exact", "miss") == 1.0


async def test_fake_cached_answer_counts_against_the_rate_limit(gw: Gateway,
                                                                trips: RoundTrips) -> None:
    tenant = Tenant(name="r", budgets={"day_usd": 10.0}, rate_limit={"requests_per_minute": 2})
    await gw.chat(ask(), tenant)
    trips.take()
    assert (await gw.chat(ask(), tenant)).cache == "exact"
    assert trips.take() == 1  # counted and looked up in the same script
    with pytest.raises(RateLimitError):
        await gw.chat(ask(), tenant)


async def test_fake_fallback_settles_the_failed_attempt_before_the_next_reserves(
        redis_url: str, redis_prefix: str) -> None:
    cfg = fake_config(["cheap", "strong"], redis_url=redis_url,
                      cache={"enabled": True, "semantic": False})
    tenancy = Tenancy.from_config(cfg, prefix=redis_prefix)
    gw = fake_gateway({"cheap": FakeBackend("c"),
                       "strong": FakeBackend("s", Script(fail_status=500))}, cfg,
                      tenancy=tenancy)
    # a budget that holds one attempt at a time: the second reservation passes only when
    # the first attempt's hold was released before it
    request = ask()
    most = [e.price.cost(max_prompt_tokens(request),
                         max_output_tokens(e, request, estimate_prompt_tokens(request)))
            for e in (gw.cfg.expert("strong"), gw.cfg.expert("cheap"))]
    tenant = Tenant(name="f", budgets={"day_usd": max(most) * 1.01})
    assert sum(most) > max(most) * 1.01
    first = await gw.chat(request, tenant)
    attempts = json.loads(first.body or b"{}")["coe_routing"]["attempts"]
    assert [(a["expert"], a["status"]) for a in attempts] == [("strong", 502), ("cheap", 200)]
    spent, reserved = await usage(gw, tenant)
    assert spent == pytest.approx(cost(first)) and reserved == 0.0
    assert (await gw.chat(ask(), tenant)).cache == "exact"
    await tenancy.close()


async def test_fake_stream_is_settled_and_stored(gw: Gateway) -> None:
    tenant = Tenant(name="s", budgets={"day_usd": 10.0})
    reply = await gw.chat(ask(stream=True), tenant)
    assert reply.stream is not None and reply.cache == "miss"
    chunks = [c async for c in reply.stream]
    assert chunks[-1] == b"data: [DONE]\n\n"
    spent, reserved = await usage(gw, tenant)
    assert spent > 0 and reserved == 0.0
    again = await gw.chat(ask(stream=True), tenant)
    assert again.cache == "exact"


async def test_fake_used_up_budget_still_gets_its_cached_answer(gw: Gateway) -> None:
    tenant = Tenant(name="u", budgets={"day_usd": 1e-4})
    first = await gw.chat(ask(max_tokens=2), tenant)
    spent, _ = await usage(gw, tenant)
    assert first.cache == "miss" and spent > 0
    # spend the rest from elsewhere: the day is used up, the policy refuses (402) ...
    res = await gw.tenancy.guard.ledger.reserve(tenant.name, 1e-4 - spent, tenant.limits)
    await gw.tenancy.guard.ledger.settle(res, 1e-4 - spent)
    gw.tenancy.guard._states.clear()
    with pytest.raises(BudgetExceededError):
        await gw.chat(ask("another", max_tokens=2), tenant)
    # ... but a cached answer costs nothing and is served, as before routing
    assert (await gw.chat(ask(max_tokens=2), tenant)).cache == "exact"


async def test_fake_not_deterministic_request_bypasses_the_merge(gw: Gateway,
                                                                 trips: RoundTrips) -> None:
    tenant = Tenant(name="n", budgets={"day_usd": 10.0})
    await gw.tenancy.guard.state(tenant)
    trips.take()
    req = ChatRequest({"model": "auto", "max_tokens": 8, "temperature": 0.7,
                       "messages": [{"role": "user", "content": "hello"}]})
    reply = await gw.chat(req, tenant)
    assert reply.cache is None and trips.take() == 2  # reserve, settle: no cache step


async def test_fake_cascade_hold_is_settled_with_the_store(redis_url: str, redis_prefix: str,
                                                           trips: RoundTrips) -> None:
    experts = ["a", "b", "c"]
    cfg = fake_config(experts, redis_url=redis_url, cache={"enabled": True, "semantic": False})
    tenancy = Tenancy.from_config(cfg, prefix=redis_prefix)
    gw = fake_gateway({e: FakeBackend(e, Script("The answer is (B).")) for e in experts}, cfg,
                      tenancy=tenancy)
    tenant = Tenant(name="c", budgets={"day_usd": 10.0})
    await gw.tenancy.guard.state(tenant)
    trips.take()
    request = ChatRequest({"model": "auto", "temperature": 0, "messages": [
        {"role": "user", "content": "Which?\nA) one\nB) two\nAnswer with the letter."}],
        "coe": {"strategy": "agree", "answer": "choice", "params": {"floor": 0.3}}})
    reply = await gw.chat(request, tenant)
    assert reply.cache == "miss" and trips.take() == 2  # the plan's hold, its settle + store
    spent, reserved = await usage(gw, tenant)
    assert spent == pytest.approx(cost(reply)) and spent > 0 and reserved == 0.0
    assert (await gw.chat(request, tenant)).cache == "exact"
    await tenancy.close()


async def test_fake_client_gone_mid_call_is_settled(redis_url: str, redis_prefix: str) -> None:
    import asyncio

    cfg = fake_config(["cheap", "strong"], redis_url=redis_url,
                      cache={"enabled": True, "semantic": False})
    tenancy = Tenancy.from_config(cfg, prefix=redis_prefix)
    gw = fake_gateway({"cheap": FakeBackend("c"),
                       "strong": FakeBackend("s", Script(delay_s=5.0))}, cfg, tenancy=tenancy)
    tenant = Tenant(name="g", budgets={"day_usd": 10.0})
    task = asyncio.create_task(gw.chat(ask(), tenant))
    await asyncio.sleep(0.1)
    _, reserved = await usage(gw, tenant)
    assert reserved > 0  # the attempt holds its maximum
    task.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    spent, reserved = await usage(gw, tenant)
    assert reserved == 0.0 and spent == 0.0  # released, nothing booked for a failed attempt
    await tenancy.close()
