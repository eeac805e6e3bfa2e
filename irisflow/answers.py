"""Answers on the predictions topic, encoded in the one place that writes them.

Each function returns the bytes of a :class:`~irisflow.schemas.Prediction` or a
:class:`~irisflow.schemas.BatchPrediction`, built as a plain dict and encoded with orjson:
building a pydantic object per row would cost more than the prediction itself, and scoring
answers tens of thousands of requests a second. The dicts carry exactly the models' fields in
one order, so every producer writes the same bytes for the same answer; the tests decode
every body with the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from irisflow.schemas import (
    SCHEMA_VERSION,
    BatchPredictionRequest,
    ErrorCode,
    MatrixPredictionRequest,
    PredictionRequest,
    clip,
)

__all__ = ["error_answer", "instances_in", "scored_answer"]


def instances_in(
    request: PredictionRequest | BatchPredictionRequest | MatrixPredictionRequest,
) -> int:
    """How many rows a request puts into a micro-batch: one, or one per instance."""
    if isinstance(request, PredictionRequest):
        return 1
    if isinstance(request, MatrixPredictionRequest):
        return len(request.rows)
    return len(request.instances)


def error_answer(
    request_id: str,
    error: str,
    code: ErrorCode,
    *,
    model_version: int | None,
    latency_seconds: float,
    scored_at: float,
    reply_to: str | None = None,
    input_digest: str | None = None,
) -> bytes:
    """A request answered with why it got no label: valid as every answer shape (a Prediction,
    a BatchPrediction, a MatrixPrediction), so it answers any request."""
    return orjson.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "request_id": request_id,
            "model_version": model_version,
            "latency_seconds": latency_seconds,
            "scored_at": scored_at,
            "error": clip(error),
            "error_code": code,
            "reply_to": reply_to,
            "input_digest": input_digest,
        }
    )


def scored_answer(
    request: PredictionRequest | BatchPredictionRequest | MatrixPredictionRequest,
    *,
    first: int,
    classes: Sequence[str],
    labels: Sequence[str],
    probabilities: Sequence[Sequence[float]],
    model_version: int,
    latency_seconds: float,
    scored_at: float,
) -> bytes:
    """The answer to a scored request: a Prediction, or a BatchPrediction for a batch request.

    ``labels`` and ``probabilities`` (each row in ``classes`` order) hold a whole micro-batch;
    the request's rows start at index ``first``: one row for a single request, one per
    instance for a batch request. A matrix request gets a MatrixPrediction: its slice of
    ``labels`` and ``probabilities`` as they are (no dict per row).
    """
    body: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "request_id": request.request_id,
        "model_version": model_version,
        "latency_seconds": latency_seconds,
        "scored_at": scored_at,
        "error": None,
        "error_code": None,
        "reply_to": request.reply_to,
        "input_digest": request.input_digest,
    }
    if isinstance(request, PredictionRequest):
        body["label"] = labels[first]
        body["probabilities"] = dict(zip(classes, probabilities[first], strict=True))
    elif isinstance(request, MatrixPredictionRequest):
        last = first + len(request.rows)
        body["classes"] = list(classes)
        body["labels"] = labels[first:last]
        body["probabilities"] = probabilities[first:last]
    else:
        body["predictions"] = [
            {"label": labels[i], "probabilities": dict(zip(classes, probabilities[i], strict=True))}
            for i in range(first, first + len(request.instances))
        ]
    return orjson.dumps(body)
