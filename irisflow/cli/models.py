"""``irisflow models``: versions in the registry, and promotion (rollback)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from irisflow.cli.context import settings_of as _settings

__all__ = ["app"]

app = typer.Typer(
    help="Model versions in the registry: list, show, promote (rollback).", no_args_is_help=True
)


@app.command("list")
def models_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Every version in the registry, with its metrics; the live one is marked."""
    from trainer.commands import list_models

    rows = list_models(_settings(ctx))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no versions yet: run `irisflow train`")
    for row in rows:
        mark = "*" if row["live"] else " "
        typer.echo(
            f"{mark} v{row['version']:<4} {row['algorithm']:<20} trigger={row['trigger']:<10} "
            f"holdout_f1_macro={row['metrics'].get('holdout_f1_macro', float('nan')):.3f}"
        )


@app.command("show")
def models_show(
    ctx: typer.Context,
    version: int,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """One version's metadata (and the path of its model card)."""
    from irisflow.registry import LocalRegistry

    registry = LocalRegistry(_settings(ctx).registry_dir)
    meta = registry.metadata(version)
    body = meta.model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    card = registry.card_path(version)
    typer.echo(card.read_text() if card.exists() else json.dumps(body, indent=2))


@app.command("promote")
def models_promote(ctx: typer.Context, version: int) -> None:
    """Make VERSION live again by republishing it (this is how you roll back)."""
    from trainer.commands import promote

    update = promote(_settings(ctx), version)
    typer.echo(f"{update.model_name} version {update.version} republished; workers swap to it now")
