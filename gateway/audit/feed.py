"""Feeds the audit store from the topics: requests, predictions, feedback and drift alarms.

A consumer group of its own per database, so that the gateways that share one database share
the work (Kafka splits the partitions between them) and a gateway with its own database reads
everything. Offsets are committed only after the batch is in the database: a gateway that dies
re-reads, and the upserts make the second write a no-op (at-least-once, idempotent).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from gateway.audit.store import AuditBatch, AuditStore
from irisflow.errors import SchemaError
from irisflow.kafka.clients import make_consumer
from irisflow.schemas import (
    BatchPrediction,
    BatchPredictionRequest,
    DriftEvent,
    Feedback,
    Prediction,
    describe_validation_error,
)
from irisflow.settings import KafkaSettings
from irisflow.topics import decode_request

__all__ = [
    "AuditFeed",
    "audit_group_id",
    "decode_answer",
    "drift_row",
    "feedback_row",
    "prediction_row",
    "request_row",
]

log = logging.getLogger(__name__)


def audit_group_id(app_id: str, url: str) -> str:
    """One group per database: a SQLite file is local to its host, a server URL is not."""
    identity = url.split("@")[-1]  # no credentials in a group id
    if identity.startswith("sqlite"):
        identity = f"{socket.gethostname()}:{identity}"
    return f"{app_id}-gateway-audit-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def decode_answer(raw: bytes | None) -> Prediction | BatchPrediction:
    """The predictions topic carries both shapes; an object with ``predictions`` is a batch."""
    if raw is None:
        raise SchemaError("Prediction: empty message (tombstone or null value)")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"Prediction: not a JSON document ({exc})") from exc
    shape: type[Prediction] | type[BatchPrediction] = Prediction
    if isinstance(body, dict) and "predictions" in body:
        shape = BatchPrediction
    try:
        return shape.model_validate(body)
    except ValidationError as exc:
        raise SchemaError(f"{shape.__name__}: {describe_validation_error(exc)}") from exc


def request_row(raw: bytes | None) -> dict[str, Any]:
    request = decode_request(raw)
    batch = isinstance(request, BatchPredictionRequest)
    features: Any = request.instances if batch else request.features  # type: ignore[union-attr]
    return {
        "request_id": request.request_id,
        "kind": "batch" if batch else "single",
        "at": request.sent_at,
        "sent_at": request.sent_at,
        "features": features,
        "reply_to": request.reply_to,
        "n_instances": len(features) if batch else 1,
    }


def prediction_row(raw: bytes | None) -> dict[str, Any]:
    answer = decode_answer(raw)
    batch = isinstance(answer, BatchPrediction)
    return {
        "request_id": answer.request_id,
        "kind": "batch" if batch else "single",
        "at": answer.scored_at,
        "n_instances": len(answer.predictions) if batch else 1,  # type: ignore[union-attr]
        "label": None if batch else answer.label,  # type: ignore[union-attr]
        "probabilities": None if batch else answer.probabilities,  # type: ignore[union-attr]
        "predictions": (
            [p.model_dump() for p in answer.predictions]  # type: ignore[union-attr]
            if batch
            else None
        ),
        "model_version": answer.model_version,
        "latency_seconds": answer.latency_seconds,
        "scored_at": answer.scored_at,
        "error": answer.error,
        "error_code": answer.error_code,
    }


def feedback_row(raw: bytes | None) -> dict[str, Any]:
    feedback = Feedback.from_bytes(raw)
    return {
        "request_id": feedback.request_id,
        "kind": "single",
        "at": feedback.labeled_at,
        "n_instances": 1,
        "true_label": feedback.label,
        "labeled_at": feedback.labeled_at,
    }


def drift_row(raw: bytes | None) -> dict[str, Any]:
    event = DriftEvent.from_bytes(raw)
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


class AuditFeed:
    """Consume the four topics and upsert what they say into the store, forever."""

    def __init__(
        self,
        kafka: KafkaSettings,
        store: AuditStore,
        *,
        on_written: Callable[[str, int], None] | None = None,
        on_skipped: Callable[[str], None] | None = None,
    ) -> None:
        names = kafka.topics
        self._kafka = kafka
        self._store = store
        self._group = audit_group_id(kafka.app_id, store.url)
        self._on_written = on_written or (lambda stream, n: None)
        self._on_skipped = on_skipped or (lambda stream: None)
        self._routes: dict[str, tuple[str, Callable[[bytes | None], dict[str, Any]]]] = {
            names.requests: ("requests", request_row),
            names.predictions: ("predictions", prediction_row),
            names.feedback: ("feedback", feedback_row),
            names.drift_events: ("drift", drift_row),
        }

    async def run(self) -> None:
        """Consume until cancelled; a broker outage is waited out, then consumption resumes."""
        while True:
            consumer = make_consumer(
                self._kafka, *self._routes, group_id=self._group, max_poll_records=2000
            )
            try:
                await consumer.start()
                await self._consume(consumer)
            except KafkaError as exc:
                log.warning("audit feed: %r; reconnecting", exc)
                await asyncio.sleep(1.0)
            finally:
                await consumer.stop()

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            polled = await consumer.getmany(timeout_ms=1000)
            batch = AuditBatch()
            counts: dict[str, int] = {}
            for records in polled.values():
                for record in records:
                    self._add(batch, record, counts)
            if len(batch):
                await asyncio.to_thread(self._store.write, batch)
            if polled:
                await consumer.commit()
            for kind, n in counts.items():
                self._on_written(kind, n)

    def _add(
        self, batch: AuditBatch, record: ConsumerRecord[bytes, bytes], counts: dict[str, int]
    ) -> None:
        kind, decode = self._routes[record.topic]
        try:
            row = decode(record.value)
        except SchemaError as exc:
            log.warning(
                "audit: %s[%d] offset %d skipped: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            self._on_skipped(kind)
            return
        target: list[dict[str, Any]] = getattr(batch, kind)
        target.append(row)
        counts[kind] = counts.get(kind, 0) + 1
