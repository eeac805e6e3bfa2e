"""What the prediction routes do, as plain keyword-only functions (routes stay a few lines).

A request id is answered once. Within a process, :class:`~gateway.answer_book.AnswerBook` makes it
exact. Across replicas and restarts the audit store is the memory: a client-chosen id that the
audit already knows is answered from it (or awaited on the predictions topic if still pending)
instead of being published again. The audit is fed from the topics, so it lags by a poll: two
replicas receiving the same new id within that lag may both publish it (the worker answers
twice, the answers are equal, the audit keeps one row). If the two carried different input, each
replica accepts only the answer whose ``input_digest`` is the digest of what it sent.

An audit row that only has feedback (labels for an id no request was seen for) is not a
request: such an id is published and answered like a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

from pydantic import BaseModel

from gateway.answer_book import AnswerBook, batch_digest, input_digest
from gateway.audit.records import AuditRecord
from gateway.audit.store import AuditStore, AuditUnavailable
from gateway.batches import Batch, BatchAnswer
from gateway.bodies import Accepted, InstancePublic, PredictionPublic
from gateway.bridge import Answer, KafkaBridge, LateHandler, Request
from gateway.errors import RequestIdConflict, UnreadableAnswer
from gateway.metrics import GatewayMetrics
from gateway.trips import HopLog, Trip, record_spans
from irisflow.errors import PredictionFailed, PredictionTimeout
from irisflow.otel import Spans
from irisflow.schemas import (
    BatchPrediction,
    ErrorCode,
    FeatureVector,
    MatrixPrediction,
    MatrixPredictionRequest,
    PredictionRequest,
    now,
)

__all__ = ["Payload", "Scoring", "accept", "on_late_answer", "predict"]

log = logging.getLogger(__name__)

Payload = FeatureVector | Batch
"""One instance (a ``/v1/predict`` body's features), or a checked batch as a matrix."""


def _request(reply_to: str, payload: Payload, request_id: str | None) -> tuple[Request, str]:
    """The request to publish, and its input's digest (which it carries as ``input_digest``).

    A batch travels as a matrix (:class:`~irisflow.schemas.MatrixPredictionRequest`), built
    without validating its rows again: they are the finite, in-domain numbers the batch holds.
    """
    rid = request_id or uuid.uuid4().hex
    if isinstance(payload, Batch):
        digest = batch_digest(payload.names, payload.matrix)
        matrix = MatrixPredictionRequest.model_construct(
            request_id=rid,
            sent_at=now(),
            reply_to=reply_to,
            input_digest=digest,
            feature_names=payload.names,
            rows=payload.matrix.tolist(),
        )
        return matrix, digest
    digest = input_digest("single", payload)
    single = PredictionRequest(
        request_id=rid, features=payload, reply_to=reply_to, input_digest=digest
    )
    return single, digest


def _published_kind(request: Request) -> str:
    """The ``kind`` label of ``irisflow_gateway_published_total`` (``request`` for one instance,
    beside ``feedback``, ``retrain`` and ``promote``; dashboards read these values)."""
    return "request" if isinstance(request, PredictionRequest) else "batch"


def public(answer: Answer, latency: float, trip: Trip | None = None) -> BaseModel:
    """The HTTP shape of a successful answer (the bridge hands over only complete ones; one
    that is not is the worker's fault, 502, never an assert). With the request's ``trip``, the
    latency is the one the client saw and the worker's share is known."""
    worker = None
    if trip is not None and trip.answered is not None:
        latency, worker = trip.latency, trip.worker_seconds
    version = answer.model_version
    if isinstance(answer, MatrixPrediction):
        if version is None or not answer.labels:
            raise UnreadableAnswer("the worker's batch answer has no labels or no version")
        return BatchAnswer.model_construct(  # its lists were validated by the topic's codec
            request_id=answer.request_id,
            model_version=version,
            classes=answer.classes,
            labels=answer.labels,
            probabilities=answer.probabilities,
            latency_seconds=latency,
            worker_seconds=worker,
        )
    if isinstance(answer, BatchPrediction):  # answers a batch of dicts (from a producer)
        if version is None or not answer.predictions:
            raise UnreadableAnswer("the worker's batch answer has no predictions or no version")
        rows = [InstancePublic(**p.model_dump()) for p in answer.predictions]
        return BatchAnswer.of_instances(answer.request_id, version, rows, latency)
    if version is None or answer.label is None:
        raise UnreadableAnswer("the worker's answer has no label or no model version")
    return PredictionPublic(
        request_id=answer.request_id,
        label=answer.label,
        probabilities=answer.probabilities,
        model_version=version,
        latency_seconds=latency,
        worker_seconds=worker,
    )


def _usable(record: AuditRecord) -> bool:
    """Whether an audit row answers its id: a failure, or a success with its result and
    version. Pending and ``unrequested`` rows (and an incomplete answer) do not."""
    if record.error is not None:
        return True
    if record.status != "answered" or record.model_version is None:
        return False
    return bool(record.predictions) if record.kind == "batch" else record.label is not None


def _from_audit(record: AuditRecord) -> BaseModel:
    """The answer a :func:`_usable` row holds (a failed row's error is raised)."""
    if record.error is not None:
        raise PredictionFailed(record.error, code=record.error_code or ErrorCode.INVALID_REQUEST)
    version, latency = record.model_version, record.latency_seconds or 0.0
    if version is None or not _usable(record):
        raise UnreadableAnswer(f"the audit holds no complete answer to {record.request_id}")
    if record.kind == "batch":
        return BatchAnswer.of_instances(
            record.request_id, version, record.predictions or [], latency
        )
    return PredictionPublic(
        request_id=record.request_id,
        label=record.label or "",
        probabilities=record.probabilities or {},
        model_version=version,
        latency_seconds=latency,
    )


#: Failures that a retry may cure: the id is scored again rather than answered from the audit.
_TRANSIENT = {ErrorCode.NO_MODEL}


async def _known(audit: AuditStore, request: Request, digest: str) -> AuditRecord | None:
    """What the audit knows of a client-chosen id: a request still pending, or its answer
    (``None`` if nothing, only feedback, an answer a retry may cure, or an incomplete one, so
    the id is scored again); a different input under it is a conflict."""
    try:
        record = await asyncio.to_thread(audit.get, request.request_id)
    except AuditUnavailable as exc:
        # Serving does not wait for the audit: the id is scored (again, if another replica
        # answered it already: the same model gives the same answer).
        log.warning("%s; scoring %s without checking it", exc, request.request_id)
        return None
    if record is None or record.status == "unrequested":
        return None
    if record.features is not None and input_digest(record.kind, record.features) != digest:
        raise RequestIdConflict(request.request_id)
    if record.error_code in _TRANSIENT:
        return None
    return record if record.status == "pending" or _usable(record) else None


async def _await_pending(
    bridge: KafkaBridge, audit: AuditStore, request: Request, digest: str, timeout: float
) -> BaseModel:
    """Wait for an answer published before: on the topic, or (if it passed already) the audit."""
    started = time.perf_counter()
    waiter = asyncio.ensure_future(bridge.await_answer(request, context=digest, timeout=timeout))
    try:
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=0.25)
            if waiter in done:
                return public(waiter.result(), time.perf_counter() - started)
            try:
                record = await asyncio.to_thread(audit.get, request.request_id)
            except AuditUnavailable:
                continue  # the answer may still come on the topic
            if record is not None and _usable(record):
                return _from_audit(record)
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await waiter


@dataclass(frozen=True)
class Scoring:
    """What the predict path takes, built once per process: the bridge to the workers, the
    per-process answer book, the audit (the memory across replicas), the metrics, and how long
    a caller waits for a worker."""

    bridge: KafkaBridge
    answers: AnswerBook
    audit: AuditStore
    metrics: GatewayMetrics
    timeout: float
    spans: Spans = field(default_factory=Spans)
    """Where each answered trip's spans go (nowhere unless OpenTelemetry export is on)."""
    hop_log: HopLog = field(default_factory=HopLog)
    """This gateway's stamps of answered trips, for the audit trail."""


async def _answer(
    scoring: Scoring,
    request: Request,
    digest: str,
    client_id: bool,
    trip: Trip | None,
    route: str | None = None,
) -> BaseModel:
    bridge, answers, metrics, timeout = (
        scoring.bridge,
        scoring.answers,
        scoring.metrics,
        scoring.timeout,
    )
    kind = "single" if isinstance(request, PredictionRequest) else "batch"
    record = await _known(scoring.audit, request, digest) if client_id else None
    if record is not None and record.status != "pending":
        metrics.replayed_answers.labels("audit").inc()
        return _from_audit(record)
    rid = request.request_id
    started = time.perf_counter()
    try:
        # Published before: by another replica (pending in the audit), or by ?wait=false here
        # if that publish succeeds (if it fails, this call publishes itself).
        if record is not None or await answers.claim_published(rid):
            answers.sent(rid)
            return await _await_pending(bridge, scoring.audit, request, digest, timeout)
        metrics.published.labels(_published_kind(request)).inc()
        answer = await bridge.request(
            request,
            context=digest,
            timeout=timeout,
            on_sent=lambda: answers.sent(rid),
            trip=trip,
        )
    except PredictionTimeout:
        metrics.timeouts.inc()
        raise
    elapsed = time.perf_counter() - started
    metrics.kafka_round_trip.labels(kind).observe(elapsed)
    if trip is not None:
        scoring.hop_log.add(rid, trip)
        name = route or ("POST /v1/predict/batch" if kind == "batch" else "POST /v1/predict")
        record_spans(scoring.spans, trip, name=name, topics=bridge.kafka.topics, key=rid)
    return public(answer, elapsed, trip)


async def predict(
    *,
    scoring: Scoring,
    payload: Payload,
    request_id: str | None,
    trip: Trip | None = None,
    route: str | None = None,
) -> BaseModel:
    """Score one instance or a batch, once per request id (the caller checked Kafka is up);
    ``trip`` is this HTTP request's trace and stamps (see :mod:`gateway.trips`), ``route`` the
    name of its server span (by default the ``/v1`` route of its kind)."""
    request, digest = _request(scoring.bridge.instance_id, payload, request_id)
    result, replayed = await scoring.answers.once(
        request.request_id,
        digest,
        lambda: _answer(scoring, request, digest, request_id is not None, trip, route),
    )
    if replayed:
        scoring.metrics.replayed_answers.labels("memory").inc()
    return result


async def accept(*, scoring: Scoring, payload: Payload, request_id: str | None) -> Accepted:
    """``?wait=false``: publish (unless this id is already known) and say where the answer goes.

    Shares the waiting path's deduplication: an id answered, in flight or claimed here is not
    published again, and the same id with other input is a 409. The 202 comes only once the
    id's record is on the broker: if a call in flight with the id fails to publish, so does
    this one (503), rather than promise an answer that cannot come.
    """
    request, digest = _request(scoring.bridge.instance_id, payload, request_id)
    rid = request.request_id

    async def publish() -> None:
        if request_id is not None and await _known(scoring.audit, request, digest) is not None:
            return  # published before, by another replica or before a restart
        await scoring.bridge.submit(request, context=digest, timeout=scoring.timeout)
        scoring.metrics.published.labels(_published_kind(request)).inc()

    await scoring.answers.publish_once(rid, digest, publish)
    return Accepted(request_id=rid, result_url=f"/v1/predictions/{quote(rid, safe='')}")


def on_late_answer(answers: AnswerBook) -> LateHandler:
    """Remember answers nobody waited for, so a retry of that id is not scored again."""

    def remember(rid: str, digest: str, answer: Answer, elapsed: float) -> None:
        if answer.error is None:
            answers.remember(rid, digest, public(answer, elapsed))
        else:  # a retry is answered from the audit, or scored again if the error may pass
            answers.release(rid)

    return remember
