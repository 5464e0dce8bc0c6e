"""Replica selection and in-flight accounting, with fake backends."""

from __future__ import annotations

import pytest

from coe_gateway.errors import UpstreamUnavailableError
from coe_gateway.testing.fake_backend import FakeBackend
from coe_gateway.workers.pool import Replica, WorkerPool


def replicas(n: int, healthy: bool = True) -> list[Replica]:
    return [Replica("e", i, FakeBackend(f"r{i}"), healthy=healthy) for i in range(n)]


def test_fake_backends_least_outstanding_replica_is_picked() -> None:
    rs = replicas(2)
    pool = WorkerPool(rs)
    held = [pool.acquire("e") for _ in range(4)]
    assert [r.in_flight for r in rs] == [2, 2]  # spread evenly while all are busy
    for r in held:
        pool.release(r)
    assert [r.in_flight for r in rs] == [0, 0]


def test_fake_backends_unhealthy_replicas_are_skipped() -> None:
    rs = replicas(3)
    rs[0].healthy = rs[2].healthy = False
    pool = WorkerPool(rs)
    assert {pool.acquire("e").index for _ in range(3)} == {1}
    assert pool.available() == {"e"}


def test_fake_backends_no_healthy_replica_is_503() -> None:
    pool = WorkerPool(replicas(2, healthy=False))
    assert not pool.is_available("e") and pool.available() == set()
    with pytest.raises(UpstreamUnavailableError) as info:
        pool.acquire("e")
    assert info.value.status_code == 503


def test_fake_backends_least_recently_used_breaks_ties() -> None:
    rs = replicas(2)
    pool = WorkerPool(rs)
    order = []
    for _ in range(4):
        r = pool.acquire("e")
        order.append(r.index)
        pool.release(r)
    assert order == [0, 1, 0, 1]


def test_fake_backends_removed_replica_takes_no_traffic() -> None:
    rs = replicas(2)
    pool = WorkerPool(rs)
    pool.remove(rs[0])
    assert {pool.acquire("e").index for _ in range(3)} == {1}
