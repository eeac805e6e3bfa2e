"""Idempotent request ids: a repeated ``request_id`` gets the first answer and scores nothing.

A gateway remembers the last ``capacity`` answers it gave (an LRU) and the requests it is still
waiting on. A duplicate that arrives while the first is in flight awaits the same task, so two
concurrent retries publish one Kafka record; one that arrives later is answered from memory. The
work runs as its own task: a client that hangs up does not cancel it for the others.

Reusing an id for different input is refused (409) rather than answered with someone else's
prediction. Across replicas and restarts the audit store is the memory (see
:mod:`gateway.service`); this class is only the fast, exact, per-process part.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import BaseModel

from gateway.errors import RequestIdConflict

__all__ = ["AnswerBook", "fingerprint"]


def fingerprint(kind: str, payload: Any) -> str:
    """A stable digest of what was asked (key order does not matter)."""
    raw = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return f"{kind}:{hashlib.sha256(raw).hexdigest()[:32]}"


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a failure as seen even when every waiter has gone (no 'never retrieved' noise)."""
    if not task.cancelled():
        task.exception()


class AnswerBook:
    """Answers by request id: done ones (bounded, least recently used first out) and in flight."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._done: OrderedDict[str, tuple[str, BaseModel]] = OrderedDict()
        self._in_flight: dict[str, tuple[str, asyncio.Task[BaseModel]]] = {}

    def __len__(self) -> int:
        return len(self._done)

    def lookup(self, request_id: str, print_: str) -> BaseModel | None:
        """The remembered answer, or ``None``; raises if the id was used for other input."""
        found = self._done.get(request_id)
        if found is None:
            return None
        self._check(request_id, found[0], print_)
        self._done.move_to_end(request_id)
        return found[1]

    def in_flight(self, request_id: str) -> bool:
        return request_id in self._in_flight

    def remember(self, request_id: str, print_: str, answer: BaseModel) -> None:
        if self.capacity <= 0:
            return
        self._done[request_id] = (print_, answer)
        self._done.move_to_end(request_id)
        while len(self._done) > self.capacity:
            self._done.popitem(last=False)

    async def once(
        self,
        request_id: str,
        print_: str,
        produce: Callable[[], Awaitable[BaseModel]],
    ) -> tuple[BaseModel, bool]:
        """``(answer, replayed)``: run ``produce`` once per id; duplicates share its result."""
        known = self.lookup(request_id, print_)
        if known is not None:
            return known, True
        running = self._in_flight.get(request_id)
        if running is not None:
            self._check(request_id, running[0], print_)
            return await asyncio.shield(running[1]), True
        task = asyncio.ensure_future(self._run(request_id, print_, produce))
        task.add_done_callback(_retrieve)
        self._in_flight[request_id] = (print_, task)
        return await asyncio.shield(task), False

    async def _run(
        self, request_id: str, print_: str, produce: Callable[[], Awaitable[BaseModel]]
    ) -> BaseModel:
        try:
            answer = await produce()
            self.remember(request_id, print_, answer)
            return answer
        finally:
            self._in_flight.pop(request_id, None)

    async def close(self) -> None:
        """Cancel what is still in flight (the gateway is stopping)."""
        tasks = [task for _, task in self._in_flight.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @staticmethod
    def _check(request_id: str, known: str, given: str) -> None:
        if known != given:
            raise RequestIdConflict(request_id)
