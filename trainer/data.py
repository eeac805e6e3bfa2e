"""Loading a tabular data set, with one clear error for each way it can be unusable.

Pure: no Kafka, no web framework. Iris comes from the copy that ships inside scikit-learn, so
nothing is downloaded; any other source is a CSV path (relative to the params file's folder).
Both go through the same column checks, so a params file can narrow Iris's features too.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris

from irisflow.errors import DataError
from irisflow.settings import DataSettings

__all__ = [
    "IRIS_FEATURES",
    "IRIS_LABEL",
    "Dataset",
    "check_class_sizes",
    "combine",
    "fingerprint",
    "load_dataset",
]

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
IRIS_LABEL = "species"


@dataclass(frozen=True)
class Dataset:
    """Features and labels plus what they mean; every training step takes one of these.

    ``X`` is float64 with one row per sample, ``y`` holds the labels as strings (a model's
    ``classes_`` are then strings too, which is what travels on the wire), ``class_labels`` is
    sorted, and ``fingerprint`` identifies the exact data a model version was trained on.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_labels: tuple[str, ...]
    fingerprint: str
    source: str

    @property
    def n_samples(self) -> int:
        return len(self.y)

    def class_counts(self) -> dict[str, int]:
        """Rows per class, in ``class_labels`` order."""
        counts = Counter(str(label) for label in self.y)
        return {label: counts[label] for label in self.class_labels}


def fingerprint(x: np.ndarray, y: np.ndarray, feature_names: tuple[str, ...]) -> str:
    """sha256 of a canonical form: a JSON header, little-endian float64 values, JSON labels.

    Independent of the platform, the file's formatting and the pandas version, so the same rows
    give the same fingerprint on every machine and run.
    """
    values = np.ascontiguousarray(x, dtype="<f8")
    header = {"features": list(feature_names), "shape": list(values.shape)}
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    digest.update(values.tobytes())
    digest.update(json.dumps([str(label) for label in y]).encode())
    return digest.hexdigest()


def _dataset(x: np.ndarray, y: np.ndarray, names: tuple[str, ...], source: str) -> Dataset:
    labels = tuple(sorted({str(v) for v in y}))
    if len(labels) < 2:
        found = ", ".join(repr(label) for label in labels) or "none"
        raise DataError(
            f"{source}: the labels have {len(labels)} class ({found}); a classifier needs at "
            "least two classes: add rows of another class or pick another data.label_column"
        )
    return Dataset(x, y, names, labels, fingerprint(x, y, names), source)


def _read_csv(path: Path, label_column: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(
            f"data file {path} not found: fix data.source in the params file (relative paths "
            "are resolved against the params file's folder)"
        )
    try:
        # Labels stay text exactly as written ("01" is not 1).
        return pd.read_csv(path, dtype={label_column: str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path} is not a readable CSV file: {exc}") from exc


def _feature_columns(frame: pd.DataFrame, data: DataSettings, where: str) -> list[str]:
    columns = [str(c) for c in frame.columns]
    if data.label_column not in columns:
        raise DataError(
            f"{where} has no label column {data.label_column!r} (columns: {', '.join(columns)}); "
            "set data.label_column"
        )
    if data.label_column in data.feature_columns:
        raise DataError(
            f"data.feature_columns lists the label column {data.label_column!r}; remove it"
        )
    repeated = sorted({c for c in data.feature_columns if data.feature_columns.count(c) > 1})
    if repeated:
        raise DataError(f"data.feature_columns names {', '.join(repeated)} more than once")
    chosen = list(data.feature_columns) or [c for c in columns if c != data.label_column]
    missing = [c for c in chosen if c not in columns]
    if missing:
        raise DataError(
            f"{where} has no feature column(s) {', '.join(map(repr, missing))} (columns: "
            f"{', '.join(columns)}); fix data.feature_columns"
        )
    if not chosen:
        raise DataError(f"{where} has no feature columns besides the label {data.label_column!r}")
    return chosen


def _check_values(frame: pd.DataFrame, features: list[str], label: str, where: str) -> None:
    for column in features:
        numeric = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column][numeric.isna() & frame[column].notna()]
        if len(bad):
            raise DataError(
                f"{where}: feature column {column!r} is not numeric (e.g. {bad.iloc[0]!r} in data "
                f"row {int(bad.index[0]) + 1}); convert or drop it via data.feature_columns"
            )
    empty = {c: int(frame[c].isna().sum()) for c in [*features, label]}
    described = ", ".join(f"{c!r} ({n})" for c, n in empty.items() if n)
    if described:
        raise DataError(
            f"{where} has empty or NaN values in column(s) {described}; fill or drop those rows"
        )


def _from_frame(frame: pd.DataFrame, data: DataSettings, where: str) -> Dataset:
    features = _feature_columns(frame, data, where)
    _check_values(frame, features, data.label_column, where)
    x = frame[features].apply(pd.to_numeric).to_numpy(dtype=np.float64)
    if not np.isfinite(x).all():
        raise DataError(f"{where} has infinite feature values; fill or drop those rows")
    y = frame[data.label_column].astype(str).to_numpy(dtype=str)
    return _dataset(x, y, tuple(features), where)


def _iris_frame() -> pd.DataFrame:
    iris = load_iris()
    frame = pd.DataFrame(np.asarray(iris.data, dtype=np.float64), columns=list(IRIS_FEATURES))
    frame[IRIS_LABEL] = np.asarray(iris.target_names)[iris.target].astype(str)
    return frame


def load_dataset(data: DataSettings, *, base_dir: Path | None = None) -> Dataset:
    """The configured data set; raises :class:`DataError` naming the problem and the fix.

    ``base_dir`` is the params file's folder, so ``source: data/flowers.csv`` means the same
    file wherever the command is run from.
    """
    if data.source == "iris":
        return _from_frame(_iris_frame(), data, "iris")
    path = Path(data.source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return _from_frame(_read_csv(path, data.label_column), data, str(path))


def check_class_sizes(dataset: Dataset, *, minimum: int, needed_for: str) -> None:
    """Refuse data in which a class has fewer than ``minimum`` rows, naming every such class.

    Stratified splits need each class in every fold; without this check scikit-learn fails
    later with a message that names neither the class nor the setting to change.
    """
    small = {label: n for label, n in dataset.class_counts().items() if n < minimum}
    if small:
        described = ", ".join(f"{label!r} ({n})" for label, n in small.items())
        raise DataError(
            f"{dataset.source}: class(es) {described} have fewer than the {minimum} rows "
            f"{needed_for} needs; add rows of those classes or lower training.cv_folds"
        )


def combine(base: Dataset, x_extra: np.ndarray, y_extra: np.ndarray) -> Dataset:
    """Base data plus recent labeled samples (for retraining), with a new fingerprint."""
    if len(y_extra) == 0:
        return base
    x = np.asarray(x_extra, dtype=np.float64)
    if x.shape != (len(y_extra), len(base.feature_names)) or not np.isfinite(x).all():
        raise DataError(
            f"extra samples must be {len(y_extra)} rows of {len(base.feature_names)} finite "
            f"features ({', '.join(base.feature_names)}); got shape {x.shape}"
        )
    merged_x = np.vstack([base.X, x])
    merged_y = np.concatenate([base.y.astype(str), np.asarray(y_extra).astype(str)])
    source = f"{base.source}+{len(y_extra)} labeled"
    return _dataset(merged_x, merged_y, base.feature_names, source)
