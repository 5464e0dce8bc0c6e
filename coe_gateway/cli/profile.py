"""``coe-gateway profile``: build, show and use LLM profiles (RouteProfile).

    coe-gateway profile build --router DIR DATA... --model NAME [--fraction 0.05] --out FILE
    coe-gateway profile export --router DIR DATA... --out-dir profiles/<set>
    coe-gateway profile add --router DIR PROFILE.json [--out DIR]
    coe-gateway profile show PROFILE.json
    coe-gateway profile holdout --suite eval/mmlu_pro.yaml --model NAME [--fraction 0.05]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

RouterOpt = Annotated[Path, typer.Option("--router", help="saved profile router directory",
                                         exists=True, file_okay=False)]
DataArg = Annotated[list[Path], typer.Argument(help="routing records (JSONL[.gz]) or "
                                               "RouterBench CSV", exists=True)]
FactsOpt = Annotated[Path | None, typer.Option(help="models.json (costs and parameters in "
                                               "the profile); default: beside the data")]


def _facts(path: Path | None, data: list[Path]) -> Any:
    from coe_gateway.routers.facts import load_facts

    candidate = path or data[0].parent / "models.json"
    return load_facts(str(candidate)) if candidate.exists() else None


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _router(path: Path) -> Any:
    from coe_gateway.routers.profile import ProfileRouter
    from coe_gateway.routers.registry import load_router

    router = load_router(path)
    if not isinstance(router, ProfileRouter):
        _fail(ValueError(f"{path} holds a {router.kind!r} router, not a profile router"))
    return router


def _sample(records: Any, fraction: float, seed: int) -> Any:
    import numpy as np

    if fraction >= 1.0:
        return records
    keep = np.random.default_rng(seed).random(len(records)) < fraction
    return records.subset(np.flatnonzero(keep))


def build(
    router_dir: RouterOpt, data: DataArg,
    model: Annotated[str, typer.Option(help="the model to profile (a score column)")],
    out: Annotated[Path, typer.Option(help="profile JSON to write")],
    fraction: Annotated[float, typer.Option(help="share of the records to use")] = 1.0,
    split: Annotated[str, typer.Option(help="train | test | all")] = "train",
    seed: Annotated[int, typer.Option(help="seed of the split and the sample")] = 0,
    models_json: FactsOpt = None,
) -> None:
    """Build one model's profile from its records, in a profile router's frame."""
    from coe_gateway.routers.training import load_split

    router = _router(router_dir)
    try:
        records = _sample(load_split([str(p) for p in data], split, seed=seed), fraction, seed)
        if model not in records.models:
            raise ValueError(f"{model!r} has no scores in {[str(p) for p in data]}")
        prof = router.profile_of(model, records, {"records": [str(p) for p in data],
                                                  "split": split, "fraction": fraction,
                                                  "seed": seed, "n_records": len(records)},
                                 facts=_facts(models_json, data))
    except ValueError as exc:
        _fail(exc)
    prof.write(out)
    typer.echo(f"profile of {model}: quality {prof.overall.quality:.3f} over "
               f"{prof.overall.n} records -> {out}")


def export(
    router_dir: RouterOpt, data: DataArg,
    out_dir: Annotated[Path, typer.Option(help="folder for one JSON per expert")],
    split: Annotated[str, typer.Option(help="train | test | all")] = "train",
    seed: Annotated[int, typer.Option(help="seed of the split")] = 0,
    models_json: FactsOpt = None,
) -> None:
    """Write the profile of every expert of a profile router (from the records given)."""
    from coe_gateway.routers.training import load_split

    router = _router(router_dir)
    records = load_split([str(p) for p in data], split, seed=seed)
    feats = router.query_model.features(records.queries())
    facts = _facts(models_json, data)
    for model in router.experts:
        if model in records.models:
            prof = router.profile_of(model, records, {"records": [str(p) for p in data],
                                                      "split": split, "n_records": len(records)},
                                     feats, facts)
            prof.write(out_dir / f"{model.replace('/', '__')}.json")
    typer.echo(f"{len(router.experts)} profiles -> {out_dir}")


def add(
    router_dir: RouterOpt,
    profiles: Annotated[list[Path], typer.Argument(help="profile JSON files", exists=True)],
    out: Annotated[Path | None, typer.Option(help="where to save (default: in place)")] = None,
) -> None:
    """Make a profile router route to more models, from their profiles alone."""
    from coe_gateway.profiles.profile import read_profile

    router = _router(router_dir)
    try:
        for path in profiles:
            router = router.with_profile(read_profile(path))
    except ValueError as exc:
        _fail(exc)
    router.save(out or router_dir)
    typer.echo(f"profile router now routes to {len(router.experts)} experts -> "
               f"{out or router_dir}")


def show(profile: Annotated[Path, typer.Argument(help="profile JSON", exists=True)]) -> None:
    """Print a profile's groups as tables."""
    from rich.console import Console
    from rich.table import Table

    from coe_gateway.profiles.profile import read_profile

    try:
        prof = read_profile(profile)
    except ValueError as exc:
        _fail(exc)
    console = Console()
    console.print(f"[bold]{prof.model}[/] (frame {prof.frame}): quality "
                  f"{prof.overall.quality:.3f} over {prof.overall.n} records; source "
                  f"{prof.source}")
    for title, groups in (("category", list(prof.categories.items())),
                          ("cluster", [(f"{i} ({g.top_category})", g)
                                       for i, g in enumerate(prof.clusters)]),
                          ("difficulty band", [(f"{g.low:.2f}..{g.high:.2f}", g)
                                               for g in prof.difficulty_bands])):
        table = Table(title=title)
        for col in (title, "quality", "n", "cost USD", "example queries"):
            table.add_column(col)
        for name, g in groups:
            table.add_row(name, f"{g.quality:.3f}", str(g.n),
                          "-" if g.cost_usd is None else f"{g.cost_usd:.3g}",
                          ", ".join(g.query_ids[:3]))
        console.print(table)


def holdout(
    suite: Annotated[Path, typer.Option(help="evaluation suite (data, split, costs)",
                                        exists=True)],
    model: Annotated[str, typer.Option(help="the model to hold out")],
    fraction: Annotated[float, typer.Option(help="share of its training records profiled")]
    = 0.05,
    seed: Annotated[int, typer.Option(help="seed of the sample")] = 0,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="router option "
                                                     "key=value (repeat)")] = None,
) -> None:
    """Hold a model out of training, profile it from a few records, route with it."""
    from rich.console import Console
    from rich.table import Table

    from coe_gateway.profiles.holdout import run_holdout
    from coe_gateway.routers.training import parse_options

    rows = run_holdout(str(suite), model, fraction, seed, parse_options(option or []))
    table = Table(title=f"held-out model H = {model} ({suite})")
    for col in ("profile router", "AIQ", "cost to match best", "max accuracy", "max share of H"):
        table.add_column(col, justify="left" if col == "router" else "right")
    for r in rows:
        match = r["match_cost_fraction"]
        table.add_row(r["router"], f"{r['aiq']:.4f}", "-" if match is None else f"{match:.3f}",
                      f"{r['max_accuracy']:.4f}", f"{r['held_out_share_max']:.1%}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add the ``profile`` command group."""
    group = typer.Typer(no_args_is_help=True, help="Build, show and route with LLM profiles.")
    for name, fn in (("build", build), ("export", export), ("add", add), ("show", show),
                     ("holdout", holdout)):
        group.command(name)(fn)
    app.add_typer(group, name="profile")
