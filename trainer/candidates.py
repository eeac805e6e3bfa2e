"""The five candidate models, each a pipeline with standardization.

Hyperparameters come from ``params.yaml`` (``training.candidates``); a candidate left out of
params is not built, so a params file can narrow the search. The SVM gets probabilities by
sigmoid calibration (``CalibratedClassifierCV``) because scikit-learn 1.9 deprecates
``SVC(probability=True)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def _logistic_regression(params: dict[str, Any], seed: int) -> Any:
    return LogisticRegression(**{"max_iter": 1000, **params, "random_state": seed})


def _random_forest(params: dict[str, Any], seed: int) -> Any:
    return RandomForestClassifier(**{"n_estimators": 100, **params, "random_state": seed})


def _svm(params: dict[str, Any], seed: int) -> Any:
    calibration = {k: params[k] for k in ("calibration_cv",) if k in params}
    svc_params = {k: v for k, v in params.items() if k != "calibration_cv"}
    return CalibratedClassifierCV(
        SVC(**svc_params, random_state=seed),
        method="sigmoid",
        cv=calibration.get("calibration_cv", 3),
    )


def _knn(params: dict[str, Any], seed: int) -> Any:
    return KNeighborsClassifier(**params)


def _naive_bayes(params: dict[str, Any], seed: int) -> Any:
    return GaussianNB(**params)


CANDIDATES: dict[str, Callable[[dict[str, Any], int], Any]] = {
    "logistic_regression": _logistic_regression,
    "random_forest": _random_forest,
    "svm": _svm,
    "knn": _knn,
    "naive_bayes": _naive_bayes,
}


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
    pipelines = {}
    for name, params in training.candidates.items():
        clean = {k: v for k, v in (params or {}).items()}
        try:
            estimator = CANDIDATES[name](clean, training.random_state)
        except TypeError as exc:
            raise ConfigError(f"training.candidates.{name}: {exc}") from exc
        pipelines[name] = Pipeline([("scale", StandardScaler()), ("model", estimator)])
    return pipelines
