"""The Open Inference Protocol (KServe v2 / Triton / MLServer REST) from Python, against the
gateway's ``/v2`` routes: :class:`InferenceClient` and its async twin.

    async with AsyncInferenceClient("http://127.0.0.1:8000", model="iris") as client:
        result = await client.infer_all(matrix, batch_size=1000, concurrency=4)
        result.labels, result.probabilities        # (n,) labels, (n, n_classes) array

Rows go as one ``[n, n_features]`` FP64 tensor per call (values in the model's feature order,
which :meth:`InferenceClient.metadata` lists; mapping rows are put in that order for you), and
come back as arrays. Any OIP server that answers ``label`` and ``probabilities`` outputs can be
called the same way; a refusal raises :class:`~producers.errors.GatewayError` with the
server's ``{"error": "..."}`` message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import orjson

from producers.batching import Rows, chunked, map_bounded
from producers.errors import GatewayError, check
from producers.results import InferResult, OipModel
from producers.transport import DEFAULT_URL, AsyncTransport, Call, SyncTransport

__all__ = ["AsyncInferenceClient", "InferenceClient", "as_matrix"]

MATRIX_INPUT = "input-0"
"""The one input's name (the gateway takes any name that is not a feature's)."""
_BOOLEAN = {200: True, 400: False}
"""The protocol's health answers: 200 is true, 400 false, both without a body."""


def _model_path(model: str, version: str | None) -> str:
    path = f"/v2/models/{quote(model, safe='')}"
    return path if version is None else f"{path}/versions/{quote(version, safe='')}"


def _listed(rows: Rows) -> np.ndarray | Sequence[Any]:
    """``rows`` as something that can be read twice (an array, or a sequence)."""
    if isinstance(rows, np.ndarray | Sequence) and not isinstance(rows, str | bytes):
        return rows
    return list(rows)


def _named(rows: np.ndarray | Sequence[Any]) -> bool:
    """Whether the rows are mappings (their values must be put in the model's order)."""
    return not isinstance(rows, np.ndarray) and len(rows) > 0 and isinstance(rows[0], Mapping)


def as_matrix(rows: Rows, names: Sequence[str] | None = None) -> np.ndarray:
    """``rows`` as a 2-D float64 array; mapping rows are put in ``names`` order."""
    listed = _listed(rows)
    if _named(listed):
        if names is None:
            raise ValueError("mapping rows need the model's feature names (see metadata())")
        listed = [[row[name] for name in names] for row in listed]
    matrix = np.asarray(listed, dtype=np.float64)
    return matrix.reshape(1, -1) if matrix.ndim == 1 else matrix.reshape(len(matrix), -1)


def _infer(path: str, matrix: np.ndarray, request_id: str | None) -> Call:
    tensor = {
        "name": MATRIX_INPUT,
        "shape": list(matrix.shape),
        "datatype": "FP64",
        "data": np.ascontiguousarray(matrix).ravel(),
    }
    body: dict[str, Any] = {"inputs": [tensor]}
    if request_id is not None:
        body["id"] = request_id
    return Call("POST", f"{path}/infer", body)


def _result(body: dict[str, Any]) -> InferResult:
    outputs = {output["name"]: output for output in body["outputs"]}
    label, probabilities = outputs.get("label"), outputs.get("probabilities")
    if label is None or probabilities is None:
        raise GatewayError(200, f"the answer lacks the label or probabilities output: {body}")
    classes = orjson.loads(probabilities.get("parameters", {}).get("classes", "[]"))
    return InferResult(
        model_name=body["model_name"],
        model_version=str(body.get("model_version", "")),
        id=body.get("id"),
        labels=[str(value) for value in label["data"]],
        probabilities=np.asarray(probabilities["data"], dtype=np.float64).reshape(
            probabilities["shape"]
        ),
        classes=[str(name) for name in classes],
    )


def _metadata(body: dict[str, Any]) -> OipModel:
    parameters = body.get("parameters", {})
    return OipModel(
        name=body["name"],
        versions=body.get("versions", []),
        platform=body.get("platform", ""),
        feature_names=orjson.loads(parameters.get("feature_names", "[]")),
        class_labels=orjson.loads(parameters.get("class_labels", "[]")),
    )


def _boolean(response: httpx.Response) -> bool:
    if response.status_code in _BOOLEAN:
        return _BOOLEAN[response.status_code]
    check(response)  # raises with the server's message
    return True  # any other 2xx


def _call_id(prefix: str | None, index: int) -> str | None:
    return None if prefix is None else f"{prefix}-{index}"


class InferenceClient(SyncTransport):
    """One model's Open Inference Protocol endpoints (``model``: its name, e.g. ``"iris"``)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        model: str,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, timeout=timeout, http=http)
        self.model = model
        self._names: list[str] | None = None

    def ready(self) -> bool:
        """The server is ready (Kafka reachable, a model live)."""
        return _boolean(self.respond(Call("GET", "/v2/health/ready")))

    def model_ready(self, version: str | None = None) -> bool:
        return _boolean(self.respond(Call("GET", f"{_model_path(self.model, version)}/ready")))

    def metadata(self, version: str | None = None) -> OipModel:
        """The served version, its inputs' feature order and its classes."""
        return _metadata(self.send(Call("GET", _model_path(self.model, version))))

    def infer(
        self, rows: Rows, *, request_id: str | None = None, version: str | None = None
    ) -> InferResult:
        """Labels and probabilities of ``rows`` in one call (``request_id``: the protocol's
        ``id``; the same id with the same rows is answered once)."""
        listed = _listed(rows)
        matrix = as_matrix(listed, self._feature_names() if _named(listed) else None)
        return _result(self.send(_infer(_model_path(self.model, version), matrix, request_id)))

    def infer_all(
        self,
        rows: Rows,
        *,
        batch_size: int = 1000,
        version: str | None = None,
        id_prefix: str | None = None,
    ) -> InferResult:
        """All of ``rows``, in calls of ``batch_size`` rows, as one result in row order."""
        parts = [
            self.infer(chunk, version=version, request_id=_call_id(id_prefix, index))
            for index, chunk in enumerate(chunked(rows, batch_size))
        ]
        return InferResult.concat(parts)

    def _feature_names(self) -> list[str]:
        if self._names is None:
            self._names = self.metadata().feature_names
        return self._names


class AsyncInferenceClient(AsyncTransport):
    """:class:`InferenceClient` for asyncio; ``infer_all`` runs ``concurrency`` calls at once."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        model: str,
        timeout: float = 30.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, timeout=timeout, http=http)
        self.model = model
        self._names: list[str] | None = None
        self._naming = asyncio.Lock()

    async def ready(self) -> bool:
        return _boolean(await self.respond(Call("GET", "/v2/health/ready")))

    async def model_ready(self, version: str | None = None) -> bool:
        call = Call("GET", f"{_model_path(self.model, version)}/ready")
        return _boolean(await self.respond(call))

    async def metadata(self, version: str | None = None) -> OipModel:
        return _metadata(await self.send(Call("GET", _model_path(self.model, version))))

    async def infer(
        self, rows: Rows, *, request_id: str | None = None, version: str | None = None
    ) -> InferResult:
        listed = _listed(rows)
        matrix = as_matrix(listed, await self._feature_names() if _named(listed) else None)
        call = _infer(_model_path(self.model, version), matrix, request_id)
        return _result(await self.send(call))

    async def infer_all(
        self,
        rows: Rows,
        *,
        batch_size: int = 1000,
        concurrency: int = 4,
        version: str | None = None,
        id_prefix: str | None = None,
    ) -> InferResult:
        """:meth:`InferenceClient.infer_all` with up to ``concurrency`` calls in flight."""

        async def one(numbered: tuple[int, Any]) -> InferResult:
            index, chunk = numbered
            return await self.infer(chunk, version=version, request_id=_call_id(id_prefix, index))

        parts = await map_bounded(one, enumerate(chunked(rows, batch_size)), concurrency)
        return InferResult.concat(parts)

    async def _feature_names(self) -> list[str]:
        if self._names is None:
            async with self._naming:  # concurrent calls read the metadata once
                if self._names is None:
                    self._names = (await self.metadata()).feature_names
        return self._names
