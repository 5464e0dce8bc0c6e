"""The ``coe-gateway`` command line: serve | workers | models | train | eval | profile | bench.

Each command group lives in its own module with a ``register(app)`` function; ``build_app``
assembles them. Nothing is parsed or imported heavily at import time: each command imports
what it needs when it runs.
"""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES: tuple[str, ...] = (
    "coe_gateway.cli.serve",
    "coe_gateway.cli.workers",
    "coe_gateway.cli.models",
    "coe_gateway.cli.bench",
    "coe_gateway.cli.train",
    "coe_gateway.cli.eval",
    "coe_gateway.cli.profile",
    "coe_gateway.cli.keys",
    "coe_gateway.cli.bench_budget",
    "coe_gateway.cli.bench_compare",
    "coe_gateway.cli.features",
)


def build_app() -> typer.Typer:
    """The Typer application with every command group registered."""
    app = typer.Typer(
        name="coe-gateway",
        help="Composition-of-experts LLM gateway: route each chat request to the best expert.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency, not an absent command module
                raise
            continue
        module.register(app)
    return app


def main() -> None:
    """Console-script entry point."""
    build_app()()
