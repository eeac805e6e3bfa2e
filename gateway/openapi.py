"""``/openapi.json`` that documents the live model: its feature names and its classes.

Feature vectors are plain mappings in code (any data set works), so the generated schema would
only say "an object of numbers". The gateway knows better once a model is live, and says so:
every feature is a required number, no other key is allowed, a feedback label is one of the
classes, a batch holds at most ``gateway.max_batch_instances`` rows. Clients generated from the
schema, and property-based tests, then send what the gateway accepts.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gateway.input_checks import InputChecks

__all__ = ["live_openapi"]


def _features(names: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": "number"} for name in names},
        "required": list(names),
        "additionalProperties": False,
    }


def _patch(schema: dict[str, Any], checks: InputChecks, max_batch: int) -> dict[str, Any]:
    components = schema.get("components", {}).get("schemas", {})
    names = checks.expected_features()
    if names:
        if "PredictBody" in components:
            components["PredictBody"]["properties"]["features"] = _features(names)
        if "BatchPredictBody" in components:
            instances = components["BatchPredictBody"]["properties"]["instances"]
            instances["items"] = _features(names)
    if "BatchPredictBody" in components:
        instances = components["BatchPredictBody"]["properties"]["instances"]
        instances["maxItems"] = max_batch
    live = checks.history.live
    if live is not None and "FeedbackBody" in components:
        label = components["FeedbackBody"]["properties"]["label"]
        label["enum"] = list(live.class_labels)
    return schema


def live_openapi(
    app: FastAPI, checks: InputChecks, *, max_batch: int
) -> Callable[[], dict[str, Any]]:
    """A replacement for ``app.openapi``: the generated schema, patched with the live model."""
    base: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not base:
            base.update(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    summary=app.summary,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return _patch(copy.deepcopy(base), checks, max_batch)

    return openapi
