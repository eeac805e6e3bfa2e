"""HTTP bodies. The wire schemas live in :mod:`irisflow.schemas`; these are what clients see."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from irisflow.schemas import FeatureVector

__all__ = ["ErrorBody", "ErrorDetail", "FieldError", "PredictBody", "PredictionPublic"]


class PredictBody(BaseModel):
    """One instance to score. Send your own ``request_id`` to make retries idempotent."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "features": {
                        "sepal_length": 5.1,
                        "sepal_width": 3.5,
                        "petal_length": 1.4,
                        "petal_width": 0.2,
                    }
                }
            ]
        },
    )

    features: FeatureVector
    request_id: str | None = Field(default=None, min_length=1, max_length=128)


class PredictionPublic(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    request_id: str
    label: str
    probabilities: dict[str, float]
    model_version: int
    latency_seconds: float = Field(description="From the gateway's send to the worker's answer")


class FieldError(BaseModel):
    field: str
    message: str


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str
    fields: list[FieldError] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """Every error the gateway returns has this shape."""

    error: ErrorDetail
