"""irisflow's own HTTP API (``/v1``) from Python: :class:`IrisflowClient` and its async twin.

    with IrisflowClient("http://127.0.0.1:8000") as client:
        result = client.predict({"sepal_length": 5.1, "sepal_width": 3.5,
                                 "petal_length": 1.4, "petal_width": 0.2})
        client.feedback(result.request_id, "setosa")

Every method is one call, except :meth:`IrisflowClient.predict_all`, which cuts any number of
rows into batches of ``batch_size`` (the async one sends ``concurrency`` of them at once). Rows
are mappings of feature → value, or values in the live model's feature order (a 2-D numpy array,
lists), named with the feature names of the live model, read once from ``GET /v1/models``. A
refusal raises :class:`~producers.errors.GatewayError` with the gateway's message and fields.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from producers.batching import Rows, chunked, map_bounded, row_dicts
from producers.errors import GatewayError
from producers.results import (
    Accepted,
    BatchResult,
    FeedbackSent,
    ModelCatalog,
    PredictionRecord,
    PredictResult,
    RowResult,
)
from producers.transport import DEFAULT_URL, AsyncTransport, Call, SyncTransport

__all__ = ["AsyncIrisflowClient", "IrisflowClient"]

DEFAULT_BATCH = 1000
"""Rows per call of ``predict_all`` (the gateway's default ``max_batch_instances``)."""


def _single(features: Mapping[str, float], request_id: str | None, wait: bool) -> Call:
    body: dict[str, Any] = {"features": dict(features)}
    if request_id is not None:
        body["request_id"] = request_id
    return Call("POST", "/v1/predict", body, {} if wait else {"wait": "false"})


def _batch(instances: list[dict[str, float]], request_id: str | None, wait: bool) -> Call:
    body: dict[str, Any] = {"instances": instances}
    if request_id is not None:
        body["request_id"] = request_id
    return Call("POST", "/v1/predict/batch", body, {} if wait else {"wait": "false"})


def _needs_names(rows: Any) -> bool:
    return isinstance(rows, np.ndarray) or any(not isinstance(r, Mapping) for r in rows)


def _call_id(prefix: str | None, index: int) -> str | None:
    return None if prefix is None else f"{prefix}-{index}"


def _live_names(catalog: ModelCatalog) -> list[str]:
    live = catalog.live()
    if live is None:
        raise GatewayError(503, "no model is live, so rows without feature names cannot be named")
    return list(live.feature_names)


_MODELS = Call("GET", "/v1/models")


def _record(request_id: str) -> Call:
    return Call("GET", f"/v1/predictions/{quote(request_id, safe='')}")


def _feedback(request_id: str, label: str) -> Call:
    return Call("POST", "/v1/feedback", {"request_id": request_id, "label": label})


class IrisflowClient(SyncTransport):
    """The ``/v1`` API over one pooled connection; use it as a context manager, or ``close()``.

    ``feature_names``: the order of the values in rows that are not mappings; by default the
    live model's, read once when such rows first need them. ``http``: an ``httpx.Client`` of
    your own (its base URL is used; it is left open)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(base_url, timeout=timeout, http=http)
        self.feature_names = list(feature_names) if feature_names is not None else None

    def predict(
        self, features: Mapping[str, float], *, request_id: str | None = None
    ) -> PredictResult:
        """Score one instance and wait for the answer (``request_id`` makes retries safe)."""
        return PredictResult.model_validate(self.send(_single(features, request_id, True)))

    def submit(self, features: Mapping[str, float], *, request_id: str | None = None) -> Accepted:
        """Publish one instance and return at once; read it later with :meth:`prediction`."""
        return Accepted.model_validate(self.send(_single(features, request_id, False)))

    def predict_batch(self, instances: Rows, *, request_id: str | None = None) -> BatchResult:
        """Score instances in one call (at most the gateway's ``max_batch_instances``)."""
        rows = row_dicts(instances, self._names(instances))
        return BatchResult.model_validate(self.send(_batch(rows, request_id, True)))

    def predict_all(
        self, rows: Rows, *, batch_size: int = DEFAULT_BATCH, id_prefix: str | None = None
    ) -> list[RowResult]:
        """Every row's prediction, in order, in calls of ``batch_size`` rows; with
        ``id_prefix`` the calls are ``<prefix>-0``, ``<prefix>-1``… so a rerun is answered
        from the gateway's memory instead of scored again."""
        results: list[RowResult] = []
        for index, chunk in enumerate(chunked(rows, batch_size)):
            batch = self.predict_batch(chunk, request_id=_call_id(id_prefix, index))
            results += batch.rows()
        return results

    def feedback(self, request_id: str, label: str) -> FeedbackSent:
        """The true label of an earlier prediction (for live accuracy and retraining)."""
        return FeedbackSent.model_validate(self.send(_feedback(request_id, label)))

    def prediction(self, request_id: str) -> PredictionRecord:
        """A request as the audit trail has it (pending, answered, failed; feedback)."""
        return PredictionRecord.model_validate(self.send(_record(request_id)))

    def models(self) -> ModelCatalog:
        return ModelCatalog.model_validate(self.send(_MODELS))

    def _names(self, rows: Any) -> Sequence[str]:
        if self.feature_names is None and _needs_names(rows):
            self.feature_names = _live_names(self.models())
        return self.feature_names or ()


class AsyncIrisflowClient(AsyncTransport):
    """:class:`IrisflowClient` for asyncio; ``predict_all`` runs ``concurrency`` calls at once."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 30.0,
        http: httpx.AsyncClient | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(base_url, timeout=timeout, http=http)
        self.feature_names = list(feature_names) if feature_names is not None else None
        self._naming = asyncio.Lock()

    async def predict(
        self, features: Mapping[str, float], *, request_id: str | None = None
    ) -> PredictResult:
        return PredictResult.model_validate(await self.send(_single(features, request_id, True)))

    async def submit(
        self, features: Mapping[str, float], *, request_id: str | None = None
    ) -> Accepted:
        return Accepted.model_validate(await self.send(_single(features, request_id, False)))

    async def predict_batch(self, instances: Rows, *, request_id: str | None = None) -> BatchResult:
        rows = row_dicts(instances, await self._names(instances))
        return BatchResult.model_validate(await self.send(_batch(rows, request_id, True)))

    async def predict_all(
        self,
        rows: Rows,
        *,
        batch_size: int = DEFAULT_BATCH,
        concurrency: int = 4,
        id_prefix: str | None = None,
    ) -> list[RowResult]:
        """:meth:`IrisflowClient.predict_all` with up to ``concurrency`` calls in flight."""

        async def one(numbered: tuple[int, Any]) -> list[RowResult]:
            index, chunk = numbered
            batch = await self.predict_batch(chunk, request_id=_call_id(id_prefix, index))
            return batch.rows()

        parts = await map_bounded(one, enumerate(chunked(rows, batch_size)), concurrency)
        return [row for part in parts for row in part]

    async def feedback(self, request_id: str, label: str) -> FeedbackSent:
        return FeedbackSent.model_validate(await self.send(_feedback(request_id, label)))

    async def prediction(self, request_id: str) -> PredictionRecord:
        return PredictionRecord.model_validate(await self.send(_record(request_id)))

    async def models(self) -> ModelCatalog:
        return ModelCatalog.model_validate(await self.send(_MODELS))

    async def _names(self, rows: Any) -> Sequence[str]:
        if self.feature_names is None and _needs_names(rows):
            async with self._naming:  # concurrent batches read the model once
                if self.feature_names is None:
                    self.feature_names = _live_names(await self.models())
        return self.feature_names or ()
