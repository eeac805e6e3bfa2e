"""Feeds the audit store from the topics: requests, predictions, feedback and drift alarms.

A consumer group of its own per database, so that the gateways that share one database share
the work (Kafka splits the partitions between them) and a gateway with its own database reads
everything. Offsets are committed only after the batch is in the database: a gateway that dies
re-reads, and the upserts make the second write a no-op (at-least-once, idempotent).

No record stops the feed. Each is decoded by its topic's codec (schema and key); one that fails
is dead-lettered (consumer ``gateway.audit``) and its offset committed with the rest. A batch the
database refuses is written again row by row, and a row it still refuses is dead-lettered as
``processing_failed``: one bad row costs one letter, never the partition. Only an
infrastructure failure (the database unreachable or locked: ``OperationalError``) stops a poll;
nothing is committed then, and the supervisor starts the feed again to re-read it.

Each request's hop stamps and trace id go to their own table: the gateway's arrival stamp and
the trace from the request record's headers, the worker's stamps from the answer's, and this
gateway's own moments (when the broker had the request, when the answer went out) from
``gateway_hops``, drained into every batch. Stamps are diagnostics: a batch of them that the
database refuses is logged and dropped, never dead-lettered.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from gateway.audit.store import AuditBatch, AuditStore
from irisflow.kafka.clients import make_consumer, make_producer, send
from irisflow.schemas import (
    BatchPrediction,
    BatchPredictionRequest,
    DriftEvent,
    Feedback,
    MatrixPrediction,
    MatrixPredictionRequest,
    Prediction,
    PredictionRequest,
)
from irisflow.settings import KafkaSettings
from irisflow.topics import (
    AnyAnswer,
    AnyRequest,
    DeadLetters,
    Incoming,
    Outgoing,
    Reason,
    Refused,
    Topic,
    Topics,
)
from irisflow.tracing import read_hops, trace_of

__all__ = [
    "CONSUMER",
    "POLL_BYTES",
    "AuditFeed",
    "audit_group_id",
    "drift_row",
    "feedback_row",
    "prediction_row",
    "request_row",
]

log = logging.getLogger(__name__)

CONSUMER = "gateway.audit"
"""The consumer name on this feed's dead letters and in the dead-letter metric."""
POLL_BYTES = 4 * 1024 * 1024
"""Record bytes one fetch of the feed brings at most (about 60 batches of 1,000 rows)."""


def audit_group_id(app_id: str, url: str) -> str:
    """One group per database: a SQLite file is local to its host, a server URL is not."""
    identity = url.split("@")[-1]  # no credentials in a group id
    if identity.startswith("sqlite"):
        identity = f"{socket.gethostname()}:{identity}"
    return f"{app_id}-gateway-audit-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def request_row(request: AnyRequest) -> dict[str, Any]:
    """A request's row; a matrix is stored as it came (names once, then rows: no dict per
    instance to build and write), and read back as a batch of instances
    (:func:`gateway.audit.tables.instances_of`)."""
    features: Any
    if isinstance(request, MatrixPredictionRequest):
        features = {"feature_names": request.feature_names, "rows": request.rows}
    elif isinstance(request, BatchPredictionRequest):
        features = request.instances
    else:
        features = request.features
    single = isinstance(request, PredictionRequest)
    return {
        "request_id": request.request_id,
        "kind": "single" if single else "batch",
        "at": request.sent_at,
        "sent_at": request.sent_at,
        "features": features,
        "reply_to": request.reply_to,
        "n_instances": _size(request),
    }


def _size(request: AnyRequest) -> int:
    if isinstance(request, MatrixPredictionRequest):
        return len(request.rows)
    return len(request.instances) if isinstance(request, BatchPredictionRequest) else 1


def _answers(answer: AnyAnswer) -> tuple[Any, int]:
    """A batch answer as the audit keeps it, and its number of instances: a matrix's columns
    as they came (read back by :func:`gateway.audit.tables.answers_of`), a batch's dicts."""
    if isinstance(answer, MatrixPrediction):
        columns = {
            "classes": answer.classes,
            "labels": answer.labels,
            "probabilities": answer.probabilities,
        }
        return columns, len(answer.labels)
    if isinstance(answer, BatchPrediction):
        return [p.model_dump() for p in answer.predictions], len(answer.predictions)
    return None, 1


def prediction_row(answer: AnyAnswer) -> dict[str, Any]:
    single = isinstance(answer, Prediction)
    predictions, count = _answers(answer)
    return {
        "request_id": answer.request_id,
        "kind": "single" if single else "batch",
        "at": answer.scored_at,
        "n_instances": count,
        "label": answer.label if isinstance(answer, Prediction) else None,
        "probabilities": answer.probabilities if isinstance(answer, Prediction) else None,
        "predictions": predictions,
        "model_version": answer.model_version,
        "latency_seconds": answer.latency_seconds,
        "scored_at": answer.scored_at,
        "error": answer.error,
        "error_code": answer.error_code,
    }


def feedback_row(feedback: Feedback) -> dict[str, Any]:
    return {
        "request_id": feedback.request_id,
        "kind": "single",
        "at": feedback.labeled_at,
        "n_instances": 1,
        "true_label": feedback.label,
        "labeled_at": feedback.labeled_at,
    }


def drift_row(event: DriftEvent) -> dict[str, Any]:
    return {
        "model_name": event.model_name,
        "model_version": event.model_version,
        "feature": event.feature,
        "detector": event.detector,
        "statistic": event.statistic,
        "threshold": event.threshold,
        "window_size": event.window,
        "detected_at": event.detected_at,
    }


@dataclass(frozen=True)
class _Route:
    stream: str  # the AuditBatch list it fills: requests, predictions, feedback, drift
    topic: Topic[Any]
    row: Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class _Row:
    stream: str
    values: dict[str, Any]
    record: Incoming


@dataclass
class Outcome:
    """What one poll did: rows written per stream, and the dead letters to send."""

    written: dict[str, int]
    letters: list[Outgoing]


class AuditFeed:
    """Consume the four topics and upsert what they say into the store, forever."""

    def __init__(
        self,
        kafka: KafkaSettings,
        store: AuditStore,
        *,
        on_written: Callable[[str, int], None] | None = None,
        on_skipped: Callable[[str], None] | None = None,
        on_letter: Callable[[str, str, str], None] | None = None,
        gateway_hops: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        topics = Topics.of(kafka)
        self._gateway_hops = gateway_hops or list
        self._kafka = kafka
        self._store = store
        self._group = audit_group_id(kafka.app_id, store.url)
        self._on_written = on_written or (lambda stream, n: None)
        self._on_skipped = on_skipped or (lambda stream: None)
        self._letters = DeadLetters.to(kafka, CONSUMER, on_letter=on_letter)
        routes = [
            _Route("requests", topics.requests, request_row),
            _Route("predictions", topics.predictions, prediction_row),
            _Route("feedback", topics.feedback, feedback_row),
            _Route("drift", topics.drift_events, drift_row),
        ]
        self._routes = {route.topic.name: route for route in routes}

    async def run(self) -> None:
        """Consume until cancelled; a broker outage is waited out, then consumption resumes."""
        while True:
            # Fewer, larger writes: the broker holds a fetch for up to half a second until 64 KB
            # are there, so the feed writes a few batches a second at any rate instead of one
            # per answer (the audit trails by at most that; the answers themselves never wait).
            # A fetch brings at most POLL_BYTES (the broker still sends one larger record
            # whole): a feed that lags behind 1,000-row batches must not read 50 MB of them,
            # hundreds of MB once decoded, into the gateway at once.
            consumer = make_consumer(
                self._kafka,
                *self._routes,
                group_id=self._group,
                max_poll_records=2000,
                fetch_min_bytes=64 * 1024,
                fetch_max_wait_ms=500,
                fetch_max_bytes=POLL_BYTES,
            )
            producer = make_producer(self._kafka)
            try:
                await consumer.start()
                await producer.start()
                await self._consume(consumer, producer)
            except KafkaError as exc:
                log.warning("audit feed: %r; reconnecting", exc)
                await asyncio.sleep(1.0)
            finally:
                await consumer.stop()
                await producer.stop()

    async def _consume(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        while True:
            polled = await consumer.getmany(timeout_ms=1000)
            records = [Incoming.of(r) for batch in polled.values() for r in batch]
            if not records:
                continue
            outcome = await asyncio.to_thread(self.process, records, self._gateway_hops())
            for letter in outcome.letters:  # on the broker before the offsets move past them
                await send(producer, letter)
            await consumer.commit()
            for stream, n in outcome.written.items():
                self._on_written(stream, n)

    def process(
        self, records: Sequence[Incoming], gateway_hops: Sequence[dict[str, Any]] = ()
    ) -> Outcome:
        """Decode and store one poll, with ``gateway_hops`` (blocking: runs in a worker thread).

        Returns the rows written and the letters for every record that could not be used.
        """
        rows: list[_Row] = []
        letters: list[Outgoing] = []
        hop_rows = list(gateway_hops)
        for record in records:
            route = self._routes[record.topic]
            try:
                message = route.topic.decode(record.value, record.key)
            except Refused as exc:
                letters.append(self._refuse(route.stream, record, exc.reason, str(exc)))
                continue
            rows.append(_Row(route.stream, route.row(message), record))
            if route.stream in ("requests", "predictions") and (hop := _hop_row(record)):
                hop_rows.append(hop)
        written = self._write(rows, letters, hop_rows)
        return Outcome(written, letters)

    def _write(
        self, rows: list[_Row], letters: list[Outgoing], hop_rows: list[dict[str, Any]]
    ) -> dict[str, int]:
        try:
            self._store.write(_batch(rows, hop_rows))
        except OperationalError:
            raise  # the database is down or locked: nothing is committed, the poll is re-read
        except (SQLAlchemyError, ValueError, TypeError, OverflowError) as exc:
            log.warning("audit: a batch of %d rows failed (%r); writing row by row", len(rows), exc)
            written = self._write_each(rows, letters)
            self._write_hops(hop_rows)
            return written
        return _counts(rows)

    def _write_hops(self, hop_rows: list[dict[str, Any]]) -> None:
        try:
            self._store.write(AuditBatch(hops=hop_rows))
        except OperationalError:
            raise
        except (SQLAlchemyError, ValueError, TypeError, OverflowError) as exc:
            log.warning("audit: %d hop stamps dropped (%r)", len(hop_rows), exc)

    def _write_each(self, rows: list[_Row], letters: list[Outgoing]) -> dict[str, int]:
        stored = []
        for row in rows:
            try:
                self._store.write(_batch([row]))
            except OperationalError:
                raise
            except (SQLAlchemyError, ValueError, TypeError, OverflowError) as exc:
                error = f"the audit store refused the row: {exc!r}"
                letters.append(
                    self._refuse(row.stream, row.record, Reason.PROCESSING_FAILED, error)
                )
            else:
                stored.append(row)
        return _counts(stored)

    def _refuse(self, stream: str, record: Incoming, reason: Reason, error: str) -> Outgoing:
        log.warning(
            "audit: %s[%s] offset %s dead-lettered (%s): %s",
            record.topic,
            record.partition,
            record.offset,
            reason,
            error,
        )
        self._on_skipped(stream)
        return self._letters.letter(record, source_topic=record.topic, reason=reason, error=error)


def _hop_row(record: Incoming) -> dict[str, Any] | None:
    """The trace id and hop stamps a request or an answer carries in its headers, if any."""
    if not record.headers or record.key is None:
        return None
    row: dict[str, Any] = dict(read_hops(record.headers))
    trace = trace_of(record.headers)
    if trace is not None:
        row["trace_id"] = trace.trace_id
    if not row:
        return None
    row["request_id"] = record.key.decode(errors="replace")
    return row


def _batch(rows: Sequence[_Row], hop_rows: Sequence[dict[str, Any]] = ()) -> AuditBatch:
    batch = AuditBatch(hops=list(hop_rows))
    for row in rows:
        target: list[dict[str, Any]] = getattr(batch, row.stream)
        target.append(row.values)
    return batch


def _counts(rows: Sequence[_Row]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.stream] = counts.get(row.stream, 0) + 1
    return counts
