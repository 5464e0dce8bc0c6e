"""``coe-gateway bench ...``: benchmarks that print figures.

Other command modules add their own benchmarks to this group through ``bench_app(app)``.
"""

from __future__ import annotations

import typer


def bench_app(app: typer.Typer) -> typer.Typer:
    """The ``bench`` sub-app of ``app`` (created on first use)."""
    for group in app.registered_groups:
        if group.name == "bench" and group.typer_instance is not None:
            return group.typer_instance
    sub = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)
    app.add_typer(sub, name="bench")
    return sub


def overhead(
    rates: str = typer.Option("50,100,200", help="request rates per second, comma-separated"),
    seconds: float = typer.Option(10.0, help="seconds of load per rate"),
) -> None:
    """The gateway's added latency (p50, p99) over a fast fake upstream, per request rate."""
    from rich.console import Console
    from rich.table import Table

    from coe_gateway.bench.overhead import run

    rows = run([float(r) for r in rates.split(",")], seconds)
    table = Table(title="gateway overhead (ms): through the gateway minus direct")
    for col in ("rate/s", "n", "errors", "direct p50", "direct p99", "gw p50", "gw p99",
                "added p50", "added p99"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*(f"{r[k]:.0f}" for k in ("rate", "n", "errors")),
                      *(f"{r[k]:.2f}" for k in ("direct_p50", "direct_p99", "gateway_p50",
                                                "gateway_p99", "added_p50", "added_p99")))
    Console().print(table)


def register(app: typer.Typer) -> None:
    bench_app(app).command("overhead")(overhead)
