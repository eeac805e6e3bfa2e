"""Scoring a micro-batch: raw Kafka records in, one encoded answer per request out.

Pure logic (no faust, no aiokafka) so that it is unit-tested without a broker and benchmarked in
isolation. Batching is the design: every row of every message in a batch, single requests and
batched requests alike, goes through ONE ``predict_proba`` call (one call for 1000 rows costs
about what three single-row calls cost).

Requests are decoded with pydantic (the wire contract, ~3 µs a message); answers are encoded
with orjson from plain dicts shaped exactly like :class:`~irisflow.schemas.Prediction` and
:class:`~irisflow.schemas.BatchPrediction` (building a pydantic object per row would cost more
than the prediction itself). Unit tests decode every answer with those models.
"""

from __future__ import annotations

import logging
import operator
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import orjson
import sklearn

from irisflow.features import FeatureSchema
from irisflow.schemas import (
    REQUEST_ID_PATTERN,
    SCHEMA_VERSION,
    AnswerError,
    BatchPredictionRequest,
    ModelMetadata,
    PredictionRequest,
    clip,
)
from irisflow.topics import (
    DeadLetters,
    Incoming,
    Outgoing,
    Reason,
    Refused,
    Topic,
    decode_request,
)

__all__ = [
    "NO_MODEL",
    "BatchResult",
    "Incoming",
    "LiveModel",
    "Outgoing",
    "Scored",
    "score_batch",
    "unanswerable",
]

Request = PredictionRequest | BatchPredictionRequest
log = logging.getLogger(__name__)
NO_MODEL = "no model is live yet: train one with `irisflow train` (or wait for the trainer)"
CONSUMER = "streams.scoring"
_VALID_ID = re.compile(REQUEST_ID_PATTERN.encode())
_DEFAULT_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class LiveModel:
    """A loaded estimator together with the metadata it was published with."""

    metadata: ModelMetadata
    estimator: Any
    max_reference_std: float | None = None

    @property
    def version(self) -> int:
        return self.metadata.version

    @cached_property
    def classes(self) -> list[str]:
        return [str(c) for c in self.estimator.classes_]

    @cached_property
    def class_set(self) -> frozenset[str]:
        return frozenset(self.classes)

    @cached_property
    def schema(self) -> FeatureSchema:
        """Names and value domain the model takes (the same rule the gateway applies)."""
        return FeatureSchema(
            self.metadata.feature_names,
            self.metadata.reference_stats,
            max_reference_std=self.max_reference_std,
        )

    @cached_property
    def row(self) -> Callable[[dict[str, float]], tuple[float, ...]]:
        """Features of one instance in model order (``itemgetter`` is ~5x a comprehension)."""
        names = self.metadata.feature_names
        if len(names) == 1:
            return lambda features: (features[names[0]],)
        return operator.itemgetter(*names)


@dataclass(frozen=True)
class Scored:
    """A scored single request, as the feedback join needs it."""

    key: bytes
    partition: int | None
    features: dict[str, float]
    label: str


@dataclass
class BatchResult:
    """What one micro-batch produced: answers, dead letters, and what metrics/drift/join need."""

    answers: list[Outgoing] = field(default_factory=list)
    dead_letters: list[Outgoing] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    """Requests answered with an error (or dead-lettered) instead of a label, by reason."""
    model_version: int | None = None
    rows: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    """Every scored row, columns in the model's feature order (drift detectors read them)."""
    labels: list[str] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    """Seconds from ``sent_at`` to scored, one per answered message."""
    singles: list[Scored] = field(default_factory=list)

    def reject(self, reason: str, count: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + count

    def absorb(self, other: BatchResult) -> None:
        """Add ``other``'s outcome (answers and letters excepted: the caller sends those)."""
        for reason, count in other.rejected.items():
            self.reject(reason, count)
        if len(other.rows):
            self.rows = other.rows if not len(self.rows) else np.vstack([self.rows, other.rows])
        self.labels += other.labels
        self.confidences += other.confidences
        self.latencies += other.latencies
        self.singles += other.singles


def _request_error(request: Request, model: LiveModel) -> str | None:
    schema = model.schema
    if isinstance(request, PredictionRequest):
        return schema.describe(schema.name_problems(request.features, "features")) or None
    for index, instance in enumerate(request.instances):
        problems = schema.name_problems(instance, f"instances.{index}")
        if problems:
            return schema.describe(problems)
    return None


def _encode(body: dict[str, Any]) -> bytes:
    return orjson.dumps({"schema_version": SCHEMA_VERSION, **body})


def _error_body(
    request_id: str,
    error: str,
    code: AnswerError,
    *,
    version: int | None,
    latency: float,
    stamp: float,
    request: Request | None = None,
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "model_version": version,
        "latency_seconds": latency,
        "scored_at": stamp,
        "error": clip(error),
        "error_code": code,
        "reply_to": request.reply_to if request is not None else None,
        "input_digest": request.input_digest if request is not None else None,
    }


def _size(request: Request) -> int:
    return 1 if isinstance(request, PredictionRequest) else len(request.instances)


class _Batch:
    """Accumulates one micro-batch; a helper of :func:`score_batch`."""

    def __init__(
        self,
        model: LiveModel | None,
        topic: Topic[Request],
        answers_topic: str,
        letters: DeadLetters,
    ) -> None:
        self.model = model
        self.topic = topic
        self.answers_topic = answers_topic
        self.letters = letters
        self.result = BatchResult(model_version=model.version if model else None)
        self.valid: list[tuple[Incoming, Request]] = []

    def answer(self, record: Incoming, body: dict[str, Any], key: bytes | None = None) -> None:
        key = key if key is not None else body["request_id"].encode()
        self.result.answers.append(
            Outgoing(self.answers_topic, key, _encode(body), record.partition)
        )

    def dead_letter(self, record: Incoming, reason: Reason, error: str) -> None:
        self.result.dead_letters.append(
            self.letters.letter(record, source_topic=self.topic.name, reason=reason, error=error)
        )

    def refuse(
        self,
        record: Incoming,
        request: Request,
        error: str,
        code: AnswerError,
        now: float,
        *,
        reason: Reason | None = None,
    ) -> None:
        """Answer ``request`` with an error (and dead-letter it, unless there is no model)."""
        if reason is not None:
            self.dead_letter(record, reason, error)
        version = self.model.version if self.model and code != "no_model" else None
        latency = max(0.0, now - request.sent_at)
        body = _error_body(
            request.request_id,
            error,
            code,
            version=version,
            latency=latency,
            stamp=now,
            request=request,
        )
        self.answer(record, body)
        self.result.reject(str(reason) if reason is not None else code)

    def admit(self, record: Incoming, now: float) -> None:
        try:
            request = self.topic.decode(record.value, record.key)
        except Refused as exc:
            self.dead_letter(record, exc.reason, str(exc))
            self.result.reject(str(exc.reason))
            if record.key and _VALID_ID.fullmatch(record.key):
                # The key still names the request: its caller gets an answer too.
                body = _error_body(
                    record.key.decode(),
                    f"invalid request: {exc}",
                    "invalid_request",
                    version=None,
                    latency=0.0,
                    stamp=now,
                )
                self.answer(record, body, key=record.key)
            return
        if self.model is None:
            self.refuse(record, request, NO_MODEL, "no_model", now)
            return
        problem = _request_error(request, self.model)
        if problem:
            self.refuse(
                record, request, problem, "schema_mismatch", now, reason=Reason.SCHEMA_MISMATCH
            )
            return
        self.valid.append((record, request))


def unanswerable(record: Incoming, answers_topic: str, now: float) -> list[Outgoing]:
    """An error answer for a record that could not be handled, if its key names a request
    (so its caller learns at once instead of waiting for a timeout)."""
    if not record.key or not _VALID_ID.fullmatch(record.key):
        return []
    body = _error_body(
        record.key.decode(),
        "the worker could not handle this request; it was dead-lettered",
        "invalid_request",
        version=None,
        latency=0.0,
        stamp=now,
    )
    return [Outgoing(answers_topic, record.key, _encode(body), record.partition)]


def _requests_topic(name: str) -> Topic[Request]:
    return Topic(name, decode_request, lambda request: request.request_id)


def score_batch(
    model: LiveModel | None,
    records: Sequence[Incoming],
    *,
    source_topic: str,
    answers_topic: str = "predictions",
    dead_letters_topic: str = "dead-letters",
    letters: DeadLetters | None = None,
    clock: Callable[[], float] = time.time,
) -> BatchResult:
    """Decode, validate against the model's features and domain, predict once, answer all.

    Every answer lands in the partition its request came from (co-partitioned by request id).
    A record that cannot be decoded (or whose key is not its request id) is dead-lettered, and
    answered with an error too when its key is a valid request id; a request that does not fit
    the model (names, values outside its domain, an output that is not finite) is answered with
    an error and dead-lettered; with no model live every request gets an explicit ``no_model``
    answer (callers learn at once why, instead of timing out, and nothing is dropped). If the
    model raises on the batch, requests are scored one by one so that only the ones it cannot
    take are refused: one record never costs the others their answer.
    """
    letters = letters or DeadLetters(
        dead_letters_topic, CONSUMER, max_message_bytes=_DEFAULT_MESSAGE_BYTES
    )
    batch = _Batch(model, _requests_topic(source_topic), answers_topic, letters)
    now = clock()
    for record in records:
        batch.admit(record, now)
    if batch.valid and model is not None:
        matrix = _matrix(model, batch.valid)
        domain = _domain_error(model)
        bad = model.schema.out_of_domain(matrix)
        matrix = _refuse_rows(
            batch, matrix, bad, now, Reason.OUT_OF_DOMAIN, "out_of_domain", domain
        )
        if batch.valid:
            _predict(model, batch, matrix, clock)
    return batch.result


def _matrix(model: LiveModel, valid: list[tuple[Incoming, Request]]) -> np.ndarray:
    row = model.row
    rows: list[tuple[float, ...]] = []
    for _, request in valid:
        if isinstance(request, PredictionRequest):
            rows.append(row(request.features))
        else:
            rows.extend(map(row, request.instances))
    return np.array(rows, dtype=np.float64).reshape(-1, len(model.metadata.feature_names))


def _probabilities(model: LiveModel, matrix: np.ndarray) -> np.ndarray:
    # Finite numbers were checked at decoding: skip scikit-learn's second pass over the rows.
    with sklearn.config_context(assume_finite=True), np.errstate(all="ignore"):
        result: np.ndarray = model.estimator.predict_proba(matrix)
    return result


Describe = Callable[[Request, list[int], np.ndarray], str]


def _domain_error(model: LiveModel) -> Describe:
    def describe(request: Request, bad: list[int], rows: np.ndarray) -> str:
        if isinstance(request, PredictionRequest):
            return model.schema.row_problem(rows[0], "features")
        first = model.schema.row_problem(rows[bad[0]], f"instances.{bad[0]}")
        more = f" (instances {bad[:10]} are outside the model's domain)" if len(bad) > 1 else ""
        return first + more

    return describe


def _unscorable(request: Request, bad: list[int], rows: np.ndarray) -> str:
    where = "" if isinstance(request, PredictionRequest) else f" (instances {bad[:10]})"
    return f"features too large to score: the model's output is not finite{where}"


def _refuse_rows(
    batch: _Batch,
    matrix: np.ndarray,
    bad_rows: np.ndarray,
    now: float,
    reason: Reason,
    code: AnswerError,
    describe: Describe,
) -> np.ndarray:
    """Refuse every request with a bad row and keep the rest: ``matrix`` without their rows
    (a slice, not a rebuild: one hostile row must not double a batch's cost)."""
    if not bad_rows.any():
        return matrix
    kept: list[tuple[Incoming, Request]] = []
    keep_rows = np.ones(len(matrix), dtype=bool)
    start = 0
    for record, request in batch.valid:
        size = _size(request)
        bad = np.flatnonzero(bad_rows[start : start + size]).tolist()
        if bad:
            rows = matrix[start : start + size]
            batch.refuse(record, request, describe(request, bad, rows), code, now, reason=reason)
            keep_rows[start : start + size] = False
        else:
            kept.append((record, request))
        start += size
    batch.valid = kept
    return matrix[keep_rows]


def _isolate_failures(model: LiveModel, batch: _Batch, now: float) -> None:
    """The model raised on the whole batch: score request by request and refuse only those it
    raises on (a model that passed its contract checks should never get here)."""
    kept: list[tuple[Incoming, Request]] = []
    for record, request in batch.valid:
        try:
            _probabilities(model, _matrix(model, [(record, request)]))
        except Exception as exc:
            error = f"the model raised while scoring this request: {exc!r}"
            batch.refuse(
                record, request, error, "invalid_request", now, reason=Reason.PROCESSING_FAILED
            )
        else:
            kept.append((record, request))
    batch.valid = kept


def _guarded_probabilities(
    model: LiveModel, batch: _Batch, matrix: np.ndarray, clock: Callable[[], float]
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(matrix, probabilities)`` of the requests the model can score, or ``None``."""
    try:
        return matrix, _probabilities(model, matrix)
    except Exception as exc:
        log.error(
            "model version %d raised on a batch of %d requests: %r; scoring them one by one",
            model.version,
            len(batch.valid),
            exc,
        )
    _isolate_failures(model, batch, clock())
    if not batch.valid:
        return None
    matrix = _matrix(model, batch.valid)
    try:
        return matrix, _probabilities(model, matrix)
    except Exception as exc:  # fails together but not alone: refuse what is left
        for record, request in batch.valid:
            error = f"the model raised while scoring this batch: {exc!r}"
            batch.refuse(
                record,
                request,
                error,
                "invalid_request",
                clock(),
                reason=Reason.PROCESSING_FAILED,
            )
        batch.valid = []
        return None


def _predict(
    model: LiveModel, batch: _Batch, matrix: np.ndarray, clock: Callable[[], float]
) -> None:
    scored = _guarded_probabilities(model, batch, matrix, clock)
    if scored is None:
        return
    matrix, probabilities = scored
    if not np.isfinite(probabilities).all():  # rare: score again without the offending rows
        finite = np.isfinite(probabilities).all(axis=1)
        matrix = _refuse_rows(
            batch, matrix, ~finite, clock(), Reason.UNSCORABLE, "invalid_request", _unscorable
        )
        if not batch.valid:
            return
        scored = _guarded_probabilities(model, batch, matrix, clock)
        if scored is None:
            return
        matrix, probabilities = scored
    classes = model.classes
    winners = probabilities.argmax(axis=1).tolist()
    best = probabilities.max(axis=1).tolist()
    table = probabilities.tolist()
    stamp = clock()
    result = batch.result
    result.rows = matrix
    result.labels = [classes[i] for i in winners]
    result.confidences = best
    start = 0
    for record, request in batch.valid:
        latency = max(0.0, stamp - request.sent_at)
        result.latencies.append(latency)
        body: dict[str, Any] = {
            "request_id": request.request_id,
            "model_version": model.version,
            "latency_seconds": latency,
            "scored_at": stamp,
            "error": None,
            "error_code": None,
            "reply_to": request.reply_to,
            "input_digest": request.input_digest,
        }
        if isinstance(request, PredictionRequest):
            label = result.labels[start]
            body["label"] = label
            body["probabilities"] = dict(zip(classes, table[start], strict=True))
            key = request.request_id.encode()
            result.singles.append(Scored(key, record.partition, request.features, label))
            start += 1
        else:
            stop = start + len(request.instances)
            body["predictions"] = [
                {
                    "label": result.labels[i],
                    "probabilities": dict(zip(classes, table[i], strict=True)),
                }
                for i in range(start, stop)
            ]
            start = stop
        batch.answer(record, body)
