"""Cross-validated model selection: every candidate scored on the same stratified folds.

The folds are drawn once and shared, so differences between candidates come from the models
and not from luckier splits; the shuffle is seeded, so the same params choose the same model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.metrics import get_scorer, get_scorer_names
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline

from irisflow.errors import ConfigError, DataError

__all__ = [
    "CandidateScore",
    "cross_validate_candidates",
    "out_of_fold_probabilities",
    "select_best",
    "stratified_folds",
]

Split = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's cross-validated score (higher is better, as for every sklearn scorer).

    ``std`` is the population standard deviation of ``fold_scores``; ``fit_seconds`` is the
    wall time of fitting and scoring all folds (it varies between runs; nothing depends on it).
    """

    name: str
    mean: float
    std: float
    fold_scores: tuple[float, ...]
    fit_seconds: float


def _check_metric(metric: str) -> None:
    if metric not in get_scorer_names():
        raise ConfigError(
            f"unknown selection metric {metric!r} (training.selection_metric); use a "
            "scikit-learn scorer name such as f1_macro, accuracy or balanced_accuracy"
        )


def _check_folds(y: np.ndarray, folds: int) -> None:
    labels, counts = np.unique(y, return_counts=True)
    rare = [f"{str(label)!r} ({n})" for label, n in zip(labels, counts, strict=True) if n < folds]
    if rare:
        raise DataError(
            f"class(es) {', '.join(rare)} have fewer rows than training.cv_folds={folds}, so "
            "stratified folds cannot all contain them; add rows or lower training.cv_folds"
        )


def _fold_score(
    name: str, pipeline: Pipeline, x: np.ndarray, y: np.ndarray, split: Split, metric: str
) -> float:
    train, test = split
    try:
        fitted = clone(pipeline).fit(x[train], y[train])
    except ValueError as exc:
        raise DataError(f"candidate {name} cannot be fitted on a CV fold: {exc}") from exc
    try:
        return float(get_scorer(metric)(fitted, x[test], y[test]))
    except (ValueError, AttributeError) as exc:
        reason = str(exc).rstrip(".")
        raise ConfigError(
            f"selection metric {metric!r} cannot score candidate {name} on this data: {reason}; "
            "choose another training.selection_metric"
        ) from exc


def _score(
    name: str, pipeline: Pipeline, x: np.ndarray, y: np.ndarray, splits: list[Split], metric: str
) -> CandidateScore:
    started = time.perf_counter()
    fold_scores = [_fold_score(name, pipeline, x, y, split, metric) for split in splits]
    return CandidateScore(
        name=name,
        mean=float(np.mean(fold_scores)),
        std=float(np.std(fold_scores)),
        fold_scores=tuple(fold_scores),
        fit_seconds=time.perf_counter() - started,
    )


def cross_validate_candidates(
    candidates: Mapping[str, Pipeline],
    x: np.ndarray,
    y: np.ndarray,
    *,
    folds: int,
    metric: str,
    random_state: int,
    progress: Callable[[str], None] | None = None,
) -> list[CandidateScore]:
    """Score each candidate (in the mapping's order) on identical shuffled stratified folds.

    ``metric`` is any scikit-learn scorer name; ``progress`` is called with each candidate's
    name once it is scored (the CLI advances a progress bar with it).
    """
    _check_metric(metric)
    if not candidates:
        raise ConfigError("no candidates to cross-validate: training.candidates is empty")
    _check_folds(y, folds)
    splits = list(stratified_folds(folds, random_state).split(x, y))
    scores = []
    for name, pipeline in candidates.items():
        scores.append(_score(name, pipeline, x, y, splits, metric))
        if progress is not None:
            progress(name)
    return scores


def stratified_folds(folds: int, random_state: int) -> StratifiedKFold:
    """The shuffled stratified folds of model selection (one definition, so the calibration's
    out-of-fold predictions are drawn the way the candidates were scored)."""
    return StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)


def out_of_fold_probabilities(
    name: str, pipeline: Pipeline, x: np.ndarray, y: np.ndarray, *, folds: int, random_state: int
) -> np.ndarray:
    """Each row's class probabilities from a copy of ``pipeline`` fitted without that row.

    Columns follow the sorted class labels (``numpy.unique(y)``), as a fitted model's
    ``classes_`` do. These are what a calibration is fitted on: the model's own probabilities
    on rows it trained on are overconfident (a random forest is right on all of them).
    """
    _check_folds(y, folds)
    try:
        probabilities = cross_val_predict(
            clone(pipeline),
            x,
            y,
            cv=stratified_folds(folds, random_state),
            method="predict_proba",
        )
    except ValueError as exc:
        raise DataError(f"candidate {name} cannot be fitted on a CV fold: {exc}") from exc
    return np.asarray(probabilities, dtype=float)


def select_best(scores: Sequence[CandidateScore]) -> CandidateScore:
    """Highest mean; ties go to the steadier (lower std), then to the name, deterministically.

    Means are compared after rounding to 12 decimals, so floating-point noise in equal scores
    cannot decide the winner.
    """
    if not scores:
        raise ConfigError("no candidates were scored, so none can be selected")
    return min(scores, key=lambda s: (-round(s.mean, 12), round(s.std, 12), s.name))
