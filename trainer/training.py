"""Offline training: select by cross-validation, report on a holdout, refit on all data.

The holdout is split off first and never seen by model selection, so its numbers are an honest
estimate; the published model is then refit on all rows, because more data beats a cleaner
bookkeeping story once the choice is made. Everything is seeded from ``random_state``, so the
same params and data give the same winner and the same metrics.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
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

from irisflow.errors import DataError
from irisflow.estimation import CV_ACCURACY, fit_calibration, top_confidences
from irisflow.schemas import Calibration, FeatureStats
from irisflow.settings import Settings, TrainingSettings
from trainer.candidates import build_candidates
from trainer.data import Dataset, check_class_sizes, load_dataset
from trainer.selection import (
    CandidateScore,
    cross_validate_candidates,
    out_of_fold_probabilities,
    select_best,
)

__all__ = [
    "TrainingOutcome",
    "calibrate",
    "class_prior",
    "reference_statistics",
    "rows_needed_per_class",
    "train_offline",
    "train_on",
]

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class TrainingOutcome:
    """Everything a model version is published with, plus what its model card reports.

    ``class_labels`` is the fitted model's ``classes_`` order (the order of its probabilities);
    ``confusion_matrix`` rows (true) and columns (predicted) follow it too. ``calibration`` maps
    the published model's top-class probability to its chance of being right (see
    :func:`calibrate`); the label-free accuracy estimate reads it.
    """

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
    selection_metric: str
    calibration: Calibration


def rows_needed_per_class(training: TrainingSettings) -> int:
    """Rows a class needs so that, after the holdout, every CV fold still contains it."""
    return math.ceil((training.cv_folds + 1) / (1.0 - training.test_size))


def reference_statistics(dataset: Dataset) -> dict[str, FeatureStats]:
    """Per-feature statistics the drift detectors compare live traffic against."""
    deciles = np.linspace(0.1, 0.9, 9)
    stats = {}
    for index, name in enumerate(dataset.feature_names):
        column = dataset.X[:, index]
        stats[name] = FeatureStats(
            mean=float(column.mean()),
            std=float(column.std()),
            min=float(column.min()),
            max=float(column.max()),
            quantiles=[float(q) for q in np.quantile(column, deciles)],
        )
    return stats


def class_prior(dataset: Dataset) -> dict[str, float]:
    """Class frequencies, the baseline for drift in the predicted-class mix."""
    counts = dataset.class_counts()
    return {label: n / dataset.n_samples for label, n in counts.items()}


def _split(dataset: Dataset, training: TrainingSettings) -> Split:
    check_class_sizes(
        dataset,
        minimum=rows_needed_per_class(training),
        needed_for=f"{training.cv_folds}-fold stratified cross-validation after a "
        f"{training.test_size:.0%} holdout",
    )
    try:
        parts = train_test_split(
            dataset.X,
            dataset.y,
            test_size=training.test_size,
            random_state=training.random_state,
            stratify=dataset.y,
        )
    except ValueError as exc:
        raise DataError(
            f"{dataset.source}: cannot hold out training.test_size={training.test_size} of "
            f"{dataset.n_samples} rows with every class in both parts ({exc}); add rows or "
            "change training.test_size"
        ) from exc
    x_train, x_test, y_train, y_test = parts
    return x_train, x_test, y_train, y_test


def _cross_validate(
    candidates: Mapping[str, Pipeline],
    x: np.ndarray,
    y: np.ndarray,
    training: TrainingSettings,
    *,
    show_progress: bool,
) -> list[CandidateScore]:
    desc = f"{training.cv_folds}-fold CV"
    with tqdm(
        total=len(candidates), desc=desc, unit="model", file=sys.stderr, disable=not show_progress
    ) as bar:

        def advance(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        return cross_validate_candidates(
            candidates,
            x,
            y,
            folds=training.cv_folds,
            metric=training.selection_metric,
            random_state=training.random_state,
            progress=advance,
        )


def _plain(value: Any) -> Any:
    """numpy scalars in sklearn's report -> Python numbers, so the report serializes as JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value.item() if isinstance(value, np.generic) else value


def _evaluate(
    model: Pipeline, x: np.ndarray, y: np.ndarray, labels: list[str]
) -> tuple[dict[str, float], dict[str, Any], list[list[int]]]:
    predicted = model.predict(x)
    macro: dict[str, Any] = {"labels": labels, "average": "macro", "zero_division": 0}
    metrics = {
        "holdout_accuracy": float(accuracy_score(y, predicted)),
        "holdout_f1_macro": float(f1_score(y, predicted, **macro)),
        "holdout_precision_macro": float(precision_score(y, predicted, **macro)),
        "holdout_recall_macro": float(recall_score(y, predicted, **macro)),
    }
    report = classification_report(y, predicted, labels=labels, output_dict=True, zero_division=0)
    matrix = confusion_matrix(y, predicted, labels=labels)
    return metrics, _plain(report), [[int(n) for n in row] for row in matrix]


def calibrate(
    name: str, pipeline: Pipeline, dataset: Dataset, training: TrainingSettings
) -> tuple[Calibration, float]:
    """The calibration of ``pipeline`` refit on all of ``dataset``, and its out-of-fold accuracy.

    Fitted on out-of-fold probabilities of every row (the selection's folds and seed): the
    few dozen rows of the holdout hold too few errors for a map that does not overfit, and the
    published model is refit on all rows anyway, so each fold's copy (trained on 1 - 1/folds
    of them) is the closest stand-in for it. One extra cross-validation, of the winner only.
    """
    probabilities = out_of_fold_probabilities(
        name,
        pipeline,
        dataset.X,
        dataset.y,
        folds=training.cv_folds,
        random_state=training.random_state,
    )
    labels = np.unique(dataset.y)
    correct = labels[probabilities.argmax(axis=1)] == dataset.y
    return fit_calibration(top_confidences(probabilities), correct), float(correct.mean())


def train_on(
    dataset: Dataset, training: TrainingSettings, *, show_progress: bool = True
) -> TrainingOutcome:
    """Select, evaluate and refit on ``dataset`` (used offline and by the retraining service)."""
    x_train, x_test, y_train, y_test = _split(dataset, training)
    candidates = build_candidates(training)
    scores = _cross_validate(candidates, x_train, y_train, training, show_progress=show_progress)
    best = select_best(scores)
    labels = list(dataset.class_labels)
    holdout, report, matrix = _evaluate(
        clone(candidates[best.name]).fit(x_train, y_train), x_test, y_test, labels
    )
    metric = training.selection_metric
    calibration, cv_accuracy = calibrate(best.name, candidates[best.name], dataset, training)
    final = clone(candidates[best.name]).fit(dataset.X, dataset.y)
    return TrainingOutcome(
        model=final,
        algorithm=best.name,
        feature_names=list(dataset.feature_names),
        class_labels=[str(c) for c in final.classes_],
        metrics={
            f"cv_{metric}_mean": best.mean,
            f"cv_{metric}_std": best.std,
            CV_ACCURACY: cv_accuracy,
            **holdout,
        },
        candidates=scores,
        reference_stats=reference_statistics(dataset),
        class_prior=class_prior(dataset),
        data_fingerprint=dataset.fingerprint,
        holdout_report=report,
        confusion_matrix=matrix,
        n_samples=dataset.n_samples,
        data_source=dataset.source,
        selection_metric=metric,
        calibration=calibration,
    )


def train_offline(
    settings: Settings, *, dataset: Dataset | None = None, show_progress: bool = True
) -> TrainingOutcome:
    """``irisflow train``: the configured data set (or ``dataset``) through :func:`train_on`.

    A relative ``data.source`` is read relative to the params file, not the working directory.
    """
    if dataset is None:
        dataset = load_dataset(settings.data, base_dir=settings.params_path.parent)
    return train_on(dataset, settings.training, show_progress=show_progress)
