"""Budgets shared through the real Redis: two gateway processes, 100 concurrent requests, a
budget that allows 10; and Redis stopped while a gateway serves (a private redis-server)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from coe_gateway.budget import hash_key
from coe_gateway.config import load_config
from coe_gateway.server.app import create_app
from coe_gateway.testing.fake_upstream import FakeUpstream
from coe_gateway.testing.servers import free_port, python_argv, run_process, serve_in_thread

KEY = "sk-shared"
PER_REQUEST = 4e-6  # max_tokens 4 at 1 USD per 1M output tokens, no input price


def write_config(tmp: Path, upstream: str, redis_url: str, tenant: str,
                 ledger: dict[str, Any] | None = None) -> Path:
    budgets = {"ledger": ledger or {}, "tenants": [
        {"name": tenant, "api_keys": [hash_key(KEY)], "budgets": {"day_usd": 10 * PER_REQUEST}}]}
    (tmp / "budgets.yaml").write_text(yaml.safe_dump(budgets), encoding="utf-8")
    cfg = {
        "experts": [{"name": "fake", "backend": "openai", "model": "m",
                     "urls": [f"{upstream}/v1"], "price": {"output_per_mtok": 1.0}}],
        "routing": {"routers": [{"name": "prior", "kind": "prior"}],
                    "policy": {"kind": "budget-paced"}},
        "redis_url": redis_url, "budget_file": "budgets.yaml",
        "cache": {"enabled": True}, "server": {"log_level": "warning"},
    }
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def drop_tenant_keys(url: str, tenant: str) -> None:
    client = redis.Redis.from_url(url)
    keys = [*client.scan_iter(match=f"coe:{{{tenant}}}*"),
            *client.scan_iter(match=f"coe:cache:{{{tenant}}}*")]
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def tenant(redis_url: str) -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    drop_tenant_keys(redis_url, name)


async def _fire(urls: list[str], n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as c:
        return await asyncio.gather(*(
            c.post(f"{urls[i % len(urls)]}/v1/chat/completions",
                   headers={"authorization": f"Bearer {KEY}"},
                   json={"model": "auto", "max_tokens": 4,
                         "messages": [{"role": "user", "content": f"request {i}"}]})
            for i in range(n)))


@pytest.mark.slow
def test_fake_upstream_two_gateways_never_pass_a_shared_budget(
        tmp_path: Path, redis_url: str, tenant: str) -> None:
    with serve_in_thread(FakeUpstream("m", delay_s=0.05)) as upstream:
        config = write_config(tmp_path, upstream, redis_url, tenant)
        ports = [free_port(), free_port()]
        with run_process(python_argv("-m", "coe_gateway", "serve", "-c", str(config), "--port",
                                     str(ports[0])), f"http://127.0.0.1:{ports[0]}/health"), \
                run_process(python_argv("-m", "coe_gateway", "serve", "-c", str(config),
                                        "--port", str(ports[1])),
                            f"http://127.0.0.1:{ports[1]}/health"):
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            replies = asyncio.run(_fire(urls, 100))
            usage = httpx.get(f"{urls[1]}/v1/usage",
                              headers={"authorization": f"Bearer {KEY}"}).json()
    codes = [r.status_code for r in replies]
    assert codes.count(200) == 10 and codes.count(402) == 90
    for r in replies:
        if r.status_code == 402:
            err = r.json()["error"]
            assert err["code"] == "budget_exceeded" and err["limit"] == "day"
            assert err["resets_at"] and int(r.headers["retry-after"]) > 0
    day = usage["periods"][0]
    assert day["spent_usd"] <= day["limit_usd"] + 1e-12
    assert day["spent_usd"] == pytest.approx(10 * PER_REQUEST)
    assert day["reserved_usd"] == 0.0


def test_fake_upstream_redis_stopped_while_serving(tmp_path: Path, private_redis: Any) -> None:
    with serve_in_thread(FakeUpstream("m")) as upstream:
        config = write_config(tmp_path, upstream, private_redis.url, "acme")
        app = create_app(load_config(config))
        with serve_in_thread(app) as url:
            tenancy = app.state.runtime.tenancy
            tenancy.cache.retry_s = 0.2
            tenancy.store.check_interval_s = 0.0

            def ask(text: str = "hi") -> httpx.Response:
                return httpx.post(f"{url}/v1/chat/completions",
                                  headers={"authorization": f"Bearer {KEY}"},
                                  json={"model": "auto", "max_tokens": 4, "temperature": 0,
                                        "messages": [{"role": "user", "content": text}]})

            assert ask().headers["x-coe-cache"] == "miss"
            assert ask().headers["x-coe-cache"] == "exact"
            private_redis.stop()
            # budgets fail closed by default: a clean 503, nothing served unaccounted
            r = ask()
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "budget_ledger_unavailable"
            # the operator switches to fail open: served, cache bypassed, counted in-process
            (tmp_path / "budgets.yaml").write_text(
                (tmp_path / "budgets.yaml").read_text().replace("ledger: {}",
                                                                "ledger: {fail_open: true}"))
            st = (tmp_path / "budgets.yaml").stat()
            os.utime(tmp_path / "budgets.yaml", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
            r = ask()
            assert r.status_code == 200 and r.headers["x-coe-cache"] == "miss"
            metrics = httpx.get(f"{url}/metrics").text
            assert 'coe_cache_lookups_total{kind="exact",result="bypass"}' in metrics
            usage = httpx.get(f"{url}/v1/usage", headers={"authorization": f"Bearer {KEY}"})
            assert usage.json()["periods"][0]["spent_usd"] == pytest.approx(PER_REQUEST)
            # Redis back (empty): shared accounting and the cache work again
            private_redis.start()
            time.sleep(0.3)
            assert ask("again").headers["x-coe-cache"] == "miss"
            assert ask("again").headers["x-coe-cache"] == "exact"
            usage = httpx.get(f"{url}/v1/usage", headers={"authorization": f"Bearer {KEY}"})
            assert usage.json()["periods"][0]["spent_usd"] == pytest.approx(PER_REQUEST)
