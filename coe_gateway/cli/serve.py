"""``coe-gateway serve``: run the gateway (and its workers) from a config file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

DEFAULT_CONFIG = Path("configs/embedded.yaml")


def serve(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="gateway config YAML"),
    host: str | None = typer.Option(None, help="override server.host"),
    port: int | None = typer.Option(None, help="override server.port"),
) -> None:
    """Serve the OpenAI-compatible API, launching the configured vLLM workers."""
    import uvicorn

    from coe_gateway.config import load_config
    from coe_gateway.errors import ConfigError
    from coe_gateway.server.app import create_app

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"invalid config: {exc}", err=True)
        raise typer.Exit(2) from None
    server = cfg.server.model_copy(update={k: v for k, v in {"host": host, "port": port}.items()
                                           if v is not None})
    logging.basicConfig(level=server.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per health check
    app = create_app(cfg)
    uvicorn.run(app, host=server.host, port=server.port, log_level=server.log_level,
                access_log=False, timeout_graceful_shutdown=20)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
