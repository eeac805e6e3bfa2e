"""Idempotent request ids: a repeated ``request_id`` gets the first answer and scores nothing.

A gateway remembers the last answers it gave (an LRU bounded by ``capacity`` answers and by
``max_bytes`` of their JSON, which is how they are kept: a client choosing 1,000-instance batches
must not turn 10,000 remembered answers into gigabytes) and the requests it is still waiting on.
A duplicate that arrives while the first is in flight awaits the same task, so two concurrent
retries publish one Kafka record; one that arrives later is answered from memory. The work runs
as its own task: a client that hangs up does not cancel it for the others.

``?wait=false`` shares this: it *claims* an id before publishing, so a second call with that id,
waiting or not, publishes nothing (a waiting one awaits the answer on the topic instead), and a
claim under other input is a conflict like any other. Whoever relies on another call's publish
waits for it first: ``?wait=false`` answers 202 only once the id's record is on the broker
(sharing the other call's 503 if its publish failed), and a waiting call whose claim's publish
failed publishes itself rather than await an answer that cannot come. A claim lasts until its
answer comes, or until a waiting call that awaited it finishes, whatever that call's outcome: an
error such as ``no_model`` is not remembered, so the next call with the id publishes again.

Reusing an id for different input is refused (409) rather than answered with someone else's
prediction. Across replicas and restarts the audit store is the memory (see
:mod:`gateway.predicting`); this class is only the fast, exact, per-process part.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel

from gateway.errors import RequestIdConflict

__all__ = ["AnswerBook", "batch_digest", "input_digest"]


def batch_digest(names: Sequence[str], matrix: np.ndarray) -> str:
    """A stable digest of a batch: its names and numbers, whatever the column order (so the
    same rows sent to ``/v1`` or as an Open Inference Protocol tensor are the same input)."""
    order = sorted(range(len(names)), key=names.__getitem__)
    digest = hashlib.sha256(orjson.dumps([names[i] for i in order]))
    digest.update(np.ascontiguousarray(matrix[:, order], dtype="<f8").tobytes())
    return f"batch:{digest.hexdigest()[:32]}"


def input_digest(kind: str, payload: Any) -> str:
    """A stable digest of what was asked (key order does not matter). A batch of instances
    that share their names is digested as the matrix it is (:func:`batch_digest`)."""
    if kind == "batch" and isinstance(payload, list) and payload:
        names = sorted(payload[0]) if isinstance(payload[0], dict) else []
        if names and all(isinstance(i, dict) and sorted(i) == names for i in payload):
            try:
                matrix = np.array([[i[n] for n in names] for i in payload], dtype=np.float64)
            except (TypeError, ValueError):
                pass
            else:
                return batch_digest(names, matrix)
    raw = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return f"{kind}:{hashlib.sha256(raw).hexdigest()[:32]}"


def _seen(future: asyncio.Future[None]) -> None:
    """A failed publish is raised to its caller; other waiters may have gone."""
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    """Resolve ``future`` once: with ``exc`` (cancelled if it is a cancellation) or done."""
    if future.done():
        return
    if isinstance(exc, Exception):
        future.set_exception(exc)
    elif exc is not None:  # cancelled (or the process is stopping)
        future.cancel()
    else:
        future.set_result(None)


async def _reached_kafka(published: asyncio.Future[None]) -> bool:
    """Wait for another call's publish: ``True`` if its record is on the broker, ``False`` if
    it gave up first (cancelled); its failure (a 503) is raised as this caller's own."""
    await asyncio.wait({published})
    if published.cancelled():
        return False
    exc = published.exception()
    if exc is not None:
        raise exc
    return True


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a failure as seen even when every waiter has gone (no 'never retrieved' noise)."""
    if not task.cancelled():
        task.exception()


class AnswerBook:
    """Answers by request id: done ones (bounded, least recently used first out), in flight, and
    claimed by ``?wait=false``."""

    def __init__(self, capacity: int, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0
        self._done: OrderedDict[str, tuple[str, type[BaseModel], bytes]] = OrderedDict()
        #: id -> (input digest, the work, whether its record is on the broker yet)
        self._in_flight: dict[str, tuple[str, asyncio.Task[BaseModel], asyncio.Future[None]]] = {}
        self._claimed: OrderedDict[str, tuple[str, asyncio.Future[None]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._done)

    def lookup(self, request_id: str, digest: str) -> BaseModel | None:
        """The remembered answer, or ``None``; raises if the id was used for other input."""
        found = self._done.get(request_id)
        if found is None:
            return None
        known, shape, raw = found
        self._check(request_id, known, digest)
        self._done.move_to_end(request_id)
        return shape.model_validate_json(raw)

    def in_flight(self, request_id: str) -> bool:
        return request_id in self._in_flight

    def remember(self, request_id: str, digest: str, answer: BaseModel) -> None:
        """Keep ``answer`` as JSON; one larger than the whole budget is not kept at all."""
        self._claimed.pop(request_id, None)
        raw = answer.model_dump_json().encode()
        if self.capacity <= 0 or len(raw) > self.max_bytes:
            return
        self._forget(request_id)
        self._done[request_id] = (digest, type(answer), raw)
        self.bytes += len(raw)
        while len(self._done) > self.capacity or self.bytes > self.max_bytes:
            _, (_, _, dropped) = self._done.popitem(last=False)
            self.bytes -= len(dropped)

    def _forget(self, request_id: str) -> None:
        found = self._done.pop(request_id, None)
        if found is not None:
            self.bytes -= len(found[2])

    async def publish_once(
        self, request_id: str, digest: str, publish: Callable[[], Awaitable[None]]
    ) -> bool:
        """``?wait=false``: run ``publish`` unless ``request_id`` is answered here, or claimed or
        in flight and its record reaches Kafka; ``True`` if this call published.

        Returns only once the id's record is on the broker: a call that finds the id claimed
        or in flight waits for that call's publish and shares its failure (a 503), so no one
        is told 202 for a record that never reached Kafka. If that call gave up before
        publishing, this one looks again and publishes itself. Raises
        :class:`RequestIdConflict` if the id is known here for other input.
        """
        while True:
            if self.lookup(request_id, digest) is not None:
                return False
            other = self._claimed.get(request_id)
            if other is None and request_id in self._in_flight:
                known, _, sent = self._in_flight[request_id]
                other = (known, sent)
            if other is None:
                break
            self._check(request_id, other[0], digest)
            if await _reached_kafka(other[1]):
                return False
        published: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        published.add_done_callback(_seen)
        self._claimed[request_id] = (digest, published)
        while len(self._claimed) > max(self.capacity, 1):
            self._claimed.popitem(last=False)
        try:
            await publish()
        except BaseException as exc:
            self.release(request_id)
            _settle(published, exc)
            raise
        published.set_result(None)
        return True

    async def claim_published(self, request_id: str) -> bool:
        """Whether a ``?wait=false`` claim on ``request_id`` put its record on the broker
        (waiting for its publish if need be); ``False`` if none did, so the caller publishes."""
        claimed = self._claimed.get(request_id)
        if claimed is None:
            return False
        with contextlib.suppress(Exception):
            return await _reached_kafka(claimed[1])
        return False

    def sent(self, request_id: str) -> None:
        """The call in flight for ``request_id`` has its record on the broker (or knows that
        someone put it there): a ``?wait=false`` call waiting on it may answer 202 now."""
        running = self._in_flight.get(request_id)
        if running is not None and not running[2].done():
            running[2].set_result(None)

    def claimed(self, request_id: str) -> bool:
        """Published by ``?wait=false`` and not answered yet (a waiting call awaits it)."""
        return request_id in self._claimed

    def release(self, request_id: str) -> None:
        """Drop a claim: its publish failed, its answer was an error a retry may cure, or a
        waiting call that awaited it has finished (whatever its outcome)."""
        self._claimed.pop(request_id, None)

    async def once(
        self,
        request_id: str,
        digest: str,
        produce: Callable[[], Awaitable[BaseModel]],
    ) -> tuple[BaseModel, bool]:
        """``(answer, replayed)``: run ``produce`` once per id; duplicates share its result."""
        known = self.lookup(request_id, digest)
        if known is not None:
            return known, True
        claimed = self._claimed.get(request_id)
        if claimed is not None:
            self._check(request_id, claimed[0], digest)
        running = self._in_flight.get(request_id)
        if running is not None:
            self._check(request_id, running[0], digest)
            return await asyncio.shield(running[1]), True
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sent.add_done_callback(_seen)
        task = asyncio.ensure_future(self._run(request_id, digest, produce, sent))
        task.add_done_callback(_retrieve)
        self._in_flight[request_id] = (digest, task, sent)
        return await asyncio.shield(task), False

    async def _run(
        self,
        request_id: str,
        digest: str,
        produce: Callable[[], Awaitable[BaseModel]],
        sent: asyncio.Future[None],
    ) -> BaseModel:
        try:
            answer = await produce()
            self.remember(request_id, digest, answer)
            return answer
        except BaseException as exc:
            _settle(sent, exc)  # failed before its record reached Kafka: so do its 202 waiters
            raise
        finally:
            # Whatever the outcome, a claim on this id has served: the answer is remembered,
            # or the next call decides afresh (a failure such as no_model may pass).
            self._in_flight.pop(request_id, None)
            self.release(request_id)
            _settle(sent, None)  # answered without publishing (from the audit): known

    async def close(self) -> None:
        """Cancel what is still in flight (the gateway is stopping)."""
        tasks = [task for _, task, _ in self._in_flight.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @staticmethod
    def _check(request_id: str, known: str, given: str) -> None:
        if known != given:
            raise RequestIdConflict(request_id)
