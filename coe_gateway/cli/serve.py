"""``coe-gateway serve``: run the gateway (and its workers) from a config file.

``server.workers`` = 1 (the embedded default): one gateway process, which launches its
workers itself (``workers.mode: auto`` or ``launch``). More: that many gateway processes on
one port (``SO_REUSEPORT``) and, in ``auto`` mode, one workers service they all attach to
(:mod:`coe_gateway.server.processes`).
"""

from __future__ import annotations

from pathlib import Path

import typer

DEFAULT_CONFIG = Path("configs/embedded.yaml")


def serve(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="gateway config YAML"),
    host: str | None = typer.Option(None, help="override server.host"),
    port: int | None = typer.Option(None, help="override server.port"),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1,
                                       help="override server.workers (gateway processes)"),
) -> None:
    """Serve the OpenAI-compatible API, launching the configured local workers."""
    from coe_gateway.config import GatewayConfig, load_config
    from coe_gateway.errors import ConfigError
    from coe_gateway.logsetup import configure_logging
    from coe_gateway.server.processes import ProcessGroup, check_port, run_gateway

    try:
        cfg = load_config(config)
        overrides = {k: v for k, v in {"host": host, "port": port, "workers": workers}.items()
                     if v is not None}
        cfg = GatewayConfig.model_validate(
            {**cfg.model_dump(), "server": {**cfg.server.model_dump(), **overrides}})
    except (ConfigError, ValueError) as exc:
        typer.echo(f"invalid config: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(cfg.server.log_level)
    if cfg.server.workers == 1:
        run_gateway(cfg)
        return
    try:
        check_port(cfg.server.host, cfg.server.port)
    except OSError as exc:
        typer.echo(f"cannot listen on {cfg.server.host}:{cfg.server.port}: {exc}", err=True)
        raise typer.Exit(2) from None
    code = ProcessGroup(cfg).run()
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
