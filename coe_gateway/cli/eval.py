"""``coe-gateway eval``: offline evaluation of routing policies.

    coe-gateway eval SUITE.yaml [SUITE.yaml ...] [--out DIR]   (same as ``eval run``)
    coe-gateway eval replay LOG.jsonl [--out DIR] [--records OUT.jsonl]
    coe-gateway eval summary eval/reports
    coe-gateway eval seeds SUITE.yaml [--seed 0 --seed 1 ...] [--router NAME ...]
    coe-gateway eval bench [--suite eval/mmlu_pro.yaml] [--points 50]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    # TyperGroup's methods take the Context of the click that typer vendors (typer._click)
    from typer._click import Context

DEFAULT_CACHE = "~/.cache/coe-gateway/eval"


class _RunByDefault(TyperGroup):
    """``eval SUITE.yaml`` means ``eval run SUITE.yaml``: a first argument that is not a
    subcommand (or an option) is taken as a suite path."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def run(
    suites: Annotated[list[Path], typer.Argument(help="suite YAML files", exists=True,
                                                 dir_okay=False)],
    out: Annotated[Path | None, typer.Option(help="output folder (one suite) or parent folder "
                                             "(several); default: reports/<suite name> beside "
                                             "the suite file")] = None,
    cache_dir: Annotated[str, typer.Option(help="router prediction cache")] = DEFAULT_CACHE,
    no_cache: Annotated[bool, typer.Option(help="do not read or write the cache")] = False,
) -> None:
    """Evaluate suites: train their routers, sweep their policies, write reports and plots."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from coe_gateway.config import expand
    from coe_gateway.errors import ConfigError
    from coe_gateway.eval.runner import run_suite
    from coe_gateway.eval.suite import load_suite
    from coe_gateway.records import RecordError

    console = Console()
    for path in suites:
        try:
            name = load_suite(path).name
            target = out if out is not None and len(suites) == 1 else \
                (out or path.parent / "reports") / name
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console, transient=True) as progress:
                result = run_suite(path, target, progress=progress,
                                   cache_dir=None if no_cache else expand(cache_dir))
        except (ConfigError, RecordError) as exc:
            _fail(exc)
        best = max(result.curves, key=lambda c: c.metrics["aiq"] or 0.0)
        console.print(f"[bold]{name}[/]: {result.data['test']} test queries, "
                      f"{len(result.data['models'])} models; best AIQ {best.label} "
                      f"{best.metrics['aiq']:.3f}; report {target / 'report.md'} "
                      f"({result.timing['total_s']:.1f} s)")


def replay(
    log: Annotated[Path, typer.Argument(help="routing log (JSONL)", exists=True,
                                        dir_okay=False)],
    out: Annotated[Path | None, typer.Option(help="output folder")] = None,
    records: Annotated[Path | None, typer.Option(help="also write decisions with an outcome "
                                                 "as routing records (JSONL)")] = None,
) -> None:
    """Analyse the gateway's routing log: shares, cost, latency, calibration."""
    from coe_gateway.eval.replay import to_markdown, write_replay
    from coe_gateway.records import RecordError

    target = out or log.parent / f"{log.name.split('.')[0]}-replay"
    try:
        summary = write_replay(log, target, records)
    except RecordError as exc:
        _fail(exc)
    typer.echo(to_markdown(summary, log.name))
    typer.echo(f"written to {target}")


def summary(
    reports: Annotated[list[Path], typer.Argument(help="results.json files or folders holding "
                                                  "them (searched recursively)")],
) -> None:
    """Print one Markdown table over several suites' results (for the README)."""
    import json

    from coe_gateway.eval.report import summary_table

    files = sorted({f for p in reports
                    for f in ([p] if p.is_file() else p.rglob("results.json"))})
    if not files:
        _fail(FileNotFoundError(f"no results.json under {[str(p) for p in reports]}"))
    typer.echo(summary_table([json.loads(f.read_text(encoding="utf-8")) for f in files]))


def bench(
    suite: Annotated[Path, typer.Option(help="suite to time")] = Path("eval/mmlu_pro.yaml"),
    points: Annotated[int, typer.Option(help="points per policy sweep")] = 50,
    router: Annotated[list[str] | None, typer.Option(help="routers of the suite to use "
                                                     "(repeat; default: prior)")] = None,
) -> None:
    """Time a suite's sweeps on all its records (router training excluded); print figures."""
    from rich.console import Console
    from rich.table import Table

    from coe_gateway.eval.bench import bench_suite

    figures = bench_suite(suite, points, router or ["prior"])
    table = Table(title=f"eval bench: {suite}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:.2f}" if isinstance(value, float) else str(value))
    Console().print(table)


def seeds(
    suite: Annotated[Path, typer.Argument(help="suite YAML", exists=True, dir_okay=False)],
    seed: Annotated[list[int] | None, typer.Option(help="split seeds (repeat; default 0-4)")
                    ] = None,
    router: Annotated[list[str] | None, typer.Option(help="routers of the suite to use "
                                                     "(repeat; default: all)")] = None,
    out: Annotated[Path | None, typer.Option(help="also write the table (Markdown)")] = None,
    cache_dir: Annotated[str, typer.Option(help="router prediction cache")] = DEFAULT_CACHE,
) -> None:
    """Run a suite over several split seeds; print each curve's peak accuracy and cost to
    match the best single model, per seed and mean ± sd."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from coe_gateway.config import expand
    from coe_gateway.errors import ConfigError
    from coe_gateway.eval.seeds import run_seeds, to_markdown
    from coe_gateway.records import RecordError

    console = Console()
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            fig = run_seeds(suite, seed or [0, 1, 2, 3, 4], router, expand(cache_dir),
                            progress)
    except (ConfigError, RecordError) as exc:
        _fail(exc)
    table = to_markdown(fig)
    typer.echo(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table, encoding="utf-8")


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command group."""
    group = typer.Typer(cls=_RunByDefault, no_args_is_help=True,
                        help="Offline evaluation of routing policies (suites, replay, bench).")
    group.command("run")(run)
    group.command("replay")(replay)
    group.command("seeds")(seeds)
    group.command("summary")(summary)
    group.command("bench")(bench)
    from coe_gateway.cli.eval_images import eval_images
    from coe_gateway.cli.mot import eval_mot

    group.command("mot")(eval_mot)
    group.command("images")(eval_images)
    app.add_typer(group, name="eval")
