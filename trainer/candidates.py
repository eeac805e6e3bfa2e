"""The five candidate models, each a pipeline with standardization.

Hyperparameters come from ``params.yaml`` (``training.candidates``); a candidate left out of
params is not built, so a params file can narrow the search. ``random_state`` always comes from
``training.random_state`` so one number makes a whole run reproducible.

The SVM gets probabilities from sigmoid calibration (``CalibratedClassifierCV``) because
scikit-learn 1.9 deprecates ``SVC(probability=True)``. ``ensemble=False`` reproduces what
``probability=True`` did (one SVC on all rows, Platt scaling fitted on cross-validated
decisions), so serving runs one SVC, not one per calibration fold. The extra key
``calibration_cv`` (default 3) sets those folds.

Every type these pipelines contain is on :data:`irisflow.registry.TRUSTED_TYPES` or trusted by
skops already, so each one can be published.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from irisflow.errors import ConfigError
from irisflow.settings import TrainingSettings

__all__ = ["CANDIDATES", "build_candidates"]

Factory = Callable[[dict[str, Any], int], Any]


def _logistic_regression(params: dict[str, Any], seed: int) -> Any:
    return LogisticRegression(**{"max_iter": 1000, **params, "random_state": seed})


def _random_forest(params: dict[str, Any], seed: int) -> Any:
    return RandomForestClassifier(**{"n_estimators": 100, **params, "random_state": seed})


def _svm(params: dict[str, Any], seed: int) -> Any:
    folds = params.pop("calibration_cv", 3)
    return CalibratedClassifierCV(
        SVC(**{**params, "random_state": seed}), method="sigmoid", cv=folds, ensemble=False
    )


def _knn(params: dict[str, Any], seed: int) -> Any:
    return KNeighborsClassifier(**params)


def _naive_bayes(params: dict[str, Any], seed: int) -> Any:
    return GaussianNB(**params)


#: Candidate name (a key of ``training.candidates``) -> estimator factory.
CANDIDATES: Mapping[str, Factory] = {
    "logistic_regression": _logistic_regression,
    "random_forest": _random_forest,
    "svm": _svm,
    "knn": _knn,
    "naive_bayes": _naive_bayes,
}


def _estimator(name: str, params: dict[str, Any] | None, seed: int) -> Any:
    try:
        estimator = CANDIDATES[name](dict(params or {}), seed)
        # Check hyperparameter values now (scikit-learn checks only at fit time), so a typo in
        # params.yaml is one error before training rather than a traceback in the middle of CV.
        nested = estimator.get_params(deep=True).values()
        for part in [estimator, *(v for v in nested if isinstance(v, BaseEstimator))]:
            part._validate_params()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"training.candidates.{name}: {exc}") from exc
    return estimator


def build_candidates(training: TrainingSettings) -> dict[str, Pipeline]:
    """One unfitted ``StandardScaler`` + estimator pipeline per configured candidate."""
    unknown = sorted(set(training.candidates) - set(CANDIDATES))
    if unknown:
        raise ConfigError(
            f"unknown candidate(s) {', '.join(unknown)} in training.candidates; "
            f"choose from {', '.join(CANDIDATES)}"
        )
    if not training.candidates:
        raise ConfigError("training.candidates is empty: name at least one candidate model")
    return {
        name: Pipeline(
            [
                ("scale", StandardScaler()),
                ("model", _estimator(name, params, training.random_state)),
            ]
        )
        for name, params in training.candidates.items()
    }
