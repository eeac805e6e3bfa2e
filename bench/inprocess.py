"""The in-process baseline for ``bench/http_latency.py``: the design irisflow replaces.

One FastAPI process that loads the same skops artifact (checksum verified, types allow-listed,
as irisflow does) and calls ``predict_proba`` once per request, in FastAPI's thread pool: what a
hand-rolled serving app looks like. Same request body and answer shape as ``/v1/predict``, so
the load generator sends identical traffic to both.

    .venv/bin/python bench/inprocess.py --artifact model.skops --sha256 HEX --port 8100
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from irisflow.registry import deserialize_model  # noqa: E402

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: dict[str, float]
    request_id: str | None = None


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: list[dict[str, float]]
    request_id: str | None = None


def build_app(model: Any) -> FastAPI:
    """An app whose only route scores one instance per request."""
    app = FastAPI(title="in-process baseline")
    classes = [str(c) for c in model.classes_]

    @app.post("/v1/predict")
    def predict(body: Body) -> dict[str, Any]:
        started = time.perf_counter()
        row = np.asarray([[body.features[name] for name in FEATURES]], dtype=np.float64)
        probabilities = model.predict_proba(row)[0]
        best = int(np.argmax(probabilities))
        return {
            "request_id": body.request_id or uuid.uuid4().hex,
            "prediction": classes[best],
            "probabilities": dict(zip(classes, probabilities.tolist(), strict=True)),
            "model_version": 1,
            "latency_seconds": time.perf_counter() - started,
        }

    @app.post("/v1/predict/batch")
    def predict_batch(body: BatchBody) -> dict[str, Any]:
        """Many instances, one ``predict_proba`` call (bench/http_batch.py's baseline)."""
        started = time.perf_counter()
        rows = np.asarray([[i[name] for name in FEATURES] for i in body.instances], np.float64)
        probabilities = model.predict_proba(rows)
        winners = probabilities.argmax(axis=1).tolist()
        return {
            "request_id": body.request_id or uuid.uuid4().hex,
            "model_version": 1,
            "predictions": [
                {"label": classes[best], "probabilities": dict(zip(classes, row, strict=True))}
                for best, row in zip(winners, probabilities.tolist(), strict=True)
            ],
            "latency_seconds": time.perf_counter() - started,
        }

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", type=Path, required=True, help="a skops file")
    parser.add_argument("--sha256", required=True, help="the artifact's checksum")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    model = deserialize_model(args.artifact.read_bytes(), sha256=args.sha256)
    uvicorn.run(build_app(model), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
