"""Offline training: select by cross-validation, report on a holdout, refit on all data.

The holdout is split off first and never seen by model selection, so its numbers are an honest
estimate; the published model is then refit on all rows, because more data beats a cleaner
bookkeeping story once the choice is made. Everything is seeded from ``random_state``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from tqdm import tqdm

from irisflow.schemas import FeatureStats
from irisflow.settings import Settings, TrainingSettings
from trainer.candidates import build_candidates
from trainer.data import Dataset, load_dataset
from trainer.selection import CandidateScore, cross_validate_candidates, select_best

__all__ = ["TrainingOutcome", "reference_statistics", "train_offline", "train_on"]


@dataclass(frozen=True)
class TrainingOutcome:
    model: Pipeline
    algorithm: str
    feature_names: list[str]
    class_labels: list[str]
    metrics: dict[str, float]
    candidates: list[CandidateScore]
    reference_stats: dict[str, FeatureStats]
    class_prior: dict[str, float]
    data_fingerprint: str
    holdout_report: dict[str, Any]
    confusion_matrix: list[list[int]]
    n_samples: int
    data_source: str


def reference_statistics(dataset: Dataset) -> dict[str, FeatureStats]:
    """Per-feature statistics the drift detectors compare live traffic against."""
    stats = {}
    for index, name in enumerate(dataset.feature_names):
        column = dataset.X[:, index]
        stats[name] = FeatureStats(
            mean=float(column.mean()),
            std=float(column.std()),
            min=float(column.min()),
            max=float(column.max()),
            quantiles=[float(q) for q in np.quantile(column, np.linspace(0.1, 0.9, 9))],
        )
    return stats


def _holdout_metrics(model: Pipeline, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    predicted = model.predict(x)
    return {
        "holdout_accuracy": float(accuracy_score(y, predicted)),
        "holdout_f1_macro": float(f1_score(y, predicted, average="macro")),
        "holdout_precision_macro": float(
            precision_score(y, predicted, average="macro", zero_division=0)
        ),
        "holdout_recall_macro": float(recall_score(y, predicted, average="macro", zero_division=0)),
    }


def train_on(
    dataset: Dataset, training: TrainingSettings, *, show_progress: bool = True
) -> TrainingOutcome:
    """Select, evaluate and refit on ``dataset`` (used offline and by the retraining service)."""
    x_train, x_test, y_train, y_test = train_test_split(
        dataset.X,
        dataset.y,
        test_size=training.test_size,
        random_state=training.random_state,
        stratify=dataset.y,
    )
    candidates = build_candidates(training)
    with tqdm(
        total=len(candidates),
        desc="cross-validating",
        unit="model",
        file=sys.stderr,
        disable=not show_progress,
    ) as bar:

        def advance(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        scores = cross_validate_candidates(
            candidates,
            x_train,
            y_train,
            folds=training.cv_folds,
            metric=training.selection_metric,
            random_state=training.random_state,
            progress=advance,
        )
    best = select_best(scores)
    evaluated = clone(candidates[best.name]).fit(x_train, y_train)
    labels = list(dataset.class_labels)
    predicted = evaluated.predict(x_test)
    metrics = {
        f"cv_{training.selection_metric}_mean": best.mean,
        f"cv_{training.selection_metric}_std": best.std,
        **_holdout_metrics(evaluated, x_test, y_test),
    }
    final = clone(candidates[best.name]).fit(dataset.X, dataset.y)
    classes, counts = np.unique(dataset.y, return_counts=True)
    return TrainingOutcome(
        model=final,
        algorithm=best.name,
        feature_names=list(dataset.feature_names),
        class_labels=[str(c) for c in final.classes_],
        metrics=metrics,
        candidates=scores,
        reference_stats=reference_statistics(dataset),
        class_prior={str(c): float(n / counts.sum()) for c, n in zip(classes, counts, strict=True)},
        data_fingerprint=dataset.fingerprint,
        holdout_report=classification_report(
            y_test, predicted, labels=labels, output_dict=True, zero_division=0
        ),
        confusion_matrix=confusion_matrix(y_test, predicted, labels=labels).tolist(),
        n_samples=len(dataset.y),
        data_source=dataset.source,
    )


def train_offline(
    settings: Settings, *, dataset: Dataset | None = None, show_progress: bool = True
) -> TrainingOutcome:
    """``irisflow train``: the configured data set through :func:`train_on`."""
    data = dataset or load_dataset(settings.data, base_dir=settings.params_path.parent)
    return train_on(data, settings.training, show_progress=show_progress)
