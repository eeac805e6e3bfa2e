"""What every command needs from the root callback: the settings it validated once."""

from __future__ import annotations

import typer

from irisflow.settings import Settings

__all__ = ["settings_of"]


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the root callback loaded (``--params``, environment, ``--log-level``)."""
    settings: Settings = ctx.find_root().obj
    return settings
