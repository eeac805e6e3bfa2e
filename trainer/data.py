"""Loading a tabular data set, with one clear error for each way it can be unusable.

Pure: no Kafka, no web framework. Iris comes from the copy that ships inside scikit-learn, so
nothing is downloaded; any other source is a CSV path (relative to the params file's folder).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris

from irisflow.errors import DataError
from irisflow.settings import DataSettings

__all__ = ["IRIS_FEATURES", "Dataset", "combine", "load_dataset"]

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


@dataclass(frozen=True)
class Dataset:
    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_labels: tuple[str, ...]
    fingerprint: str
    source: str


def _fingerprint(x: np.ndarray, y: np.ndarray, names: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    digest.update("\x1f".join(names).encode())
    digest.update(np.ascontiguousarray(x, dtype=np.float64).tobytes())
    digest.update("\x1f".join(map(str, y)).encode())
    return digest.hexdigest()


def _dataset(x: np.ndarray, y: np.ndarray, names: tuple[str, ...], source: str) -> Dataset:
    labels = tuple(sorted({str(v) for v in y}))
    if len(labels) < 2:
        raise DataError(
            f"{source}: the label column has {len(labels)} class ({', '.join(labels) or 'none'}); "
            "a classifier needs at least two"
        )
    return Dataset(x, y, names, labels, _fingerprint(x, y, names), source)


def _read_csv(data: DataSettings, base_dir: Path | None) -> Dataset:
    path = Path(data.source)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.exists():
        raise DataError(f"data file {path} not found: fix data.source in the params file")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a readable CSV file: {exc}") from exc
    if data.label_column not in frame.columns:
        raise DataError(
            f"{path} has no label column {data.label_column!r} (columns: "
            f"{', '.join(map(str, frame.columns))}); set data.label_column"
        )
    columns = list(data.feature_columns) or [c for c in frame.columns if c != data.label_column]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path} has no feature column(s) {', '.join(missing)}; fix data.feature_columns"
        )
    if not columns:
        raise DataError(f"{path} has no feature columns besides the label {data.label_column!r}")
    for column in columns:
        numeric = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column][numeric.isna() & frame[column].notna()]
        if len(bad):
            raise DataError(
                f"{path}: feature column {column!r} is not numeric (e.g. {bad.iloc[0]!r} in row "
                f"{int(bad.index[0]) + 2}); irisflow needs numeric features"
            )
    empty = {c: int(frame[c].isna().sum()) for c in [*columns, data.label_column]}
    empty = {c: n for c, n in empty.items() if n}
    if empty:
        described = ", ".join(f"{c!r} ({n})" for c, n in empty.items())
        raise DataError(
            f"{path} has empty or NaN values in column(s) {described}; clean them first"
        )
    x = frame[columns].to_numpy(dtype=np.float64)
    if not np.isfinite(x).all():
        raise DataError(f"{path} has infinite feature values; clean them first")
    y = frame[data.label_column].astype(str).to_numpy()
    return _dataset(x, y, tuple(columns), str(path))


def load_dataset(data: DataSettings, *, base_dir: Path | None = None) -> Dataset:
    """The configured data set; raises :class:`DataError` naming the problem."""
    if data.source == "iris":
        iris = load_iris()
        y = np.asarray(iris.target_names)[iris.target].astype(str)
        return _dataset(np.asarray(iris.data, dtype=np.float64), y, IRIS_FEATURES, "iris")
    return _read_csv(data, base_dir)


def combine(base: Dataset, x_extra: np.ndarray, y_extra: np.ndarray) -> Dataset:
    """Base data plus recent labeled samples (for retraining), with a new fingerprint."""
    if len(x_extra) == 0:
        return base
    x = np.vstack([base.X, np.asarray(x_extra, dtype=np.float64)])
    y = np.concatenate([base.y, np.asarray(y_extra).astype(str)])
    return _dataset(x, y, base.feature_names, f"{base.source}+{len(x_extra)} labeled")
