"""The gateway's own added latency: the same fast upstream, called straight and through the
gateway, at several request rates (open loop: requests start on a fixed schedule whether or
not earlier ones finished, so queueing shows up in the tail).

The fake upstream and the gateway each run in their own process (uvicorn), the load generator
in this one; the gateway routes with its configured router (``auto``) over one expert that is
the fake upstream. Added latency = percentile through the gateway - same percentile direct.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import yaml

from coe_gateway.testing.servers import free_port, python_argv, run_process

BODY = {"messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 8}


@dataclass(frozen=True)
class RateResult:
    rate: float
    direct_ms: np.ndarray
    gateway_ms: np.ndarray
    errors: int

    def pct(self, which: np.ndarray, q: float) -> float:
        return float(np.percentile(which, q))

    def row(self) -> dict[str, float]:
        d, g = self.direct_ms, self.gateway_ms
        return {
            "rate": self.rate, "n": float(len(g)), "errors": float(self.errors),
            "direct_p50": self.pct(d, 50), "direct_p99": self.pct(d, 99),
            "gateway_p50": self.pct(g, 50), "gateway_p99": self.pct(g, 99),
            "added_p50": self.pct(g, 50) - self.pct(d, 50),
            "added_p99": self.pct(g, 99) - self.pct(d, 99),
        }


async def _open_loop(client: httpx.AsyncClient, url: str, model: str, rate: float,
                     seconds: float) -> tuple[list[float], int]:
    n = max(1, int(rate * seconds))
    latencies: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        t0 = time.perf_counter()
        r = await client.post(url, json={**BODY, "model": model})
        if r.status_code == 200:
            latencies.append((time.perf_counter() - t0) * 1e3)
        else:
            errors += 1

    start = time.perf_counter()
    tasks = []
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies, errors


def gateway_config(upstream: str, port: int, router: str = "prior") -> dict[str, object]:
    return {
        "experts": [{"name": "fast", "backend": "openai", "model": "fake",
                     "urls": [f"{upstream}/v1"], "price": {"input_per_mtok": 0.1,
                                                           "output_per_mtok": 0.1}}],
        "routing": {"default_router": router, "routers": [{"name": router, "kind": "prior"}]},
        "server": {"port": port, "log_level": "warning"},
    }


async def _measure(direct: str, gateway: str, rates: Sequence[float],
                   seconds: float) -> list[RateResult]:
    from httpx_aiohttp import AiohttpTransport  # the lighter load generator

    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    out = []
    async with httpx.AsyncClient(limits=limits, timeout=30,
                                 transport=AiohttpTransport(limits=limits)) as client:
        for url, model in ((direct, "fake"), (gateway, "auto")):  # warm up both paths
            await _open_loop(client, url, model, 50, 1.0)
        for rate in rates:
            d, de = await _open_loop(client, direct, "fake", rate, seconds)
            g, ge = await _open_loop(client, gateway, "auto", rate, seconds)
            out.append(RateResult(rate, np.array(d), np.array(g), de + ge))
    return out


def run(rates: Sequence[float] = (50, 100, 200), seconds: float = 10.0) -> list[dict[str, float]]:
    """Start the fake upstream and a gateway over it, measure, and stop both."""
    up_port, gw_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "bench.yaml"
        cfg_path.write_text(yaml.safe_dump(gateway_config(upstream, gw_port)))
        up_argv = python_argv("-m", "uvicorn", "--factory",
                              "coe_gateway.testing.fake_upstream:app_factory",
                              "--port", str(up_port), "--log-level", "warning",
                              "--no-access-log")
        gw_argv = python_argv("-m", "coe_gateway", "serve", "--config", str(cfg_path))
        with run_process(up_argv, f"{upstream}/health"), \
                run_process(gw_argv, f"http://127.0.0.1:{gw_port}/ready"):
            results = asyncio.run(_measure(f"{upstream}/v1/chat/completions",
                                           f"http://127.0.0.1:{gw_port}/v1/chat/completions",
                                           rates, seconds))
    return [r.row() for r in results]
