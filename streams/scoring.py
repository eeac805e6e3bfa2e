"""Scoring a micro-batch: raw Kafka records in, one encoded answer per request out.

Pure logic (no faust, no aiokafka) so that it is unit-tested without a broker and benchmarked in
isolation. Batching is the design: every row of every message in a batch, single requests and
batched requests alike, goes through ONE ``predict_proba`` call (one call for 1000 rows costs
about what three single-row calls cost).

Requests are decoded with pydantic (the wire contract, ~3 µs a message) by
:mod:`streams.intake`, which also refuses what the model cannot take; answers are encoded by
:mod:`irisflow.answers` with orjson from plain dicts shaped exactly like
:class:`~irisflow.schemas.Prediction` and :class:`~irisflow.schemas.BatchPrediction` (building a
pydantic object per row would cost more than the prediction itself). Unit tests decode every
answer with those models.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import sklearn

from irisflow.answers import instances_in, scored_answer
from irisflow.schemas import ErrorCode, PredictionRequest
from irisflow.topics import DeadLetters, Incoming, Reason
from streams.intake import (
    CONSUMER,
    BatchResult,
    Intake,
    LiveModel,
    Outcome,
    Request,
    Scored,
    requests_topic,
    rows_of,
)

__all__ = ["score_batch"]

log = logging.getLogger(__name__)
_DEFAULT_MESSAGE_BYTES = 10 * 1024 * 1024


def score_batch(
    model: LiveModel | None,
    records: Sequence[Incoming],
    *,
    source_topic: str,
    answers_topic: str = "predictions",
    dead_letters_topic: str = "dead-letters",
    letters: DeadLetters | None = None,
    clock: Callable[[], float] = time.time,
    outcomes: bool = False,
    answer: bool = True,
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

    During a rollout two versions meet some requests: ``outcomes`` also records what the model
    made of each request (:class:`~streams.intake.Outcome`), and ``answer=False`` is the pass of
    the version whose answer nobody gets: the same checks and the same ``predict_proba`` call,
    but no answers and no dead letters (the answering pass refuses a record, once).
    """
    if answer:
        letters = letters or DeadLetters(
            dead_letters_topic, CONSUMER, max_message_bytes=_DEFAULT_MESSAGE_BYTES
        )
    else:
        letters = None
    batch = Intake(model, requests_topic(source_topic), answers_topic, letters, outcomes=outcomes)
    now = clock()
    for record in records:
        batch.admit(record, now)
    if batch.valid and model is not None:
        matrix = batch.refuse_out_of_domain(rows_of(model, batch.valid), now)
        if batch.valid:
            _predict(model, batch, matrix, clock)
    return batch.result


def _probabilities(model: LiveModel, matrix: np.ndarray) -> np.ndarray:
    # Finite numbers were checked at decoding: skip scikit-learn's second pass over the rows.
    with sklearn.config_context(assume_finite=True), np.errstate(all="ignore"):
        result: np.ndarray = model.estimator.predict_proba(matrix)
    return result


def _unscorable(request: Request, bad: list[int], rows: np.ndarray) -> str:
    where = "" if isinstance(request, PredictionRequest) else f" (instances {bad[:10]})"
    return f"features too large to score: the model's output is not finite{where}"


def _isolate_failures(model: LiveModel, batch: Intake, now: float) -> None:
    """The model raised on the whole batch: score request by request and refuse only those it
    raises on (a model that passed its contract checks should never get here)."""
    kept: list[tuple[Incoming, Request]] = []
    for record, request in batch.valid:
        try:
            _probabilities(model, rows_of(model, [(record, request)]))
        except Exception as exc:
            error = f"the model raised while scoring this request: {exc!r}"
            batch.refuse(
                record,
                request,
                error,
                ErrorCode.INVALID_REQUEST,
                now,
                reason=Reason.PROCESSING_FAILED,
            )
        else:
            kept.append((record, request))
    batch.valid = kept


def _guarded_probabilities(
    model: LiveModel, batch: Intake, matrix: np.ndarray, clock: Callable[[], float]
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
    matrix = rows_of(model, batch.valid)
    try:
        return matrix, _probabilities(model, matrix)
    except Exception as exc:  # fails together but not alone: refuse what is left
        error = f"the model raised while scoring this batch: {exc!r}"
        for record, request in batch.valid:
            batch.refuse(
                record,
                request,
                error,
                ErrorCode.INVALID_REQUEST,
                clock(),
                reason=Reason.PROCESSING_FAILED,
            )
        batch.valid = []
        return None


def _finite_probabilities(
    model: LiveModel, batch: Intake, matrix: np.ndarray, clock: Callable[[], float]
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_guarded_probabilities`, without the requests whose output is not finite."""
    scored = _guarded_probabilities(model, batch, matrix, clock)
    if scored is None or np.isfinite(scored[1]).all():
        return scored
    matrix, probabilities = scored  # rare: score again without the offending rows
    finite = np.isfinite(probabilities).all(axis=1)
    matrix = batch.refuse_rows(
        matrix, ~finite, clock(), Reason.UNSCORABLE, ErrorCode.INVALID_REQUEST, _unscorable
    )
    if not batch.valid:
        return None
    return _guarded_probabilities(model, batch, matrix, clock)


def _predict(
    model: LiveModel, batch: Intake, matrix: np.ndarray, clock: Callable[[], float]
) -> None:
    scored = _finite_probabilities(model, batch, matrix, clock)
    if scored is None:
        return
    matrix, probabilities = scored
    if batch.letters is None:
        _compare_only(model, batch, matrix, probabilities)
        return
    classes = model.classes
    winners = probabilities.argmax(axis=1).tolist()
    table = probabilities.tolist()
    stamp = clock()
    result = batch.result
    result.rows = matrix
    result.labels = labels = [classes[i] for i in winners]
    result.confidences = probabilities.max(axis=1).tolist()
    version = model.version
    start = 0
    for record, request in batch.valid:
        latency = max(0.0, stamp - request.sent_at)
        result.latencies.append(latency)
        value = scored_answer(
            request,
            first=start,
            classes=classes,
            labels=labels,
            probabilities=table,
            model_version=version,
            latency_seconds=latency,
            scored_at=stamp,
        )
        batch.answer(record, request, value)
        if isinstance(request, PredictionRequest):
            key = request.request_id.encode()
            result.singles.append(Scored(key, record.partition, request.features, labels[start]))
            start += 1
        else:
            start += instances_in(request)
    if result.outcomes is not None:
        _record_outcomes(result, batch.valid)


def _record_outcomes(result: BatchResult, valid: list[tuple[Incoming, Request]]) -> None:
    """Each scored request's slice of the batch's labels and confidences (rollouts only)."""
    assert result.outcomes is not None
    labels, confidences = result.labels, result.confidences
    start = 0
    for record, request in valid:
        end = start + instances_in(request)
        key = request.request_id.encode(), record.partition
        result.outcomes[key] = Outcome(labels[start:end], confidences[start:end])
        start = end


def _compare_only(
    model: LiveModel, batch: Intake, matrix: np.ndarray, probabilities: np.ndarray
) -> None:
    """The pass of a version whose answers nobody gets: labels and confidences, nothing sent."""
    result = batch.result
    result.rows = matrix
    classes = model.classes
    result.labels = [classes[i] for i in probabilities.argmax(axis=1).tolist()]
    result.confidences = probabilities.max(axis=1).tolist()
    _record_outcomes(result, batch.valid)
