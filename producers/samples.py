"""Rows to send: the configured data set, read the way a client would read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris

from irisflow.errors import DataError
from irisflow.settings import Settings

__all__ = ["Samples", "load_samples"]

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


@dataclass(frozen=True)
class Samples:
    feature_names: tuple[str, ...]
    rows: np.ndarray
    labels: np.ndarray

    def features(self, index: int) -> dict[str, float]:
        row = self.rows[index % len(self.rows)]
        return {name: float(value) for name, value in zip(self.feature_names, row, strict=True)}

    def label(self, index: int) -> str:
        return str(self.labels[index % len(self.labels)])


def load_samples(settings: Settings) -> Samples:
    data = settings.data
    if data.source == "iris":
        iris = load_iris()
        names = np.asarray(iris.target_names)[iris.target]
        return Samples(IRIS_FEATURES, np.asarray(iris.data, dtype=float), names)
    path = Path(data.source)
    if not path.is_absolute():
        path = settings.params_path.parent / path
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError as exc:
        raise DataError(
            f"data file {path} not found: fix data.source in {settings.params_path}"
        ) from exc
    columns = list(data.feature_columns) or [c for c in frame.columns if c != data.label_column]
    missing = [c for c in [*columns, data.label_column] if c not in frame.columns]
    if missing:
        raise DataError(f"{path} has no column(s) {', '.join(missing)}")
    return Samples(
        tuple(columns),
        frame[columns].to_numpy(dtype=float),
        frame[data.label_column].astype(str).to_numpy(),
    )
