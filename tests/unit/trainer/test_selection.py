"""trainer.selection: seeded stratified CV of every candidate, and a deterministic winner."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from irisflow.errors import ConfigError, DataError
from irisflow.settings import TrainingSettings
from trainer.candidates import build_candidates
from trainer.selection import (
    CandidateScore,
    cross_validate_candidates,
    out_of_fold_probabilities,
    select_best,
)

QUICK = {"logistic_regression": {}, "knn": {"n_neighbors": 3}, "naive_bayes": {}}


def _overlapping(seed: int = 0, n: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """Three classes that overlap, so fold scores differ between folds and seeds."""
    rng = np.random.default_rng(seed)
    y = np.array(["a", "b", "c"] * (n // 3))
    centers = {"a": 0.0, "b": 1.0, "c": 2.0}
    x = np.array([[centers[label]] * 2 for label in y]) + rng.normal(0.0, 0.8, (n, 2))
    return x, y


def _cv(
    x: np.ndarray,
    y: np.ndarray,
    *,
    folds: int = 3,
    metric: str = "f1_macro",
    random_state: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[CandidateScore]:
    return cross_validate_candidates(
        build_candidates(TrainingSettings(candidates=QUICK)),
        x,
        y,
        folds=folds,
        metric=metric,
        random_state=random_state,
        progress=progress,
    )


def _score(name: str, mean: float, std: float) -> CandidateScore:
    return CandidateScore(name=name, mean=mean, std=std, fold_scores=(), fit_seconds=0.0)


def test_every_candidate_is_scored_once_per_fold_in_params_order() -> None:
    x, y = _overlapping()
    scores = _cv(x, y, folds=4)
    assert [s.name for s in scores] == list(QUICK)
    for score in scores:
        assert len(score.fold_scores) == 4
        assert score.mean == pytest.approx(np.mean(score.fold_scores))
        assert score.std == pytest.approx(np.std(score.fold_scores))
        assert 0.3 < score.mean <= 1.0


def test_the_same_random_state_gives_the_same_fold_scores() -> None:
    x, y = _overlapping()
    first = [s.fold_scores for s in _cv(x, y, random_state=5)]
    assert first == [s.fold_scores for s in _cv(x, y, random_state=5)]
    assert first != [s.fold_scores for s in _cv(x, y, random_state=6)]


def test_progress_is_reported_once_per_candidate_as_it_finishes() -> None:
    x, y = _overlapping()
    seen: list[str] = []
    _cv(x, y, progress=seen.append)
    assert seen == list(QUICK)


def test_any_scikit_learn_scorer_can_select_the_model() -> None:
    x, y = _overlapping()
    assert all(s.mean < 0 for s in _cv(x, y, metric="neg_log_loss"))


def test_an_unknown_metric_is_refused_with_examples_of_valid_ones() -> None:
    x, y = _overlapping()
    with pytest.raises(ConfigError, match=r"unknown selection metric 'f1_mcro'.*f1_macro"):
        _cv(x, y, metric="f1_mcro")


def test_a_metric_that_cannot_score_the_data_names_the_metric() -> None:
    x, y = _overlapping()
    with pytest.raises(ConfigError, match=r"metric 'f1' cannot score candidate .*multiclass"):
        _cv(x, y, metric="f1")


def test_a_class_with_fewer_rows_than_folds_is_named() -> None:
    x, y = _overlapping()
    y = y.astype(object)
    y[:2] = "tiny"
    with pytest.raises(DataError, match=r"class\(es\) 'tiny' \(2\) have fewer rows than .*=3"):
        _cv(x, y, folds=3)


def test_the_highest_mean_wins() -> None:
    best = select_best([_score("a", 0.90, 0.01), _score("b", 0.95, 0.05), _score("c", 0.93, 0)])
    assert best.name == "b"


def test_a_tie_goes_to_the_steadier_candidate_then_to_the_name() -> None:
    assert select_best([_score("a", 0.9, 0.05), _score("b", 0.9, 0.01)]).name == "b"
    assert select_best([_score("z", 0.9, 0.01), _score("m", 0.9, 0.01)]).name == "m"


def test_floating_point_noise_does_not_break_a_tie() -> None:
    noisy = _score("z", 0.1 + 0.2, 0.0)  # 0.30000000000000004
    assert select_best([noisy, _score("a", 0.3, 0.0)]).name == "a"


def test_selecting_from_no_scores_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no candidates were scored"):
        select_best([])


def test_out_of_fold_probabilities_come_from_the_selections_folds_without_the_row() -> None:
    x, y = _overlapping()
    pipeline = build_candidates(TrainingSettings(candidates=QUICK))["logistic_regression"]
    found = out_of_fold_probabilities(
        "logistic_regression", pipeline, x, y, folds=3, random_state=5
    )
    assert found.shape == (len(y), 3)
    splits = list(StratifiedKFold(n_splits=3, shuffle=True, random_state=5).split(x, y))
    # The same folds as cross_validate_candidates: each fold's accuracy is its fold score.
    fold_accuracy = _cv(x, y, folds=3, metric="accuracy", random_state=5)[0].fold_scores
    for (train, test), score in zip(splits, fold_accuracy, strict=True):
        fitted = clone(pipeline).fit(x[train], y[train])
        np.testing.assert_allclose(found[test], fitted.predict_proba(x[test]))
        assert np.mean(np.array(["a", "b", "c"])[found[test].argmax(axis=1)] == y[test]) == (
            pytest.approx(score)
        )


def test_out_of_fold_probabilities_name_a_class_too_small_for_the_folds() -> None:
    x, y = _overlapping()
    y = y.astype(object)
    y[:2] = "tiny"
    pipeline = build_candidates(TrainingSettings(candidates=QUICK))["naive_bayes"]
    with pytest.raises(DataError, match=r"class\(es\) 'tiny' \(2\)"):
        out_of_fold_probabilities("naive_bayes", pipeline, x, y, folds=3, random_state=0)
