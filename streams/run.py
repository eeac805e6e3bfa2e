"""``irisflow worker``: create topics, then hand the process to a Faust worker."""

from __future__ import annotations

import asyncio
import logging

import faust

from irisflow.kafka.admin import ensure_topics
from irisflow.settings import Settings
from streams.app import build_app

__all__ = ["run_worker"]

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> None:
    """Blocks until SIGINT/SIGTERM; Faust commits offsets and leaves the group cleanly."""
    asyncio.run(ensure_topics(settings.kafka))
    streams = build_app(settings)
    worker = faust.Worker(
        streams.app,
        loglevel=settings.log_level.lower(),
        quiet=True,
        redirect_stdouts=False,
    )
    log.info(
        "worker starting: metrics at http://%s:%d/metrics",
        settings.worker.host,
        settings.worker.port,
    )
    worker.execute_from_commandline()
