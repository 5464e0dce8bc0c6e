"""``coe-gateway bench compare``: the gateway and the LiteLLM proxy side by side over the
same fast fake upstream (see :mod:`coe_gateway.bench.compare`). Prints figures, asserts
nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add ``compare`` to the ``bench`` group."""
    from coe_gateway.cli.bench import bench_app

    bench_app(app).command("compare")(compare)


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise typer.BadParameter(f"not a comma-separated list of numbers: {text!r}") from None
    if not rates or min(rates) <= 0:
        raise typer.BadParameter("rates must be positive")
    return rates


def compare(
    seconds: Annotated[float, typer.Option(help="seconds of load per step and per rate")] = 5.0,
    rates: Annotated[str, typer.Option(help="open-loop rates (req/s), comma-separated")]
    = "200,500,1000,2000",
    concurrency: Annotated[int, typer.Option(help="connections of the throughput step")] = 16,
    streams: Annotated[int, typer.Option(
        help="streams sent at once in the burst step")] = 128,
    chunks: Annotated[int, typer.Option(help="content chunks per stream")] = 64,
    chunk_interval_ms: Annotated[float, typer.Option(
        help="the upstream sends one chunk every this many ms")] = 20.0,
    stall_ms: Annotated[float | None, typer.Option(
        help="a gap longer than this is a stall [default: 10x the interval, at most 250]")]
    = None,
    timeout: Annotated[float, typer.Option(help="seconds before a request counts as failed")]
    = 5.0,
    warmup: Annotated[float, typer.Option(help="seconds of warm-up load per target")] = 1.0,
    skip_litellm: Annotated[bool, typer.Option(help="measure direct and the gateway only")]
    = False,
    setup_litellm: Annotated[bool, typer.Option(
        help="(re)install litellm[proxy] into its venv first (done anyway when absent)")]
    = False,
    litellm_venv: Annotated[Path | None, typer.Option(
        help="LiteLLM's own venv [default: .bench/litellm-venv]")] = None,
    with_budget: Annotated[bool, typer.Option(
        help="add a gateway with a budget file, the Redis ledger and the exact cache")]
    = False,
    redis_url: Annotated[str, typer.Option(help="Redis for --with-budget")]
    = "redis://127.0.0.1:6379/0",
    gateway_workers: Annotated[int, typer.Option(
        help="also measure a gateway with this many processes (when serve supports it)")] = 1,
    stop_on_saturation: Annotated[bool, typer.Option(
        help="skip a target's higher rates once one saturates it")] = True,
    json_path: Annotated[Path | None, typer.Option("--json", help="write all figures here")]
    = None,
    logs: Annotated[Path | None, typer.Option(help="copy the servers' logs to this folder")]
    = None,
) -> None:
    """Gateway vs LiteLLM proxy vs direct: latency, throughput, rate sweep, streaming, CPU."""
    from rich.console import Console

    from coe_gateway.bench.compare import CompareSettings, render, run
    from coe_gateway.bench.litellm_env import DEFAULT_VENV

    settings = CompareSettings(
        seconds=seconds, rates=_rates(rates), concurrency=concurrency, streams=streams,
        chunks=chunks, chunk_interval_s=chunk_interval_ms / 1e3,
        stall_s=None if stall_ms is None else stall_ms / 1e3, timeout_s=timeout, warmup_s=warmup,
        skip_litellm=skip_litellm, setup_litellm=setup_litellm,
        litellm_venv=litellm_venv or DEFAULT_VENV, with_budget=with_budget,
        redis_url=redis_url, gateway_workers=gateway_workers,
        stop_on_saturation=stop_on_saturation, log_dir=logs)
    console = Console()
    err = Console(stderr=True)
    report = run(settings, say=lambda line: err.print(line, highlight=False))
    render(report, settings, console)
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_json(), indent=2))
        err.print(f"figures written to {json_path}")
