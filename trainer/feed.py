"""The model feed as the trainer follows it: supervised, so a feed that dies stops the trainer
loudly (and a supervisor restarts it) instead of leaving it waiting forever, unready."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

from irisflow.errors import IrisflowError

__all__ = ["ModelFeedStopped", "until"]

log = logging.getLogger("trainer.service")


class ModelFeedStopped(IrisflowError):
    """The trainer's model feed ended; the trainer stops rather than judge against a stale
    champion (a supervisor restarts it)."""


async def until(awaitable: Awaitable[Any], *, unless: asyncio.Task[None]) -> None:
    """Await ``awaitable`` (its error propagates) unless the ``unless`` task ends first: then
    raise :class:`ModelFeedStopped`, so a dead feed fails the trainer instead of hanging it."""
    waiter = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait({waiter, unless}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not waiter.done():
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
    if waiter.done() and not waiter.cancelled():
        waiter.result()
        return
    error = None if unless.cancelled() else unless.exception()
    log.error("trainer: the model feed stopped: %r", error)
    raise ModelFeedStopped(f"the trainer's model feed stopped: {error!r}") from error
