"""Offline training: five candidates, CV selection, holdout report, any numeric CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irisflow.errors import ConfigError, DataError
from irisflow.registry import deserialize_model, serialize_model, sha256_hex
from irisflow.settings import DataSettings, Settings, TrainingSettings
from trainer.candidates import build_candidates
from trainer.card import confusion_matrix_png, render_model_card
from trainer.data import load_dataset
from trainer.training import TrainingOutcome, train_offline

FAST = {
    "logistic_regression": {"max_iter": 500},
    "random_forest": {"n_estimators": 20},
    "svm": {"C": 1.0},
    "knn": {"n_neighbors": 5},
    "naive_bayes": {},
}


def _settings(**data: object) -> Settings:
    return Settings(
        data=DataSettings(**data) if data else DataSettings(),
        training=TrainingSettings(candidates=FAST, cv_folds=3),
    )


@pytest.fixture(scope="module")
def iris_outcome() -> TrainingOutcome:
    return train_offline(_settings(), show_progress=False)


def test_iris_reports_all_five_candidates_and_selects_one_above_0_95(
    iris_outcome: TrainingOutcome,
) -> None:
    assert {c.name for c in iris_outcome.candidates} == set(FAST)
    winner = next(c for c in iris_outcome.candidates if c.name == iris_outcome.algorithm)
    assert winner.mean == max(c.mean for c in iris_outcome.candidates)
    assert iris_outcome.metrics["cv_f1_macro_mean"] >= 0.95
    assert iris_outcome.class_labels == ["setosa", "versicolor", "virginica"]
    assert sum(map(sum, iris_outcome.confusion_matrix)) == 30  # the 20 % holdout


def test_training_is_reproducible_from_random_state(iris_outcome: TrainingOutcome) -> None:
    again = train_offline(_settings(), show_progress=False)
    assert again.metrics == iris_outcome.metrics
    assert again.data_fingerprint == iris_outcome.data_fingerprint


def test_reference_statistics_describe_every_feature(iris_outcome: TrainingOutcome) -> None:
    stats = iris_outcome.reference_stats["petal_length"]
    assert stats.min == pytest.approx(1.0)
    assert stats.max == pytest.approx(6.9)
    assert len(stats.quantiles) == 9
    assert sum(iris_outcome.class_prior.values()) == pytest.approx(1.0)


def test_another_csv_trains_without_code_changes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = ["alpha,beta,gamma,kind"]
    for i in range(120):
        kind = "a" if i % 2 else "b"
        shift = 2.0 if kind == "a" else -2.0
        rows.append(",".join(f"{v:.3f}" for v in rng.normal(shift, 1.0, 3)) + f",{kind}")
    (tmp_path / "data.csv").write_text("\n".join(rows))
    settings = _settings(source="data.csv", label_column="kind", feature_columns=())
    outcome = train_offline(
        settings, dataset=load_dataset(settings.data, base_dir=tmp_path), show_progress=False
    )
    assert outcome.feature_names == ["alpha", "beta", "gamma"]
    assert outcome.class_labels == ["a", "b"]
    assert outcome.metrics["holdout_accuracy"] > 0.9


@pytest.mark.parametrize(
    ("csv", "columns", "message"),
    [
        (None, (), "not found"),
        ("x,y\n1,a\n2,b\n", (), "no label column 'kind'"),
        ("x,kind\n1,a\n2,b\n", ("x", "z"), "no feature column.*z"),
        ("x,kind\n1,a\noops,b\n", (), "'x' is not numeric.*'oops'"),
        ("x,kind\n1,a\n,b\n3,a\n", (), "NaN values.*'x' \\(1\\)"),
        ("x,kind\n1,a\n2,a\n", (), "at least two"),
    ],
)
def test_bad_data_stops_with_one_clear_message(
    tmp_path: Path, csv: str | None, columns: tuple[str, ...], message: str
) -> None:
    if csv is not None:
        (tmp_path / "bad.csv").write_text(csv)
    data = DataSettings(source="bad.csv", label_column="kind", feature_columns=columns)
    with pytest.raises(DataError, match=message):
        load_dataset(data, base_dir=tmp_path)


def test_an_unknown_candidate_name_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown candidate.*xgboost"):
        build_candidates(TrainingSettings(candidates={"xgboost": {}}))


def test_every_candidate_round_trips_through_skops_with_identical_probabilities() -> None:
    data = load_dataset(DataSettings())
    for name, pipeline in build_candidates(TrainingSettings(candidates=FAST)).items():
        fitted = pipeline.fit(data.X, data.y)
        artifact = serialize_model(fitted)
        loaded = deserialize_model(artifact, sha256=sha256_hex(artifact))
        np.testing.assert_allclose(
            loaded.predict_proba(data.X), fitted.predict_proba(data.X), err_msg=name
        )


def test_the_model_card_names_the_winner_and_lists_the_candidates(
    iris_outcome: TrainingOutcome,
) -> None:
    card = render_model_card(
        iris_outcome,
        model_name="iris",
        version=3,
        parent_version=2,
        trigger="drift",
        created_at=0.0,
    )
    assert card.startswith("# Model card: iris version 3")
    assert f"Winner: **{iris_outcome.algorithm}**" in card
    for name in FAST:
        assert name in card
    assert "confusion_matrix.png" in card


def test_the_confusion_matrix_picture_is_a_png(iris_outcome: TrainingOutcome) -> None:
    assert confusion_matrix_png(iris_outcome).startswith(b"\x89PNG\r\n\x1a\n")
