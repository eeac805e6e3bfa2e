"""Which reply answers whom: the gateway's waiters and watched ids, by request id (no I/O).

The bridge's reader hands every record of the predictions topic to :meth:`Replies.deliver`;
this decides whether it completes a waiting call, goes to ``on_late`` (an id *watched* after
its caller gave up), or is ignored. An answer is someone's only if it is of the awaited shape,
complete or an error, and carries the awaited ``input_digest``; anything else under the id is a
mismatch (counted by ``on_mismatch``), and the wait goes on. An error answer (no model live,
features the worker refused) has no result and so no shape: it answers a request of any shape
whose digest it echoes. Split from :mod:`gateway.bridge`
so that the rules are read (and tested) apart from the Kafka clients.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from gateway.errors import UnreadableAnswer
from gateway.trips import Trip
from irisflow.schemas import (
    BatchPrediction,
    BatchPredictionRequest,
    MatrixPrediction,
    MatrixPredictionRequest,
    Prediction,
)
from irisflow.topics import AnyAnswer, AnyRequest, Refused, Topic
from irisflow.tracing import Headers, trace_of

__all__ = ["Answer", "LateHandler", "Replies", "Request", "Shape", "complete", "shape_of"]

log = logging.getLogger(__name__)

Answer = AnyAnswer
Request = AnyRequest
Shape = type[Prediction] | type[BatchPrediction] | type[MatrixPrediction]
#: ``(request_id, context, answer, seconds since the request was sent)``
LateHandler = Callable[[str, str, Answer, float], None]


class _Mismatch(Exception):
    """A reply under the awaited id that answers other input (or another shape)."""


def complete(answer: Answer) -> bool:
    """A success the caller can be given: its result and the version that produced it."""
    if answer.model_version is None:
        return False
    if isinstance(answer, BatchPrediction):
        return bool(answer.predictions)
    if isinstance(answer, MatrixPrediction):
        return bool(answer.labels)
    return answer.label is not None


def shape_of(request: Request) -> Shape:
    """The answer shape a successful reply to ``request`` has."""
    if isinstance(request, MatrixPredictionRequest):
        return MatrixPrediction
    return BatchPrediction if isinstance(request, BatchPredictionRequest) else Prediction


class Replies:
    """Futures of the calls waiting here, and the ids watched for a late answer (bounded)."""

    def __init__(
        self,
        topic: Topic[Answer],
        *,
        on_late: LateHandler | None = None,
        on_mismatch: Callable[[], None] | None = None,
        watch_capacity: int = 10000,
    ) -> None:
        self.topic = topic
        """The predictions topic, whose codec reads every reply (schema and key)."""
        self.on_late = on_late
        self.on_mismatch = on_mismatch
        self._watch_capacity = watch_capacity
        self._pending: dict[str, tuple[Shape, str | None, asyncio.Future[Answer]]] = {}
        self._watched: OrderedDict[str, tuple[Shape, str | None, str, float]] = OrderedDict()
        self._trips: dict[str, Trip] = {}

    def expect(self, request: Request, trip: Trip | None = None) -> asyncio.Future[Answer]:
        """A future completed by the answer to ``request`` (a later waiter takes the id over);
        ``trip``, if given, is told the answer's stamps and span when it comes."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending[request.request_id] = (shape_of(request), request.input_digest, future)
        if trip is not None:
            self._trips[request.request_id] = trip
        else:
            self._trips.pop(request.request_id, None)
        return future

    def forget(self, rid: str, future: asyncio.Future[Answer]) -> None:
        """Stop waiting on ``future`` (left alone if a later waiter holds the id now)."""
        current = self._pending.get(rid)
        if current is not None and current[2] is future:
            del self._pending[rid]
            self._trips.pop(rid, None)

    def cancel_all(self) -> None:
        for _, _, pending in self._pending.values():
            pending.cancel()
        self._pending.clear()
        self._trips.clear()

    def deliver(self, rid: str, value: bytes | None, headers: Headers = ()) -> None:
        """Hand one record of the predictions topic to whoever waits for it (or watches it)."""
        waiting = self._pending.get(rid)
        if waiting is not None and not waiting[2].done():
            shape, digest, future = waiting
            try:
                answer = self._decode(rid, value, shape, digest)
                if (trip := self._trips.get(rid)) is not None:
                    trip.took_answer(headers, trace_of(headers))
                future.set_result(answer)
            except Refused as exc:
                log.error("the answer to %s is unreadable: %s", rid, exc)
                future.set_exception(UnreadableAnswer(f"the worker's answer is unreadable: {exc}"))
            except _Mismatch as exc:
                self._mismatched(rid, exc)
            return
        watched = self._watched.get(rid)
        if watched is None or self.on_late is None:
            return
        shape, digest, context, sent = watched
        try:
            answer = self._decode(rid, value, shape, digest)
        except Refused as exc:
            log.warning("late answer to %s unreadable: %s", rid, exc)
            return
        except _Mismatch as exc:
            self._mismatched(rid, exc)
            return
        del self._watched[rid]
        self.on_late(rid, context, answer, time.monotonic() - sent)

    def _decode(self, rid: str, value: bytes | None, shape: Shape, digest: str | None) -> Answer:
        answer = self.topic.decode(value, rid.encode())
        # An error answer has no result to give it a shape (the codec reads it as a Prediction):
        # it answers a request of any shape, as long as it echoes the awaited digest.
        if answer.error is None and not isinstance(answer, shape):
            raise _Mismatch(f"a {type(answer).__name__} where a {shape.__name__} was awaited")
        if answer.error is None and not complete(answer):
            raise _Mismatch("neither a result (with its model version) nor an error")
        if digest is not None and answer.input_digest != digest:
            raise _Mismatch(f"input digest {answer.input_digest!r}, awaited {digest!r}")
        return answer

    def _mismatched(self, rid: str, exc: _Mismatch) -> None:
        log.warning("ignoring an answer to %s that does not answer what was sent: %s", rid, exc)
        if self.on_mismatch is not None:
            self.on_mismatch()

    def watch(
        self, rid: str, shape: Shape, context: str, sent: float, digest: str | None = None
    ) -> None:
        """Hand the answer to ``rid`` to ``on_late`` when it comes (bounded, oldest dropped)."""
        self._watched[rid] = (shape, digest, context, sent)
        self._watched.move_to_end(rid)
        while len(self._watched) > self._watch_capacity:
            self._watched.popitem(last=False)
