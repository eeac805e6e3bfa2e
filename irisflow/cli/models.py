"""``irisflow models``: versions in the registry, and promotion (rollback)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Annotated

import typer

from irisflow.cli.context import settings_of as _settings

if TYPE_CHECKING:
    from irisflow.schemas import RolloutState
    from irisflow.settings import Settings

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
    kafka: Annotated[
        bool,
        typer.Option(
            "--kafka/--no-kafka",
            help="also read the rollout topic for the deployment history (skipped if Kafka does "
            "not answer)",
        ),
    ] = True,
) -> None:
    """One version's metadata (its model card) and its deployment history: the retraining that
    published it and every rollout step (shadow, canary, promoted, rolled back, aborted)."""
    from irisflow.deployments import deployment_history
    from irisflow.registry import LocalRegistry

    settings = _settings(ctx)
    registry = LocalRegistry(settings.registry_dir)
    meta = registry.metadata(version)
    state, note = _rollout_state(settings) if kafka else (None, "not read (--no-kafka)")
    history = deployment_history(version, state, registry)
    body = meta.model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps({**body, "deployments": history}, indent=2))
        return
    card = registry.card_path(version)
    typer.echo(card.read_text() if card.exists() else json.dumps(body, indent=2))
    typer.echo(f"\ndeployment history of v{version} (rollout topic: {note}):")
    if not history:
        typer.echo("  none recorded")
    for step in history:
        share = f" share {step['share']:.0%}" if step.get("share") is not None else ""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(step["at"]))
        typer.echo(
            f"  {when}  {step['stage']:<11}{share}  by {step['decided_by']}: {step['reason']}"
            f"  [{', '.join(step['sources'])}]"
        )


SHOW_KAFKA_SECONDS = 5.0
"""How long ``models show`` tries the rollout topic before it shows the registry's history only."""


def _rollout_state(settings: Settings) -> tuple[RolloutState | None, str]:
    """The rollout topic's newest state, and a note on how reading it went (never fatal: the
    registry's decisions log has the history too)."""
    from irisflow.kafka.rollout_topic import read_rollout_state

    try:
        state = asyncio.run(
            read_rollout_state(settings.kafka, settings.model_name, timeout=SHOW_KAFKA_SECONDS)
        )
    except Exception as exc:  # any failure leaves the registry's history
        return None, f"not read ({type(exc).__name__}: {exc}); the registry's log only"
    return state, "read" if state is not None else "no rollout yet"


@app.command("promote")
def models_promote(ctx: typer.Context, version: int) -> None:
    """Make VERSION live again by republishing it (this is how you roll back)."""
    from trainer.commands import promote

    update = promote(_settings(ctx), version)
    typer.echo(f"{update.model_name} version {update.version} republished; workers swap to it now")
