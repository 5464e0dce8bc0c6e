"""``coe-gateway train mot`` and ``coe-gateway eval mot``: the Mixture-of-Thoughts fused
expert (:mod:`coe_gateway.fusion`).

    coe-gateway train mot --out DIR [--epochs 1.5] [--no-cross-attention] [--max-minutes 30]
    coe-gateway eval mot --fused DIR --control DIR [--out REPORT.md]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _models_dir(models_dir: Path | None) -> Path:
    from coe_gateway.config import DEFAULT_MODELS_DIR, expand

    return Path(expand(str(models_dir or DEFAULT_MODELS_DIR)))


def train_mot(
    out: Annotated[Path, typer.Option(help="directory for mot.safetensors + mot.json "
                                      "(and checkpoint/, to resume)")],
    epochs: Annotated[float, typer.Option(help="passes over the training split")] = 1.5,
    batch: Annotated[int, typer.Option(help="questions per step")] = 8,
    lr: Annotated[float, typer.Option(help="AdamW peak learning rate")] = 1e-3,
    stacks: Annotated[int, typer.Option(help="Q: interaction layers per expert")] = 3,
    latent: Annotated[int, typer.Option(help="d_s: shared latent width")] = 256,
    heads: Annotated[int, typer.Option(help="cross-attention heads")] = 4,
    cross_attention: Annotated[bool, typer.Option(
        help="--no-cross-attention trains the control (own latents only)")] = True,
    seed: Annotated[int, typer.Option(help="initialisation, order and dropout")] = 42,
    split_seed: Annotated[int, typer.Option(help="the ARC-Easy 70/30 split")] = 0,
    limit: Annotated[int | None, typer.Option(help="first N training questions only")] = None,
    max_minutes: Annotated[float | None, typer.Option(
        help="stop (and save) after this long; rerun to continue")] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads")] = None,
    models_dir: Annotated[Path | None, typer.Option(help="expert checkpoints "
                                                    "(default: coe-gateway models prepare's)")]
    = None,
) -> None:
    """Train the fused model's router and interaction layers on ARC-Easy (train split)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
        TimeElapsedColumn, TimeRemainingColumn

    from coe_gateway.fusion.config import MotConfig
    from coe_gateway.fusion.train import StepLog, TrainConfig, train

    mot = MotConfig(stacks=stacks, latent=latent, heads=heads, cross_attention=cross_attention)
    cfg = TrainConfig(epochs=epochs, batch=batch, lr=lr, seed=seed, split_seed=split_seed,
                      limit=limit, threads=threads)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn(),
               TextColumn("lm {task.fields[lm]:.3f}  router {task.fields[router]:.3f}  "
                          "primary {task.fields[picked]}"))
    with Progress(*columns) as progress:
        task = progress.add_task("train mot", total=None, lm=float("nan"),
                                 router=float("nan"), picked="-")

        def show(s: StepLog) -> None:
            picked = "/".join(f"{p:.2f}" for p in s.picked)
            progress.update(task, completed=s.step, total=s.total, lm=s.lm, router=s.router,
                            picked=picked)

        model = train(mot, cfg, out, _models_dir(models_dir), on_step=show,
                      stop_after_s=max_minutes * 60 if max_minutes else None)
    n = sum(p.numel() for p in model.parameters())
    typer.echo(f"saved {out} ({n:,} trained parameters)")


def eval_mot(
    fused: Annotated[Path, typer.Option(help="the fused model's directory")],
    out: Annotated[Path, typer.Option(help="directory for scores.jsonl, report.md, "
                                      "summary.json (rerun to resume)")],
    control: Annotated[Path | None, typer.Option(
        help="the control (trained with --no-cross-attention)")] = None,
    heldout_n: Annotated[int, typer.Option(help="items drawn from the ARC-Easy held-out "
                                           "set (0: all 1,283)")] = 0,
    ood_n: Annotated[int, typer.Option(help="items drawn from each out-of-distribution set "
                                       "(0: all)")] = 400,
    sets: Annotated[str, typer.Option(help="comma-separated held-out sets")]
    = "arc_easy_heldout,arc_challenge,openbookqa,sciq",
    split_seed: Annotated[int, typer.Option(help="the training run's ARC-Easy split")] = 0,
    threads: Annotated[int | None, typer.Option(help="torch threads")] = None,
    models_dir: Annotated[Path | None, typer.Option(help="expert checkpoints")] = None,
) -> None:
    """Score the fused model, its control and its parts on held-out sets; print the report."""
    import json

    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
        TimeElapsedColumn, TimeRemainingColumn

    from coe_gateway.fusion.evaluate import report, score_rows, summary
    from coe_gateway.fusion.store import load
    from coe_gateway.fusion.tasks import heldout_sets, subsample

    if threads:
        torch.set_num_threads(threads)
    chosen = {}
    for name, items in heldout_sets(split_seed).items():
        if name in sets.split(","):
            n = heldout_n if name == "arc_easy_heldout" else ood_n
            chosen[name] = subsample(items, n, seed=split_seed) if n else items
    model = load(fused, _models_dir(models_dir))
    ctl = load(control, _models_dir(models_dir), experts=model.experts) if control else None
    out.mkdir(parents=True, exist_ok=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn()) as progress:
        task = progress.add_task("eval mot", total=sum(len(v) for v in chosen.values()))
        rows = score_rows(chosen, model, ctl, out / "scores.jsonl",
                          lambda _s, _i, _n: progress.advance(task))
    names = [e.name for e in model.experts]
    text = report(rows, names)
    (out / "report.md").write_text(text + "\n", encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(summary(rows, names), indent=2) + "\n")
    typer.echo(text)
