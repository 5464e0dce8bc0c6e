"""The fleet client over a hand-written fleet file and fake upstreams: replicas appear,
follow the publisher's state and its heartbeat, move when their URL changes, go when they
are no longer published; restarts are counted; an invalid file changes nothing."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coe_gateway.config import GatewayConfig
from coe_gateway.testing.fake_upstream import FakeUpstream
from coe_gateway.testing.servers import serve_in_thread
from coe_gateway.workers.fleet import FleetClient, open_fleet
from coe_gateway.workers.fleet_file import (
    FleetState,
    PublishedReplica,
    Publisher,
    write_fleet_file,
)
from coe_gateway.workers.pool import WorkerPool
from coe_gateway.workers.supervisor import Supervisor


def config(path: Path, mode: str = "attach", workers: int = 1) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "experts": [{"name": "e", "backend": "vllm", "model": "m"},
                    {"name": "r", "backend": "openai", "model": "m",
                     "urls": ["http://127.0.0.1:9/v1"]}],
        "server": {"workers": workers},
        "workers": {"mode": mode, "fleet_file": str(path), "health_interval_s": 0.05,
                    "fleet_stale_s": 1.0}})


def publish(path: Path, urls: list[str], *, healthy: bool = True, restarts: int = 0,
            heartbeat: float | None = None, pid: int = 1000) -> None:
    now = time.time()
    write_fleet_file(path, FleetState(
        publisher=Publisher(pid=os.getpid(), host=socket.gethostname(), started_at=now,
                            heartbeat=now if heartbeat is None else heartbeat),
        ready=healthy,
        experts={"e": [PublishedReplica(replica=i, url=u, pid=pid + i, restarts=restarts,
                                        state="ready" if healthy else "restarting",
                                        healthy=healthy, updated_at=now)
                       for i, u in enumerate(urls)],
                 "not-in-config": [PublishedReplica(replica=0, url=urls[0], state="ready",
                                                    healthy=True, updated_at=now)]}))


@pytest.fixture
def upstreams() -> Iterator[list[str]]:
    with serve_in_thread(FakeUpstream()) as a, serve_in_thread(FakeUpstream()) as b:
        yield [f"{a}/v1", f"{b}/v1"]


def test_open_fleet_picks_by_mode(tmp_path: Path) -> None:
    pool = WorkerPool()
    assert isinstance(open_fleet(config(tmp_path / "f", "attach"), pool), FleetClient)
    assert isinstance(open_fleet(config(tmp_path / "f", "auto", workers=3), pool), FleetClient)
    launch = open_fleet(config(tmp_path / "f", "auto"), pool)
    assert isinstance(launch, Supervisor) and pool.replicas("e") == launch.replicas
    with pytest.raises(ValueError, match="server.workers > 1"):
        config(tmp_path / "f", "launch", workers=2)


async def test_fake_upstream_replicas_follow_the_fleet_file(
        tmp_path: Path, upstreams: list[str]) -> None:
    path = tmp_path / "fleet.json"
    pool, restarted = WorkerPool(), []
    client = FleetClient(config(path), pool, on_restart=restarted.append)
    await client.start(wait_ready=False)  # no file yet: nothing to route to
    try:
        assert pool.replicas("e") == [] and not client.ready
        with pytest.raises(RuntimeError, match="no fleet file"):
            await client.wait_ready(0.1)
        publish(path, upstreams[:1])
        await client.wait_ready(5)
        (first,) = pool.replicas("e")
        assert first.healthy and first.detail["pid"] == 1000
        assert first.detail["url"] == upstreams[0]

        publish(path, upstreams[:1], healthy=False, restarts=1, pid=2000)  # restarting
        await client.refresh()
        assert not first.healthy and first.state == "restarting" and restarted == ["e"]
        publish(path, upstreams[:1], restarts=1, pid=2000)
        await client.refresh()
        assert first.healthy and first.detail["pid"] == 2000

        publish(path, upstreams[:1], heartbeat=time.time() - 30)  # the publisher hangs
        await client.refresh()
        assert not first.healthy and first.state == "stale"

        publish(path, [upstreams[1], upstreams[0]])  # replica 0 moved, replica 1 is new
        await client.refresh()
        moved, new = pool.replicas("e")[0], pool.replicas("e")[1]
        assert first not in pool.replicas("e") and first.state == "detached"
        assert {moved.detail["url"], new.detail["url"]} == set(upstreams)
        assert all(r.healthy for r in pool.replicas("e"))

        path.write_text("{not json")
        await client.refresh()  # ignored: the pool stays as it was
        assert len(pool.replicas("e")) == 2

        publish(path, upstreams[:1])
        await client.refresh()
        assert len(pool.replicas("e")) == 1
        assert pool.experts == ["e"]  # only the config's local experts are attached
    finally:
        await client.stop()
    assert pool.replicas("e") == []


async def test_fake_upstream_unreachable_replica_is_unhealthy(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    publish(path, ["http://127.0.0.1:9/v1"])  # published healthy, but nothing listens
    pool = WorkerPool()
    client = FleetClient(config(path), pool)
    await client.start(wait_ready=False)
    try:
        (replica,) = pool.replicas("e")
        assert not replica.healthy and replica.state == "unreachable"
    finally:
        await client.stop()
