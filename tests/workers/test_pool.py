"""Replica selection and in-flight accounting, with fake backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from coe_gateway.errors import UpstreamUnavailableError
from coe_gateway.workers.backends import Backend, ChatResult
from coe_gateway.workers.pool import Replica, WorkerPool


class FakeBackend(Backend):
    def __init__(self, name: str, gate: asyncio.Event | None = None) -> None:
        self.name, self.gate, self.calls = name, gate, 0

    async def chat(self, body: dict[str, Any]) -> ChatResult:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if body.get("stream"):
            return self._stream()
        return {"by": self.name}

    async def _stream(self) -> AsyncIterator[dict[str, Any]]:
        for i in range(3):
            yield {"i": i}


def replicas(n: int, healthy: bool = True) -> list[Replica]:
    return [Replica("e", i, FakeBackend(f"r{i}"), healthy=healthy) for i in range(n)]


async def test_fake_backends_least_outstanding_replica_is_picked() -> None:
    gate = asyncio.Event()
    rs = [Replica("e", 0, FakeBackend("r0", gate), healthy=True),
          Replica("e", 1, FakeBackend("r1", gate), healthy=True)]
    pool = WorkerPool(rs)
    tasks = [asyncio.create_task(pool.chat("e", {})) for _ in range(4)]
    await asyncio.sleep(0.01)
    assert [r.in_flight for r in rs] == [2, 2]  # spread evenly while all are busy
    gate.set()
    results = await asyncio.gather(*tasks)
    assert sorted(r["by"] for r in results) == ["r0", "r0", "r1", "r1"]
    assert [r.in_flight for r in rs] == [0, 0]


async def test_fake_backends_unhealthy_replicas_are_skipped() -> None:
    rs = replicas(3)
    rs[0].healthy = rs[2].healthy = False
    pool = WorkerPool(rs)
    for _ in range(3):
        assert (await pool.chat("e", {}))["by"] == "r1"


async def test_fake_backends_no_healthy_replica_is_503() -> None:
    pool = WorkerPool(replicas(2, healthy=False))
    assert not pool.is_available("e")
    with pytest.raises(UpstreamUnavailableError) as info:
        await pool.chat("e", {})
    assert info.value.status_code == 503


async def test_fake_backends_stream_holds_in_flight_until_consumed() -> None:
    rs = replicas(1)
    pool = WorkerPool(rs)
    stream = await pool.chat("e", {"stream": True})
    assert rs[0].in_flight == 1
    assert [c["i"] async for c in stream] == [0, 1, 2]  # type: ignore[union-attr]
    assert rs[0].in_flight == 0


async def test_fake_backends_least_recently_used_breaks_ties() -> None:
    rs = replicas(2)
    pool = WorkerPool(rs)
    order = [(await pool.chat("e", {}))["by"] for _ in range(4)]
    assert order == ["r0", "r1", "r0", "r1"]
