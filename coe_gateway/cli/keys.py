"""``coe-gateway keys new | hash | check``: API keys and budget files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    keys = typer.Typer(help="API keys: make one, hash one, check a budget file.",
                       no_args_is_help=True)
    keys.command("new")(new)
    keys.command("hash")(hash_)
    keys.command("check")(check)
    app.add_typer(keys, name="keys")


def new(name: Annotated[str | None, typer.Option(help="a label for logs")] = None) -> None:
    """Make a fresh random key; print it (give it to the client) and the entry for the
    budget file's ``api_keys`` (store only that)."""
    from coe_gateway.budget import hash_key, new_key

    key = new_key()
    typer.echo(f"key:   {key}")
    digest = hash_key(key).removeprefix("sha256:")
    entry = f"- sha256: {digest}" + (f"\n  name: {name}" if name else "")
    typer.echo("entry for api_keys:\n" + entry)


def hash_(key: Annotated[str | None, typer.Argument(
        help="the key; omitted: read from stdin (keeps it out of the shell history)")] = None
          ) -> None:
    """Print ``sha256:<hex>`` of a key, the form a budget file stores."""
    from coe_gateway.budget import hash_key

    if key is None:
        key = typer.prompt("key", hide_input=True) if sys.stdin.isatty() else sys.stdin.read()
        key = key.strip()
    if not key:
        raise typer.BadParameter("empty key")
    typer.echo(hash_key(key))


def check(
    path: Annotated[Path, typer.Argument(help="budget file")],
    key: Annotated[str | None, typer.Option(help="also say which tenant this key belongs to")]
    = None,
) -> None:
    """Validate a budget file (exit 1 naming file, field and reason) and list its tenants."""
    from coe_gateway.budget import KeyIndex, load_budget_file
    from coe_gateway.errors import ConfigError

    try:
        budget = load_budget_file(path)
    except ConfigError as exc:
        typer.echo(f"invalid: {exc}", err=True)
        raise typer.Exit(1) from None
    for t in budget.tenants:
        limits = ", ".join(f"{p} ${v:g}" for p, v in t.limits.items() if v is not None)
        policy = t.policy.kind if t.policy else "gateway default"
        typer.echo(f"{t.name}: {len(t.api_keys)} key(s); budgets: {limits or 'none'}; "
                   f"policy: {policy}")
    if key is not None:
        tenant = KeyIndex(budget.tenants).find(key)
        typer.echo(f"key belongs to: {tenant.name if tenant else 'no tenant'}")
        if tenant is None:
            raise typer.Exit(2)
