"""``coe-gateway bench pacing | ledger | cache``: the budget, ledger and cache benchmarks.

They print figures (rich tables) and assert nothing; note the machine's load when reading
them.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, cast

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

DATA = Path(os.environ.get("COE_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared"
                           / "data"))
SIM_MODELS = ("Phi-3-mini-4k-instruct", "Meta-Llama-3_1-8B-Instruct",
              "Mixtral-8x7B-Instruct-v0.1", "Meta-Llama-3_1-70B-Instruct", "gemini-1.5-pro-002")


def register(app: typer.Typer) -> None:
    """Add the commands to the ``bench`` group."""
    from coe_gateway.cli.bench import bench_app

    group = bench_app(app)
    group.command("pacing")(pacing)
    group.command("ledger")(ledger)
    group.command("cache")(cache)


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


# -- pacing -----------------------------------------------------------------------------------


def mmlu_pro_traffic(path: Path, models: tuple[str, ...] = SIM_MODELS, seed: int = 0) -> Any:
    """Real traffic: MMLU-Pro queries; predicted quality = each model's per-category mean on a
    random half (a category router), realised quality = its recorded score; costs by the
    evaluation's cost model (list prices, else active-parameter tiers)."""
    from coe_gateway.budget_sim import Traffic
    from coe_gateway.eval.costs import CostModel, resolve_prices
    from coe_gateway.eval.datasets import load_models_json, split_indices
    from coe_gateway.eval.suite import CostSpec
    from coe_gateway.records import load_jsonl

    records = load_jsonl(path).select_models(list(models))
    keep = np.flatnonzero(np.isfinite(records.scores).all(axis=1))
    records = records.subset(keep)
    train_idx, test_idx, _ = split_indices(records, 0.5, seed, use_source_split=False)
    train, test = records.subset(train_idx), records.subset(test_idx)
    spec = CostSpec(model="tokens-times-price")
    prices = resolve_prices(list(models), spec, load_models_json(path.parent / "models.json"))
    cost_model = CostModel.fit(spec, prices, train)
    table = _category_means(train)
    quality = np.stack([table.get(c, cast(np.ndarray, np.nanmean(train.scores, axis=0)))
                        for c in test.categories])  # (N, E)
    return Traffic(tuple(models), quality, test.scores, cost_model.estimate(test),
                   cost_model.realised(test))


def _category_means(records: Any) -> dict[str | None, np.ndarray]:
    cats = np.array([str(c) for c in records.categories])
    return {c: np.nanmean(records.scores[cats == str(c)], axis=0)
            for c in set(records.categories)}


def pacing(
    budget_share: Annotated[float, typer.Option(help="monthly budget as a share of what "
                                                "quality-first would spend")] = 0.3,
    per_day: Annotated[int, typer.Option(help="weekday requests on day 1 (doubles by day 30)")]
    = 300,
    lams: Annotated[str, typer.Option(help="comma-separated lambda values")] = "0.1,1,10",
    data: Annotated[Path | None, typer.Option(help="routing records (JSONL)")] = None,
    synthetic: Annotated[bool, typer.Option(help="synthetic traffic instead")] = False,
    tuned: Annotated[bool, typer.Option(help="also the trade-off whose lambda, found after "
                                        "the fact, spends the whole budget")] = True,
    seed: int = 0,
) -> None:
    """Spend versus budget over a simulated month: budget-paced against plain trade-off."""
    from coe_gateway.budget_sim import daily_counts, run_month, synthetic_traffic
    from coe_gateway.policies import BudgetPaced, QualityFirst, TradeOff

    traffic = synthetic_traffic(seed=seed) if synthetic else mmlu_pro_traffic(
        data or DATA / "mmlu_pro" / "records.jsonl.gz", seed=seed)
    counts = daily_counts(per_day=per_day, seed=seed)
    unlimited = run_month("quality-first", QualityFirst(), traffic, 1e12, counts, seed)
    budget = budget_share * float(unlimited.cum_spend[-1])
    console = Console(width=120)
    console.print(f"{int(counts.sum())} requests over 30 days, monthly budget ${budget:.4f} "
                  f"({budget_share:.0%} of quality-first's ${unlimited.cum_spend[-1]:.4f}, "
                  f"whose quality is {unlimited.quality:.3f}); {_load()}")
    table = Table("policy", "lam", "spent/budget", "day 10", "day 20", "max gap",
                  "refused", "first 402", "quality")
    for lam in (float(x) for x in lams.split(",")):
        for policy in (TradeOff(lam=lam), BudgetPaced(lam=lam)):
            r = run_month(policy.kind, policy, traffic, budget, counts, seed)
            table.add_row(policy.kind, f"{lam:g}", f"{r.cum_spend[-1] / budget:.3f}",
                          f"{r.cum_spend[9] / budget:.2f}", f"{r.cum_spend[19] / budget:.2f}",
                          f"{r.tracking_error:.3f}", str(r.refused),
                          str(r.first_refusal_day or "-"), f"{r.quality:.3f}")
    if tuned:
        lam = _hindsight_lam(traffic, budget, counts, seed)
        r = run_month("trade-off", TradeOff(lam=lam), traffic, budget, counts, seed)
        table.add_row("trade-off, lam tuned in hindsight", f"{lam:.3g}",
                      f"{r.cum_spend[-1] / budget:.3f}", f"{r.cum_spend[9] / budget:.2f}",
                      f"{r.cum_spend[19] / budget:.2f}", f"{r.tracking_error:.3f}",
                      str(r.refused), str(r.first_refusal_day or "-"), f"{r.quality:.3f}")
    console.print(table)
    console.print("day 10/20: share of the budget spent by then (even pacing: 0.33/0.67); "
                  "max gap: largest distance from even pacing, as a share of the budget; "
                  "quality: mean score over all requests, a refused one counts 0")


def _hindsight_lam(traffic: Any, budget: float, counts: np.ndarray, seed: int,
                   steps: int = 10) -> float:
    """The smallest lambda (bisection in log space) whose plain trade-off never runs dry:
    what an operator could only pick knowing the month's traffic in advance."""
    from coe_gateway.budget_sim import run_month
    from coe_gateway.policies import TradeOff

    lo, hi = -3.0, 3.0  # log10 lambda
    for _ in range(steps):
        mid = (lo + hi) / 2
        r = run_month("trade-off", TradeOff(lam=10**mid), traffic, budget, counts, seed)
        lo, hi = (mid, hi) if r.refused else (lo, mid)
    return float(10**hi)


# -- ledger -----------------------------------------------------------------------------------


def ledger(
    redis_url: Annotated[str, typer.Option(help="Redis to measure")] = "redis://127.0.0.1:6379/0",
    concurrency: Annotated[int, typer.Option(help="requests in flight")] = 32,
    seconds: Annotated[float, typer.Option(help="duration of each measurement")] = 3.0,
) -> None:
    """Ledger operations per second: reserve + settle pairs and usage reads."""
    table = Table("ledger", "operation", "ops/s", "p50 ms", "p99 ms")
    for name, row in asyncio.run(_ledger_bench(redis_url, concurrency, seconds)):
        table.add_row(name, *row)
    console = Console(width=120)
    console.print(f"concurrency {concurrency}, {seconds:g} s each; {_load()}")
    console.print(table)


async def _ledger_bench(url: str, concurrency: int, seconds: float) -> list[tuple[str, Any]]:
    import redis.asyncio as aioredis

    from coe_gateway.ledger import InMemoryLedger
    from coe_gateway.redis_ledger import RedisLedger

    prefix = f"coe-bench-{uuid.uuid4().hex[:8]}:"
    client = aioredis.from_url(url, max_connections=concurrency + 4)
    rows = []
    try:
        for name, led in (("redis", RedisLedger(client, prefix=prefix)),
                          ("in-process", InMemoryLedger())):
            limits = {"day": 1e6, "month": 1e7}

            async def pair(led: Any = led) -> None:
                await led.settle(await led.reserve("bench", 1e-4, limits), 9e-5)

            async def read(led: Any = led) -> None:
                await led.usage("bench", limits)

            for op, fn in (("reserve+settle", pair), ("usage", read)):
                rows.append((name, (op, *_fmt(await _drive(fn, concurrency, seconds)))))
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    return rows


async def _drive(fn: Any, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    """Run ``fn`` from ``concurrency`` tasks for ``seconds``; (ops/s, latencies in s)."""
    lat: list[float] = []
    end = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < end:
            t = time.perf_counter()
            await fn()
            lat.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(lat) / (time.perf_counter() - start), lat


def _fmt(result: tuple[float, list[float]]) -> tuple[str, str, str]:
    rate, lat = result
    q = np.quantile(np.array(lat) * 1e3, [0.5, 0.99]) if lat else [np.nan, np.nan]
    return f"{rate:,.0f}", f"{q[0]:.2f}", f"{q[1]:.2f}"


# -- cache ------------------------------------------------------------------------------------


def cache(
    redis_url: Annotated[str | None, typer.Option(help="Redis for the cache (and ledger), "
                                                  "best a scratch database such as "
                                                  "redis://127.0.0.1:6379/15; its keys of "
                                                  "the anonymous tenant are deleted after; "
                                                  "default: in-process")] = None,
    requests: Annotated[int, typer.Option(help="requests timed per row")] = 300,
) -> None:
    """Cache-hit latency through the gateway (p50, p99), plain and streamed, beside a miss
    answered by a fast fake upstream. Gateway and upstream run in their own processes."""
    rows = run_cache_bench(redis_url, requests)
    table = Table("request", "n", "p50 ms", "p99 ms", "mean ms")
    for name, lat in rows:
        ms = np.array(lat) * 1e3
        table.add_row(name, str(len(ms)), f"{np.quantile(ms, 0.5):.2f}",
                      f"{np.quantile(ms, 0.99):.2f}", f"{statistics.fmean(ms):.2f}")
    console = Console(width=120)
    console.print(f"sequential requests on one keep-alive connection, cache "
                  f"{'in Redis' if redis_url else 'in-process'}; {_load()}")
    console.print(table)


def run_cache_bench(redis_url: str | None, n: int) -> list[tuple[str, list[float]]]:
    """Start a fake upstream and a gateway (cache on), time hits and misses, stop both."""
    import tempfile

    import httpx
    import yaml

    from coe_gateway.bench.overhead import gateway_config
    from coe_gateway.testing.servers import free_port, python_argv, run_process

    up_port, gw_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    cfg = {**gateway_config(upstream, gw_port), "cache": {"enabled": True},
           "redis_url": redis_url}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(cfg))
        up_argv = python_argv("-m", "uvicorn", "--factory",
                              "coe_gateway.testing.fake_upstream:app_factory", "--port",
                              str(up_port), "--log-level", "warning", "--no-access-log")
        gw_argv = python_argv("-m", "coe_gateway", "serve", "--config", str(path))
        try:
            with run_process(up_argv, f"{upstream}/health"), \
                    run_process(gw_argv, f"http://127.0.0.1:{gw_port}/ready"), \
                    httpx.Client(base_url=f"http://127.0.0.1:{gw_port}", timeout=30) as client:
                return _time_cache(client, n)
        finally:
            if redis_url:
                _drop_anonymous(redis_url)


def _drop_anonymous(url: str) -> None:
    """Delete what the bench gateway left in Redis (anonymous tenant: ledger and cache)."""
    import redis

    client = redis.Redis.from_url(url)
    keys = [k for pattern in ("coe:{anonymous}:*", "coe:cache:{anonymous}:*")
            for k in client.scan_iter(match=pattern, count=1000)]
    if keys:
        client.delete(*keys)
    client.close()


def _time_cache(client: Any, n: int) -> list[tuple[str, list[float]]]:
    tag = uuid.uuid4().hex[:8]  # a fresh prompt: a Redis cache may hold older runs

    def body(text: str, stream: bool = False) -> dict[str, Any]:
        return {"model": "auto", "temperature": 0, "max_tokens": 16, "stream": stream,
                "messages": [{"role": "user", "content": text}]}

    def timed(make: Any, stream: bool, want: str) -> list[float]:
        out = []
        for i in range(n):
            t = time.perf_counter()
            if stream:
                with client.stream("POST", "/v1/chat/completions",
                                   json=make(i)) as r:
                    for _ in r.iter_bytes():
                        pass
            else:
                r = client.post("/v1/chat/completions", json=make(i))
            out.append(time.perf_counter() - t)
            if r.headers.get("x-coe-cache") != want:
                raise RuntimeError(f"expected cache {want}, got {r.headers.get('x-coe-cache')}")
        return out

    for stream in (False, True):  # fill the cache
        client.post("/v1/chat/completions", json=body(f"hit {tag}", stream)).read()
    return [
        ("miss (fake upstream)", timed(lambda i: body(f"miss {tag} {i}"), False, "miss")),
        ("exact hit", timed(lambda i: body(f"hit {tag}"), False, "exact")),
        ("exact hit, streamed", timed(lambda i: body(f"hit {tag}", True), True, "exact")),
    ]
