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

from irisflow.schemas import SCHEMA_VERSION, AnswerError, clip

__all__ = ["batch_prediction", "error_answer", "prediction"]


def error_answer(
    request_id: str,
    error: str,
    code: AnswerError,
    *,
    model_version: int | None,
    latency_seconds: float,
    scored_at: float,
    reply_to: str | None = None,
    input_digest: str | None = None,
) -> bytes:
    """A request answered with why it got no label: valid as a Prediction and a BatchPrediction."""
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


def _scored(
    request_id: str,
    model_version: int,
    latency_seconds: float,
    scored_at: float,
    reply_to: str | None,
    input_digest: str | None,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "request_id": request_id,
        "model_version": model_version,
        "latency_seconds": latency_seconds,
        "scored_at": scored_at,
        "error": None,
        "error_code": None,
        "reply_to": reply_to,
        "input_digest": input_digest,
    }


def prediction(
    request_id: str,
    *,
    label: str,
    classes: Sequence[str],
    probabilities: Sequence[float],
    model_version: int,
    latency_seconds: float,
    scored_at: float,
    reply_to: str | None,
    input_digest: str | None,
) -> bytes:
    """A single request's label and its probability of each class (in ``classes`` order)."""
    body = _scored(request_id, model_version, latency_seconds, scored_at, reply_to, input_digest)
    body["label"] = label
    body["probabilities"] = dict(zip(classes, probabilities, strict=True))
    return orjson.dumps(body)


def batch_prediction(
    request_id: str,
    *,
    classes: Sequence[str],
    labels: Sequence[str],
    probabilities: Sequence[Sequence[float]],
    model_version: int,
    latency_seconds: float,
    scored_at: float,
    reply_to: str | None,
    input_digest: str | None,
) -> bytes:
    """A batch request's answers: one label and probability row per instance, in order
    (each an :class:`~irisflow.schemas.InstancePrediction`)."""
    body = _scored(request_id, model_version, latency_seconds, scored_at, reply_to, input_digest)
    body["predictions"] = [
        {"label": label, "probabilities": dict(zip(classes, row, strict=True))}
        for label, row in zip(labels, probabilities, strict=True)
    ]
    return orjson.dumps(body)
