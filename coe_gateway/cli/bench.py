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


def check(n: int = typer.Option(10000, help="checks per extractor kind")) -> None:
    """The decision latency a cascade adds per tier: extracting three answers and tallying
    them (p50, p99 in microseconds per extractor kind)."""
    from rich.console import Console
    from rich.table import Table

    from coe_gateway.answers.bench import bench_check

    figures = bench_check(n)
    table = Table(title=f"cascade check: extract 3 answers + tally ({n} checks)")
    for col in ("extractor", "p50 us", "p99 us"):
        table.add_column(col, justify="right")
    for kind in sorted({k.split(".")[0] for k in figures}):
        table.add_row(kind, f"{figures[kind + '.p50_us']:.1f}",
                      f"{figures[kind + '.p99_us']:.1f}")
    Console().print(table)


def features(
    images: int = typer.Option(4, help="real MathVision images (plus one synthetic)"),
    repeat: int = typer.Option(5, help="rounds over the images (OCR: at most 2)"),
    threads: int = typer.Option(1, help="torch intra-op threads (the gateway's "
                                "images.feature_threads default: 1; 0 = torch's default)"),
) -> None:
    """Latency of image decoding and of each image feature extractor on 1024x768 JPEGs
    (p50, p99 ms), the serving path without OCR, and a verdict against the target."""
    from rich.console import Console
    from rich.table import Table

    from coe_gateway.vision.features.bench import bench_features, verdict

    if threads > 0:
        import torch

        torch.set_num_threads(threads)

    rows = bench_features(images, repeat, min(repeat, 2))
    table = Table(title="image features, one 1024x768 image per call (ms), torch threads "
                  f"{threads or 'default'}")
    for col in ("step", "n", "p50", "p99", "mean"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["step"]), f"{r['n']:.0f}", f"{r['p50_ms']:.1f}",
                      f"{r['p99_ms']:.1f}", f"{r['mean_ms']:.1f}")
    Console().print(table)
    Console().print(verdict(rows))


def register(app: typer.Typer) -> None:
    bench_app(app).command("overhead")(overhead)
    bench_app(app).command("check")(check)
    bench_app(app).command("features")(features)
