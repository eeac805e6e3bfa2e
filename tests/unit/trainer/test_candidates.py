"""trainer.candidates: five standardized pipelines from params, each publishable with skops."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from irisflow.errors import ConfigError
from irisflow.registry import deserialize_model, serialize_model, sha256_hex
from irisflow.settings import DataSettings, TrainingSettings
from trainer.candidates import build_candidates
from trainer.data import load_dataset

FAST = {
    "logistic_regression": {"max_iter": 500},
    "random_forest": {"n_estimators": 10},
    "svm": {"C": 1.0, "kernel": "rbf"},
    "knn": {"n_neighbors": 5},
    "naive_bayes": {},
}
ESTIMATORS = {
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "svm": CalibratedClassifierCV,
    "knn": KNeighborsClassifier,
    "naive_bayes": GaussianNB,
}


def test_all_five_candidates_are_a_scaler_followed_by_their_estimator() -> None:
    pipelines = build_candidates(TrainingSettings(candidates=FAST))
    assert list(pipelines) == list(FAST)
    for name, pipeline in pipelines.items():
        assert isinstance(pipeline.steps[0][1], StandardScaler), name
        assert isinstance(pipeline.steps[-1][1], ESTIMATORS[name]), name


def test_a_candidate_left_out_of_params_is_not_built() -> None:
    pipelines = build_candidates(TrainingSettings(candidates={"knn": {}, "naive_bayes": {}}))
    assert list(pipelines) == ["knn", "naive_bayes"]


def test_hyperparameters_come_from_params_and_random_state_from_settings() -> None:
    training = TrainingSettings(
        random_state=7, candidates={"random_forest": {"n_estimators": 3, "random_state": 1}}
    )
    forest = build_candidates(training)["random_forest"][-1]
    assert forest.n_estimators == 3
    assert forest.random_state == 7


def test_an_unknown_candidate_name_is_refused_with_the_known_names() -> None:
    with pytest.raises(ConfigError, match=r"unknown candidate\(s\) xgboost .*choose from .*knn"):
        build_candidates(TrainingSettings(candidates={"xgboost": {}, "knn": {}}))


def test_an_empty_candidate_set_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"training\.candidates is empty"):
        build_candidates(TrainingSettings(candidates={}))


@pytest.mark.parametrize(
    ("candidates", "message"),
    [
        ({"svm": {"C": -1}}, r"training\.candidates\.svm: The 'C' parameter of SVC"),
        ({"knn": {"n_neighbours": 3}}, r"training\.candidates\.knn: .*'n_neighbours'"),
        ({"random_forest": {"n_estimators": 0}}, r"training\.candidates\.random_forest: .*0"),
    ],
    ids=["out-of-range", "misspelled", "zero-trees"],
)
def test_an_invalid_hyperparameter_is_refused_before_any_training(
    candidates: dict[str, dict[str, object]], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_candidates(TrainingSettings(candidates=candidates))


def test_the_svm_serves_one_calibrated_svc_rather_than_one_per_fold() -> None:
    data = load_dataset(DataSettings())
    svm = build_candidates(TrainingSettings(candidates={"svm": {}}))["svm"].fit(data.X, data.y)
    assert len(svm[-1].calibrated_classifiers_) == 1


@pytest.mark.parametrize("name", list(FAST))
def test_each_candidate_predicts_probabilities_without_deprecation_warnings(name: str) -> None:
    data = load_dataset(DataSettings())
    pipeline = build_candidates(TrainingSettings(candidates={name: FAST[name]}))[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        probabilities = pipeline.fit(data.X, data.y).predict_proba(data.X)
    assert probabilities.shape == (150, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert list(pipeline.classes_) == list(data.class_labels)


@pytest.mark.parametrize("name", list(FAST))
def test_each_candidate_round_trips_through_the_registry_with_identical_probabilities(
    name: str,
) -> None:
    data = load_dataset(DataSettings())
    fitted = build_candidates(TrainingSettings(candidates={name: FAST[name]}))[name]
    fitted.fit(data.X, data.y)
    artifact = serialize_model(fitted)
    loaded = deserialize_model(artifact, sha256=sha256_hex(artifact))
    np.testing.assert_array_equal(loaded.predict_proba(data.X), fitted.predict_proba(data.X))
    assert list(loaded.classes_) == list(fitted.classes_)
