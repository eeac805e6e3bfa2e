"""Batches as matrices: parsed straight from the HTTP body, answered column-wise (pure, no I/O).

A 1,000-instance ``/v1/predict/batch`` body used to become 1,000 pydantic dicts in FastAPI, 1,000
more in the wire message, and an answer of 1,000 pydantic objects read back, re-validated and
re-encoded on the way out: tens of milliseconds of one core per call, far more than scoring the
rows. Here a plain body (JSON whose every instance has exactly the live model's names and finite
numbers within its domain) is parsed by orjson and checked in one vectorized pass into a float64
matrix; anything else is left to the declared pydantic route, so every refusal keeps the exact
422 it always had. The worker answers a matrix column-wise (:class:`~irisflow.schemas.
MatrixPrediction`), which becomes a :class:`BatchAnswer` here: the protocol-neutral answer the
answer book keeps, rendered as ``/v1`` JSON by :func:`v1_json` and as Open Inference Protocol
tensors by :mod:`gateway.oip`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict

from gateway.bodies import InstancePublic, Latency, WorkerShare
from irisflow.features import FeatureSchema
from irisflow.schemas import REQUEST_ID_PATTERN

__all__ = ["Batch", "BatchAnswer", "instances_matrix", "parse_instances", "v1_json"]

_VALID_ID = re.compile(REQUEST_ID_PATTERN)
_NUMBERS = frozenset({float, int})
_DICT = {dict}
_BODY_KEYS = frozenset({"instances", "request_id"})


@dataclass(frozen=True)
class Batch:
    """Instances to score: ``matrix`` has one row each, columns in ``names`` order (the live
    model's), every value finite and within the model's domain."""

    names: list[str]
    matrix: np.ndarray
    request_id: str | None = None

    def __len__(self) -> int:
        return len(self.matrix)


class BatchAnswer(BaseModel):
    """A batch's answer, column-wise: ``labels[i]`` and ``probabilities[i]`` (in ``classes``
    order) answer instance ``i``. Kept by the answer book as JSON bytes (pydantic's core writes
    and reads the lists without a Python object per row)."""

    model_config = ConfigDict(protected_namespaces=())

    request_id: str
    model_version: int
    classes: list[str]
    labels: list[str]
    probabilities: list[list[float]]
    latency_seconds: Latency
    worker_seconds: WorkerShare = None

    @classmethod
    def of_instances(
        cls, request_id: str, model_version: int, rows: Sequence[InstancePublic], latency: float
    ) -> BatchAnswer:
        """From answers stored one dict per instance (the audit trail)."""
        classes = list(rows[0].probabilities) if rows else []
        return cls(
            request_id=request_id,
            model_version=model_version,
            classes=classes,
            labels=[row.label for row in rows],
            probabilities=[[row.probabilities[c] for c in classes] for row in rows],
            latency_seconds=latency,
        )


def _getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:
        return lambda instance: (instance[names[0]],)
    return itemgetter(*names)


def instances_matrix(instances: Sequence[dict[str, float]], names: list[str]) -> np.ndarray:
    """Validated instances (each with exactly ``names``) as a matrix in ``names`` order."""
    rows = list(map(_getter(names), instances))
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(names))


def parse_instances(raw: bytes, schema: FeatureSchema, *, limit: int) -> Batch | None:
    """A ``/v1/predict/batch`` body as a :class:`Batch`, or ``None`` if it is anything but
    plain: not JSON orjson reads, other keys, more than ``limit`` instances, an instance whose
    names are not exactly the model's, a value that is not a number (``true``, ``"5.1"``), not
    finite or outside the model's domain, a request id outside its pattern. ``None`` sends the
    body to the declared route, whose pydantic model and checks answer it exactly as before
    (with the field named, or accepted with pydantic's coercions)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(body) is not dict or not body.keys() <= _BODY_KEYS:
        return None
    instances, request_id = body.get("instances"), body.get("request_id")
    if type(instances) is not list or not 0 < len(instances) <= limit or not schema.names:
        return None
    if request_id is not None and (
        type(request_id) is not str or not _VALID_ID.fullmatch(request_id)
    ):
        return None
    names = schema.names
    # Every instance a dict holding each name (the getter finds them) and nothing else (the
    # sizes add up): checked with C-level maps, not a Python loop over the instances.
    if set(map(type, instances)) != _DICT or sum(map(len, instances)) != len(instances) * len(
        names
    ):
        return None
    try:
        rows = list(map(_getter(names), instances))
    except KeyError:
        return None
    if not set(map(type, chain.from_iterable(rows))) <= _NUMBERS:
        return None
    matrix = np.array(rows, dtype=np.float64).reshape(len(rows), len(names))
    if not np.isfinite(matrix).all() or schema.out_of_domain(matrix).any():
        return None
    return Batch(list(names), matrix, request_id)


def v1_json(answer: BatchAnswer) -> bytes:
    """The ``/v1/predict/batch`` answer (:class:`~gateway.bodies.BatchPredictionPublic`'s
    fields in its order), written by orjson from the columns."""
    classes = answer.classes
    predictions = [
        {"label": label, "probabilities": dict(zip(classes, row, strict=True))}
        for label, row in zip(answer.labels, answer.probabilities, strict=True)
    ]
    return orjson.dumps(
        {
            "request_id": answer.request_id,
            "model_version": answer.model_version,
            "predictions": predictions,
            "latency_seconds": answer.latency_seconds,
            "worker_seconds": answer.worker_seconds,
        }
    )
