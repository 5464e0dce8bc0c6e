"""``coe-gateway train``: train routers from routing records, build the static encoder, and
benchmark routing decisions.

    coe-gateway train router KIND DATA... --out DIR [-o key=value ...] [--options FILE]
    coe-gateway train encoder [--dim 256] [--out DIR]
    coe-gateway train bench [--router DIR ...] [--queries 200] [--batch 64]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
        TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=True)


def router(
    kind: Annotated[str, typer.Argument(help="router kind (knn, cluster, coe, mlp, mf, irt, "
                                        "profile, prior; image-aware: image-knn, "
                                        "image-linearmf, image-mlpmf, image-kmeans, "
                                        "image-cmr with -o features='[pixels,ocr,stats]' "
                                        "-o fusion=mean|concat|adaptive)")],
    data: Annotated[list[Path], typer.Argument(help="routing records (JSONL[.gz]) or "
                                               "RouterBench CSV/pickle", exists=True)],
    out: Annotated[Path, typer.Option(help="directory for router.json + weights.safetensors")],
    option: Annotated[list[str] | None, typer.Option("--option", "-o",
                                                     help="key=value (YAML value; repeat)")] = None,
    options: Annotated[Path | None, typer.Option(help="YAML file of options")] = None,
    split: Annotated[str, typer.Option(help="train | all")] = "train",
    test_fraction: Annotated[float, typer.Option(help="as the eval suite's split")] = 0.3,
    seed: Annotated[int, typer.Option(help="as the eval suite's split")] = 0,
    experts: Annotated[str | None, typer.Option(help="comma-separated models (default all)")]
    = None,
) -> None:
    """Train a router on the records' train split and save it."""
    import time

    from coe_gateway.config import read_yaml, resolve_option_paths
    from coe_gateway.errors import ConfigError
    from coe_gateway.records import RecordError
    from coe_gateway.routers.training import load_split, parse_options, train_router

    try:
        base = read_yaml(options) if options else {}
        if options and isinstance(base, dict):  # paths in the file: against the file
            base = resolve_option_paths(base, options.resolve().parent)
        opts = parse_options(option or [], base if isinstance(base, dict) else {})
        train = load_split([str(p) for p in data], split, test_fraction, seed)
        names = [e.strip() for e in experts.split(",")] if experts else None
        t0 = time.perf_counter()
        with _progress() as progress:
            tasks: dict[str, TaskID] = {}

            def report(what: str, done: int, total: int) -> None:
                if what not in tasks:
                    tasks[what] = progress.add_task(what, total=total)
                progress.update(tasks[what], completed=done, total=total)

            trained = train_router(kind, train, names, opts, report)
        trained.save(out)
    except (ConfigError, RecordError, ValueError, TypeError) as exc:
        _fail(exc)
    calib = getattr(trained, "calibration", None)
    typer.echo(f"{kind} router for {len(trained.experts)} experts trained on {len(train)} "
               f"records in {time.perf_counter() - t0:.1f} s -> {out}"
               + (f"; calibration {calib}" if calib else ""))


def encoder(
    dim: Annotated[int, typer.Option(help="width after PCA")] = 256,
    out: Annotated[Path | None, typer.Option(help="directory (default: the cache, where the "
                                             "static encoder spec looks)")] = None,
    source: Annotated[Path | None, typer.Option(help="sentence-transformers model directory "
                                                "(default: the shipped MiniLM)")] = None,
) -> None:
    """Distil the static (model2vec-style) encoder from MiniLM, offline."""
    from coe_gateway.routers.distill import build_static_encoder
    from coe_gateway.routers.embedding import EncoderSpec

    target = out or EncoderSpec(kind="static", dim=dim).static_dir
    with _progress() as progress:
        task = progress.add_task("embedding vocabulary tokens", total=None)
        path = build_static_encoder(target, source, dim,
                                    progress=lambda d, n: progress.update(task, completed=d,
                                                                          total=n))
    typer.echo(f"static encoder -> {path}")


def bench(
    router_dir: Annotated[list[Path] | None, typer.Option("--router", help="saved router "
                                                          "directory (repeat); default: small "
                                                          "routers fitted on MMLU-Pro")] = None,
    data: Annotated[Path, typer.Option(help="records for queries (and default routers)")] =
    Path("../shared/data/mmlu_pro/records.jsonl.gz"),
    queries: Annotated[int, typer.Option(help="single-query decisions timed")] = 200,
    batch: Annotated[int, typer.Option(help="batch size for throughput")] = 64,
    tokens: Annotated[int, typer.Option(help="tokens of the single query")] = 64,
    minilm: Annotated[bool, typer.Option(help="also time kNN on MiniLM")] = True,
    blas_threads: Annotated[int, typer.Option(help="BLAS threads")] = 1,
) -> None:
    """Decision latency (embedding + router + policy) and batched throughput; prints a table."""
    import os

    from rich.console import Console
    from rich.table import Table

    from coe_gateway.routers.bench import run_bench

    rows = run_bench([str(p) for p in router_dir or []], str(data), queries, batch, tokens,
                     minilm, blas_threads)
    load = os.getloadavg()[0]
    table = Table(title=f"routing decision latency ({os.cpu_count()} cores, load {load:.2f})")
    for col in ("router", "encoder", "p50 ms", "p99 ms", "batch q/s"):
        table.add_column(col, justify="left" if col in ("router", "encoder") else "right")
    for r in rows:
        table.add_row(r["router"], r["encoder"], f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                      f"{r['batch_qps']:.0f}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add the ``train`` command group."""
    group = typer.Typer(no_args_is_help=True,
                        help="Train routers, build the static encoder, benchmark decisions.")
    group.command("router")(router)
    group.command("encoder")(encoder)
    group.command("bench")(bench)
    from coe_gateway.cli.mot import train_mot

    group.command("mot")(train_mot)
    app.add_typer(group, name="train")
