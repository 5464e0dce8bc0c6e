"""``coe-gateway workers``: launch and supervise a config's local workers and publish where
they are (the fleet file), for gateway processes in ``workers.mode: attach``."""

from __future__ import annotations

from pathlib import Path

import typer

DEFAULT_CONFIG = Path("configs/embedded.yaml")


def workers(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="gateway config YAML"),
) -> None:
    """Run the config's local workers until SIGTERM/SIGINT, publishing them in
    ``workers.fleet_file``. Exit status: 0 after a signal, 1 when they cannot start, 2 for an
    invalid config."""
    from coe_gateway.config import load_config
    from coe_gateway.errors import ConfigError
    from coe_gateway.logsetup import configure_logging
    from coe_gateway.workers.fleet_file import fleet_path
    from coe_gateway.workers.service import run_workers

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"invalid config: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(cfg.server.log_level)
    typer.echo(f"publishing the workers of {config} in {fleet_path(cfg)}", err=True)
    code = run_workers(cfg)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("workers")(workers)
