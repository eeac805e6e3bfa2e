"""A micro-batch on its way in: decode each record, check it against the live model, refuse
what does not fit.

Pure logic (no faust, no aiokafka), a helper of :func:`streams.scoring.score_batch`. Every
refusal is explicit: a record that cannot be decoded is dead-lettered (and answered when its
key names a request); a request that does not fit the model is answered with an error and
dead-lettered; with no model live every request is answered ``no_model``. Whatever is left is
what the model scores.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from irisflow.answers import error_answer, instances_in
from irisflow.features import FeatureSchema
from irisflow.schemas import (
    REQUEST_ID_PATTERN,
    ErrorCode,
    MatrixPredictionRequest,
    ModelMetadata,
    PredictionRequest,
)
from irisflow.topics import (
    AnyRequest,
    DeadLetters,
    Incoming,
    Outgoing,
    Reason,
    Refused,
    Topic,
    decode_request,
)

__all__ = [
    "CONSUMER",
    "NO_MODEL",
    "BatchResult",
    "Describe",
    "Intake",
    "LiveModel",
    "Outcome",
    "Request",
    "Scored",
    "requests_topic",
    "rows_of",
    "unanswerable",
]

Request = AnyRequest
NO_MODEL = "no model is live yet: train one with `irisflow train` (or wait for the trainer)"
CONSUMER = "streams.scoring"
_VALID_ID = re.compile(REQUEST_ID_PATTERN.encode())


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


@dataclass(frozen=True)
class Outcome:
    """What one version made of one request, as a rollout's shadow record compares it:
    one label and top-class probability per instance, or why it gave none."""

    labels: list[str] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    error: str | None = None


OutcomeKey = tuple[bytes, int | None]
"""(request id, partition): a hedged copy shares its original's id, not its partition."""


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
    outcomes: dict[OutcomeKey, Outcome] | None = None
    """Per request, only when asked for (a rollout pairs versions): the common path stays free
    of the per-request bookkeeping."""

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
        if self.outcomes is not None and other.outcomes is not None:
            self.outcomes.update(other.outcomes)


def requests_topic(name: str) -> Topic[Request]:
    return Topic(name, decode_request, lambda request: request.request_id)


def unanswerable(
    record: Incoming,
    answers_topic: str,
    now: float,
    error: str = "the worker could not handle this request; it was dead-lettered",
) -> list[Outgoing]:
    """An error answer for a record that could not be handled, if its key names a request
    (so its caller learns at once instead of waiting for a timeout)."""
    if not record.key or not _VALID_ID.fullmatch(record.key):
        return []
    value = error_answer(
        record.key.decode(),
        error,
        ErrorCode.INVALID_REQUEST,
        model_version=None,
        latency_seconds=0.0,
        scored_at=now,
    )
    return [Outgoing(answers_topic, record.key, value, record.partition)]


def rows_of(model: LiveModel, valid: list[tuple[Incoming, Request]]) -> np.ndarray:
    """Every instance of ``valid``'s requests, one row each, columns in the model's order.

    A matrix request's rows become an array in one call, its columns reordered to the model's
    (its names were checked to be exactly the model's)."""
    row = model.row
    names = model.metadata.feature_names
    parts: list[np.ndarray] = []
    rows: list[tuple[float, ...]] = []
    for _, request in valid:
        if isinstance(request, MatrixPredictionRequest):
            if rows:
                parts.append(np.array(rows, dtype=np.float64).reshape(-1, len(names)))
                rows = []
            parts.append(_matrix(request, names))
        elif isinstance(request, PredictionRequest):
            rows.append(row(request.features))
        else:
            rows.extend(map(row, request.instances))
    if rows or not parts:
        parts.append(np.array(rows, dtype=np.float64).reshape(-1, len(names)))
    return parts[0] if len(parts) == 1 else np.vstack(parts)


def _matrix(request: MatrixPredictionRequest, names: list[str]) -> np.ndarray:
    matrix = np.array(request.rows, dtype=np.float64).reshape(-1, len(request.feature_names))
    if request.feature_names == names:
        return matrix
    position = {name: i for i, name in enumerate(request.feature_names)}
    return matrix[:, [position[name] for name in names]]


Describe = Callable[[Request, list[int], np.ndarray], str]
"""Why a request's rows were refused: (request, its bad row indices, its rows) -> message."""


class Intake:
    """One micro-batch: its answers and letters so far, and the requests still to be scored."""

    def __init__(
        self,
        model: LiveModel | None,
        topic: Topic[Request],
        answers_topic: str,
        letters: DeadLetters | None,
        *,
        outcomes: bool = False,
    ) -> None:
        self.model = model
        self.topic = topic
        self.answers_topic = answers_topic
        self.letters = letters
        """``None``: a comparison pass that answers nobody and dead-letters nothing (the pass
        that answers the request refuses it, exactly once)."""
        self.result = BatchResult(model_version=model.version if model else None)
        if outcomes or letters is None:
            self.result.outcomes = {}
        self.valid: list[tuple[Incoming, Request]] = []

    def answer(self, record: Incoming, request: Request, value: bytes) -> None:
        """Send ``value`` as the answer to ``request``, to the partition it came from (never
        called by a comparison pass: it builds no answers)."""
        key = request.request_id.encode()
        self.result.answers.append(Outgoing(self.answers_topic, key, value, record.partition))

    def dead_letter(self, record: Incoming, reason: Reason, error: str) -> None:
        if self.letters is None:
            return
        self.result.dead_letters.append(
            self.letters.letter(record, source_topic=self.topic.name, reason=reason, error=error)
        )

    def refuse(
        self,
        record: Incoming,
        request: Request,
        error: str,
        code: ErrorCode,
        now: float,
        *,
        reason: Reason | None = None,
    ) -> None:
        """Answer ``request`` with an error (and dead-letter it, unless there is no model)."""
        if self.result.outcomes is not None:
            key = request.request_id.encode()
            self.result.outcomes[key, record.partition] = Outcome(error=error)
        if self.letters is None:
            self.result.reject(str(reason) if reason is not None else code)
            return
        if reason is not None:
            self.dead_letter(record, reason, error)
        value = error_answer(
            request.request_id,
            error,
            code,
            model_version=self.model.version if self.model and code != ErrorCode.NO_MODEL else None,
            latency_seconds=max(0.0, now - request.sent_at),
            scored_at=now,
            reply_to=request.reply_to,
            input_digest=request.input_digest,
        )
        self.answer(record, request, value)
        self.result.reject(str(reason) if reason is not None else code)

    def admit(self, record: Incoming, now: float) -> None:
        """Decode ``record`` and check it against the model: keep it to score, or refuse it."""
        try:
            request = self.topic.decode(record.value, record.key)
        except Refused as exc:
            self.dead_letter(record, exc.reason, str(exc))
            self.result.reject(str(exc.reason))
            # The key may still name the request: its caller gets an answer too.
            error = f"invalid request: {exc}"
            if self.letters is not None:
                self.result.answers += unanswerable(record, self.answers_topic, now, error)
            return
        if self.model is None:
            self.refuse(record, request, NO_MODEL, ErrorCode.NO_MODEL, now)
            return
        problem = _name_problem(request, self.model)
        if problem:
            self.refuse(
                record,
                request,
                problem,
                ErrorCode.SCHEMA_MISMATCH,
                now,
                reason=Reason.SCHEMA_MISMATCH,
            )
            return
        self.valid.append((record, request))

    def refuse_out_of_domain(self, matrix: np.ndarray, now: float) -> np.ndarray:
        """Refuse every request with a value outside the model's domain; the rows of the rest."""
        assert self.model is not None
        bad = self.model.schema.out_of_domain(matrix)
        describe = _domain_error(self.model)
        return self.refuse_rows(
            matrix, bad, now, Reason.OUT_OF_DOMAIN, ErrorCode.OUT_OF_DOMAIN, describe
        )

    def refuse_rows(
        self,
        matrix: np.ndarray,
        bad_rows: np.ndarray,
        now: float,
        reason: Reason,
        code: ErrorCode,
        describe: Describe,
    ) -> np.ndarray:
        """Refuse every request with a bad row and keep the rest: ``matrix`` without their rows
        (a slice, not a rebuild: one hostile row must not double a batch's cost)."""
        if not bad_rows.any():
            return matrix
        kept: list[tuple[Incoming, Request]] = []
        keep_rows = np.ones(len(matrix), dtype=bool)
        start = 0
        for record, request in self.valid:
            size = instances_in(request)
            bad = np.flatnonzero(bad_rows[start : start + size]).tolist()
            if bad:
                rows = matrix[start : start + size]
                error = describe(request, bad, rows)
                self.refuse(record, request, error, code, now, reason=reason)
                keep_rows[start : start + size] = False
            else:
                kept.append((record, request))
            start += size
        self.valid = kept
        return matrix[keep_rows]


def _name_problem(request: Request, model: LiveModel) -> str | None:
    schema = model.schema
    if isinstance(request, PredictionRequest):
        return schema.describe(schema.name_problems(request.features, "features")) or None
    if isinstance(request, MatrixPredictionRequest):
        names = dict.fromkeys(request.feature_names)
        return schema.describe(schema.name_problems(names, "feature_names")) or None
    for index, instance in enumerate(request.instances):
        problems = schema.name_problems(instance, f"instances.{index}")
        if problems:
            return schema.describe(problems)
    return None


def _domain_error(model: LiveModel) -> Describe:
    def describe(request: Request, bad: list[int], rows: np.ndarray) -> str:
        if isinstance(request, PredictionRequest):
            return model.schema.row_problem(rows[0], "features")
        where = "rows" if isinstance(request, MatrixPredictionRequest) else "instances"
        first = model.schema.row_problem(rows[bad[0]], f"{where}.{bad[0]}")
        more = f" ({where} {bad[:10]} are outside the model's domain)" if len(bad) > 1 else ""
        return first + more

    return describe
