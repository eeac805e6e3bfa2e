"""HTTP ↔ Kafka request-reply: send a request, wait for its prediction, with a timeout.

Replies are routed by request id. Each gateway replica reads the whole predictions topic with no
consumer group (all partitions, from the end at start-up) and completes only the futures it is
waiting on; the others are ignored. That costs every replica a read of every prediction (cheap:
a dictionary lookup of the record key), and buys replicas that share nothing and need no reply
topic of their own. ``reply_to`` in the request names the replica for audit and debugging.

A reply that arrives after its caller gave up (a 504, or ``?wait=false``) is not lost: ids are
*watched* for a while and their late answer is handed to ``on_late``, so a retry with the same
request id is answered from memory instead of being scored again.

An id alone does not make an answer ours: two clients may send one id with different input
(one of them gets a 409 here, but another replica may have published the other). Each request
carries ``input_digest``, a digest of its input that the workers echo in the answer; a reply
whose digest differs from the one awaited answers someone else's input, so it is ignored and
counted (``on_mismatch``), and the wait goes on. A reply with no digest is refused the same way
once a digest was sent: that is how a worker answers a record it could not read, so a junk
record keyed with someone's id must not answer them. So is an answer that is neither a complete
success (a label or predictions, and a model version) nor an error: it answers nothing. Replies
are read through the predictions topic's codec (schema and key); one that fails it is a worker
bug (502), not the caller's.

The reader must outlive every record: if it stopped, each later call would be a 504 while the
gateway still reported ready. Each record is handled in its own ``try`` (a failure is logged
with its topic, partition and offset, and counted by ``on_error``), and the reader itself is
restarted if it ever fails.

The producer is the core's: ``acks=all`` and idempotent, so an accepted request, feedback or
admin command survives a leader failover and is not duplicated by the producer's retries. A
publish that outlasts the caller's timeout (a leader election takes a broker session, 6 to 9
seconds) is a 503, but not a loss: the producer still delivers the record when a leader is
back, so its id is watched like a timed-out one and a retry is answered by that late answer.

Which reply answers whom (waiters, watched ids, digest checks) is :mod:`gateway.replies`.

A request sent with a :class:`gateway.trips.Trip` carries its trace and arrival stamp in its
headers, and the trip learns its partition, when the broker had it, and the worker's stamps.
Such a request is also *hedged* (:mod:`gateway.hedging`): unanswered after
``gateway.hedge_after_seconds``, a copy goes to a partition whose owner answers, so a worker
killed mid-stream costs its callers a fraction of a second instead of its group session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError

from gateway.hedging import Hedger
from gateway.replies import Answer, LateHandler, Replies, Request, Shape, shape_of
from gateway.trips import Trip
from irisflow.errors import KafkaUnavailable, PredictionFailed, PredictionTimeout
from irisflow.kafka.clients import answers_metadata, assign_all, make_consumer, make_producer, send
from irisflow.schemas import ErrorCode
from irisflow.settings import KafkaSettings
from irisflow.topics import Outgoing, Topics
from irisflow.tracing import HEDGE_OF, REQUEST_PARTITION

__all__ = ["Answer", "KafkaBridge", "LateHandler", "Request"]

log = logging.getLogger(__name__)


BATCH_BYTES = 1024 * 1024
"""Bytes of records a partition's batch gathers while a produce request is in flight (one per
broker): at aiokafka's default (16 KB) every 60 KB batch request went alone, one per round trip."""


class KafkaBridge:
    """One producer and one group-less reply reader per gateway process."""

    restart_seconds = 1.0
    """How long the reply reader rests before it is restarted after a failure."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        instance_id: str | None = None,
        on_late: LateHandler | None = None,
        on_mismatch: Callable[[], None] | None = None,
        on_error: Callable[[], None] | None = None,
        watch_capacity: int = 10000,
        hedger: Hedger | None = None,
        on_hedge: Callable[[], None] | None = None,
    ) -> None:
        self.kafka = kafka
        self.hedger = hedger or Hedger(kafka.partitions, delay=0.0)
        """When and where a late request's copy goes (off unless given one with a delay)."""
        self.on_hedge = on_hedge
        self.instance_id = instance_id or f"gw-{uuid.uuid4().hex[:8]}"
        self.on_error = on_error
        self.topics = Topics.of(kafka)
        """Every record the gateway produces is built by its topic (name, key, encoding)."""
        self.replies = Replies(
            self.topics.predictions,
            on_late=on_late,
            on_mismatch=on_mismatch,
            watch_capacity=watch_capacity,
        )
        """Who waits for which reply (:mod:`gateway.replies`); the reader feeds it."""
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        return self._reader is not None

    def new_producer(self) -> AIOKafkaProducer:
        """The core's producer (``acks=all``, idempotent), with a short request timeout so that
        an unreachable broker is a prompt 503."""
        return make_producer(self.kafka, request_timeout_ms=5000, max_batch_size=BATCH_BYTES)

    async def start(self) -> None:
        self._producer = self.new_producer()
        await self._producer.start()
        self._consumer = make_consumer(self.kafka, group_id=None)
        await self._consumer.start()
        # every partition from its end, positions resolved now: no reply can slip past
        await assign_all(self._consumer, self.kafka.topics.predictions, start="end", timeout=None)
        self._reader = asyncio.create_task(self._read_forever(), name="gateway-replies")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self.replies.cancel_all()
        consumer, producer = self._consumer, self._producer
        self._reader = self._consumer = self._producer = None
        if consumer is not None:
            await consumer.stop()
        if producer is not None:
            await producer.stop()

    async def reachable(self, *, timeout: float = 3.0) -> bool:
        """Whether a broker answers a metadata request now (the readiness probe)."""
        if self._producer is None:
            return False
        return await answers_metadata(self._producer, timeout=timeout)

    async def _read_forever(self) -> None:
        """The reply reader, restarted whenever it fails (see the module docstring)."""
        while True:
            try:
                await self._read_replies()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the gateway's reply reader stopped; restarting it")
                await asyncio.sleep(self.restart_seconds)

    async def _read_replies(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=5000)
            except KafkaError as exc:  # a broker outage: keep polling, aiokafka reconnects
                log.warning("reading replies from %s: %r", self.kafka.topics.predictions, exc)
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    self._handle(record)

    def _handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """One reply, in its own ``try``: a record that breaks its handling costs that record."""
        try:
            headers = tuple(getattr(record, "headers", None) or ())
            self._note_partition(headers)
            if record.key is not None:
                self.replies.deliver(record.key.decode(errors="replace"), record.value, headers)
        except Exception:
            log.exception(
                "%s[%s] offset %s: handling this answer failed; skipped",
                record.topic,
                record.partition,
                record.offset,
            )
            if self.on_error is not None:
                self.on_error()

    def _note_partition(self, headers: tuple[tuple[str, bytes], ...]) -> None:
        """Tell the hedger which partition's owner answered; a header that is not a partition
        number (anyone can produce to the topic) is ignored, never the answer's undoing."""
        for name, value in headers:
            if name == REQUEST_PARTITION:
                with contextlib.suppress(ValueError, TypeError):
                    self.hedger.answered(int(value))

    def deliver(
        self, rid: str, value: bytes | None, headers: tuple[tuple[str, bytes], ...] = ()
    ) -> None:
        """Hand one record of the predictions topic to :attr:`replies` (as the reader does)."""
        self.replies.deliver(rid, value, headers)

    def watch(
        self, rid: str, shape: Shape, context: str, sent: float, digest: str | None = None
    ) -> None:
        """See :meth:`Replies.watch`."""
        self.replies.watch(rid, shape, context, sent, digest)

    async def publish(self, record: Outgoing, *, timeout: float) -> int | None:
        """Send one record built by its topic (``Topics.…record(message)``) and wait for the
        broker's acknowledgement (the partition it went to); 503 material otherwise."""
        if self._producer is None:
            raise KafkaUnavailable("the gateway is not connected to Kafka yet")
        try:
            return await asyncio.wait_for(send(self._producer, record), timeout=timeout)
        except (KafkaError, TimeoutError) as exc:
            raise KafkaUnavailable(
                f"could not publish to {record.topic} at {self.kafka.bootstrap_servers}: {exc!r}"
            ) from exc

    async def submit(self, request: Request, *, context: str, timeout: float) -> None:
        """Publish without waiting; the answer, when it comes, goes to ``on_late``."""
        self.replies.watch(
            request.request_id,
            shape_of(request),
            context,
            time.monotonic(),
            request.input_digest,
        )
        await self._send(request, timeout=timeout)

    async def request(
        self,
        request: Request,
        *,
        context: str,
        timeout: float,
        on_sent: Callable[[], None] | None = None,
        trip: Trip | None = None,
    ) -> Answer:
        """Publish ``request`` and wait for its answer; raise a typed error otherwise.
        ``on_sent`` is called once the broker has the record (others may rely on it); ``trip``
        gets the request's trace and stamps, and makes it hedged when it waits too long."""
        return await self._wait(
            request, context=context, timeout=timeout, send=True, on_sent=on_sent, trip=trip
        )

    async def await_answer(self, request: Request, *, context: str, timeout: float) -> Answer:
        """Wait for the answer to a request published earlier (by anyone), without resending."""
        return await self._wait(request, context=context, timeout=timeout, send=False)

    async def _send(self, request: Request, *, timeout: float, trip: Trip | None = None) -> None:
        headers = trip.request_headers() if trip is not None else ()
        if trip is not None:  # handed to Kafka now; nobody can fetch it before this moment
            trip.published = time.time()
        partition = await self.publish(
            self.topics.requests.record(request, headers=headers), timeout=timeout
        )
        self.hedger.sent()
        if trip is not None:
            trip.partition = partition

    async def _wait(
        self,
        request: Request,
        *,
        context: str,
        timeout: float,
        send: bool,
        on_sent: Callable[[], None] | None = None,
        trip: Trip | None = None,
    ) -> Answer:
        rid = request.request_id
        future = self.replies.expect(request, trip)
        sent = time.monotonic()
        try:
            if send:
                try:
                    await self._send(request, timeout=timeout, trip=trip)
                except KafkaUnavailable:
                    # Indeterminate: the idempotent producer keeps the record and delivers it
                    # once a leader is back (an election), so its answer may still come; kept,
                    # it answers a retry of this id instead of a second publish.
                    self.replies.watch(rid, shape_of(request), context, sent, request.input_digest)
                    raise
                if on_sent is not None:
                    on_sent()
            try:
                answer = await self._answer(request, future, trip, deadline=sent + timeout)
            except TimeoutError as exc:
                self.replies.watch(rid, shape_of(request), context, sent, request.input_digest)
                raise PredictionTimeout(
                    f"no worker answered request {rid} within {timeout:g}s: check that "
                    "`irisflow worker` is running and keeping up"
                ) from exc
        finally:
            self.replies.forget(rid, future)
        if answer.error is not None:
            raise PredictionFailed(
                answer.error, code=answer.error_code or ErrorCode.INVALID_REQUEST
            )
        return answer

    async def _answer(
        self,
        request: Request,
        future: asyncio.Future[Answer],
        trip: Trip | None,
        *,
        deadline: float,
    ) -> Answer:
        """The answer, sending hedged copies while it is late; ``TimeoutError`` at the deadline."""
        origin = trip.partition if trip is not None else None
        tried: set[int] = {origin} if origin is not None else set()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            hedging = origin is not None and self.hedger.enabled
            wait = min(remaining, self.hedger.delay) if hedging else remaining
            done, _ = await asyncio.wait({future}, timeout=wait)
            if done:
                return future.result()
            if not hedging or trip is None or origin is None:
                continue
            target = self.hedger.target(origin, tried)
            if target is None:
                continue
            tried.add(target)
            await self._hedge(request, trip, origin=origin, to=target, timeout=remaining)

    async def _hedge(
        self, request: Request, trip: Trip, *, origin: int, to: int, timeout: float
    ) -> None:
        """Send a copy of ``request`` to partition ``to``; a failure only costs the copy."""
        span = trip.request_span or trip.span
        headers = (span.as_header(), (HEDGE_OF, str(origin).encode()))
        record = self.topics.requests.record(request, partition=to, headers=headers)
        try:
            await self.publish(record, timeout=timeout)
        except KafkaUnavailable as exc:
            log.warning(
                "a hedged copy of %s to partition %d failed: %s", request.request_id, to, exc
            )
            return
        trip.hedges += 1
        if self.on_hedge is not None:
            self.on_hedge()
