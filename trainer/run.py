"""``irisflow trainer``: the online retraining service with its metrics endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from prometheus_client import start_http_server

from irisflow.kafka.admin import ensure_topics
from irisflow.settings import Settings
from trainer.service import RetrainingService

__all__ = ["run_trainer"]

log = logging.getLogger(__name__)


async def _serve(settings: Settings) -> None:
    await ensure_topics(settings.kafka)
    service = RetrainingService(settings)
    config = settings.retraining
    start_http_server(config.port, addr=config.host, registry=service.metrics.registry)
    log.info("trainer metrics at http://%s:%d/metrics", config.host, config.port)
    task = asyncio.create_task(service.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    log.info("trainer stopped; uncommitted labels will be read again on the next start")


def run_trainer(settings: Settings) -> None:
    asyncio.run(_serve(settings))
