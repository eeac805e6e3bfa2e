"""``irisflow gateway``: serve the app with uvicorn."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from irisflow.settings import Settings

__all__ = ["run_gateway"]


def run_gateway(settings: Settings) -> None:
    config = settings.gateway
    uvicorn.run(
        create_app(settings),
        host=config.host,
        port=config.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_keep_alive=config.keep_alive_seconds,
    )
