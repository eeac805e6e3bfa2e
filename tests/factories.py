"""Factories for real (small, fast) model versions, independent of the trainer."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from irisflow.registry import serialize_model, sha256_hex
from irisflow.schemas import FeatureStats, ModelUpdate

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
VIRGINICA = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.8, "petal_width": 2.2}


@cache
def iris_xy() -> tuple[np.ndarray, np.ndarray]:
    iris = load_iris()
    return np.asarray(iris.data), np.asarray(iris.target_names)[iris.target]


def fitted_pipeline(kind: str = "logistic_regression") -> Pipeline:
    x, y = iris_xy()
    estimator: Any = (
        LogisticRegression(max_iter=500) if kind == "logistic_regression" else GaussianNB()
    )
    return make_pipeline(StandardScaler(), estimator).fit(x, y)


def model_update(
    version: int = 1,
    *,
    kind: str = "logistic_regression",
    model_name: str = "iris",
    artifact: bytes | None = None,
    sha256: str | None = None,
) -> ModelUpdate:
    """A publishable version; pass ``artifact``/``sha256`` to forge a broken one."""
    x, _ = iris_xy()
    pipeline = fitted_pipeline(kind)
    data = artifact if artifact is not None else serialize_model(pipeline)
    stats = {
        name: FeatureStats(
            mean=float(col.mean()), std=float(col.std()), min=float(col.min()), max=float(col.max())
        )
        for name, col in zip(IRIS_FEATURES, x.T, strict=True)
    }
    return ModelUpdate(
        model_name=model_name,
        version=version,
        algorithm=kind,
        feature_names=IRIS_FEATURES,
        class_labels=[str(c) for c in pipeline.classes_],
        reference_stats=stats,
        sha256=sha256 or sha256_hex(data),
        artifact=data,
        trigger="test",
    )
