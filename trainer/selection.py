"""Cross-validated model selection: every candidate scored on the same stratified folds."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.metrics import get_scorer, get_scorer_names
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from irisflow.errors import ConfigError, DataError

__all__ = ["CandidateScore", "cross_validate_candidates", "select_best"]


@dataclass(frozen=True)
class CandidateScore:
    name: str
    mean: float
    std: float
    fold_scores: tuple[float, ...]
    fit_seconds: float


def cross_validate_candidates(
    candidates: dict[str, Pipeline],
    x: np.ndarray,
    y: np.ndarray,
    *,
    folds: int,
    metric: str,
    random_state: int,
    progress: Callable[[str], None] | None = None,
) -> list[CandidateScore]:
    """Score each candidate on identical shuffled stratified folds (seeded, so reproducible)."""
    if metric not in get_scorer_names():
        raise ConfigError(
            f"unknown selection metric {metric!r}; use a scikit-learn scorer name such as f1_macro"
        )
    smallest = int(np.unique(y, return_counts=True)[1].min())
    if smallest < folds:
        counts = dict(zip(*np.unique(y, return_counts=True), strict=True))
        rare = [str(label) for label, n in counts.items() if n < folds]
        raise DataError(
            f"class(es) {', '.join(rare)} have fewer samples than training.cv_folds={folds}; "
            "add data or lower cv_folds"
        )
    scorer = get_scorer(metric)
    splits = list(
        StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state).split(x, y)
    )
    scores = []
    for name, pipeline in candidates.items():
        started = time.perf_counter()
        fold_scores = []
        for train, test in splits:
            fitted = clone(pipeline).fit(x[train], y[train])
            fold_scores.append(float(scorer(fitted, x[test], y[test])))
        scores.append(
            CandidateScore(
                name=name,
                mean=float(np.mean(fold_scores)),
                std=float(np.std(fold_scores)),
                fold_scores=tuple(fold_scores),
                fit_seconds=time.perf_counter() - started,
            )
        )
        if progress is not None:
            progress(name)
    return scores


def select_best(scores: list[CandidateScore]) -> CandidateScore:
    """Highest mean; ties go to the steadier (lower std), then to the name, deterministically."""
    if not scores:
        raise ConfigError("no candidates were scored")
    return sorted(scores, key=lambda s: (-round(s.mean, 12), round(s.std, 12), s.name))[0]
