"""Factories for real (small, fast) model versions, independent of the trainer."""

from __future__ import annotations

import io
import zipfile
from functools import cache
from typing import Any

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
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


def fitted_pipeline(kind: str = "logistic_regression", *, shuffled: bool = False) -> Pipeline:
    """A model of Iris; ``shuffled``: fitted on the labels in a random order (a bad model that
    loads, passes every contract check and answers confidently, mostly wrong)."""
    x, y = iris_xy()
    if shuffled:
        y = np.random.default_rng(7).permutation(y)
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
    pipeline: Pipeline | None = None,
) -> ModelUpdate:
    """A publishable version; pass ``artifact``/``sha256`` to forge a broken one, ``pipeline``
    to publish a model fitted elsewhere (e.g. on shuffled labels)."""
    x, _ = iris_xy()
    pipeline = pipeline if pipeline is not None else fitted_pipeline(kind)
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


@cache
def zip_bomb(unpacked_bytes: int = 300 * 1024 * 1024) -> bytes:
    """A small zip (about 1/1000 of ``unpacked_bytes``) that unpacks to ``unpacked_bytes``."""
    buffer = io.BytesIO()
    chunk = bytes(1024 * 1024)
    with (
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("schema.json", "w", force_zip64=True) as member,
    ):
        for _ in range(unpacked_bytes // len(chunk)):
            member.write(chunk)
    return buffer.getvalue()


def forged_update(version: int, how: str) -> ModelUpdate:
    """A version every reader must refuse: ``checksum``, ``zip_bomb``, ``wrong_features``
    (a classifier fit on 3 of the 4 features), ``regressor`` (no predict_proba) or
    ``wrong_classes``."""
    good = model_update(version)
    if how == "checksum":
        return model_update(version, sha256="0" * 64)
    if how == "zip_bomb":
        return model_update(version, artifact=zip_bomb())
    x, y = iris_xy()
    if how == "wrong_features":
        model: Any = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(
            x[:, :3], y
        )
    elif how == "regressor":
        model = LinearRegression().fit(x, (y == "setosa").astype(float))
    elif how == "wrong_classes":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(
            x, np.where(y == "setosa", "a", "b")
        )
    else:
        raise ValueError(how)
    data = serialize_model(model)
    return good.model_copy(update={"artifact": data, "sha256": sha256_hex(data)})
