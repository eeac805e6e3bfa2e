"""trainer.training: select by CV, report on an untouched holdout, publish a fit on all rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irisflow.errors import DataError
from irisflow.estimation import CV_ACCURACY, expected_accuracy, fit_calibration
from irisflow.settings import DataSettings, Settings, TrainingSettings
from trainer.candidates import build_candidates
from trainer.data import load_dataset
from trainer.selection import out_of_fold_probabilities, select_best
from trainer.training import TrainingOutcome, rows_needed_per_class, train_offline

FAST = {
    "logistic_regression": {"max_iter": 500},
    "random_forest": {"n_estimators": 15},
    "svm": {"C": 1.0},
    "knn": {"n_neighbors": 5},
    "naive_bayes": {},
}


def _settings(tmp_path: Path | None = None, **data: object) -> Settings:
    return Settings(
        params_path=(tmp_path or Path(".")) / "params.yaml",
        data=DataSettings.model_validate(data),
        training=TrainingSettings(candidates=FAST),
    )


def _two_blobs(path: Path, *, rows: int = 120, rare: int | None = None) -> None:
    """Three numeric features, labels 'a' and 'b' (optionally only ``rare`` rows of 'b')."""
    rng = np.random.default_rng(0)
    lines = ["alpha,beta,gamma,kind"]
    for i in range(rows):
        kind = "b" if i % 2 and (rare is None or i < 2 * rare) else "a"
        center = 2.0 if kind == "a" else -2.0
        lines.append(",".join(f"{v:.3f}" for v in rng.normal(center, 1.0, 3)) + f",{kind}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def iris() -> TrainingOutcome:
    return train_offline(_settings(), show_progress=False)


def test_iris_selects_a_model_with_cv_macro_f1_of_at_least_0_95(iris: TrainingOutcome) -> None:
    assert iris.metrics["cv_f1_macro_mean"] >= 0.95
    assert iris.metrics["cv_f1_macro_std"] >= 0.0
    assert iris.selection_metric == "f1_macro"


def test_all_five_candidates_are_reported_and_the_best_one_wins(iris: TrainingOutcome) -> None:
    assert [c.name for c in iris.candidates] == list(FAST)
    assert all(len(c.fold_scores) == 5 for c in iris.candidates)
    winner = select_best(iris.candidates)
    assert iris.algorithm == winner.name
    assert iris.metrics["cv_f1_macro_mean"] == winner.mean


def test_the_published_model_is_refit_on_every_row(iris: TrainingOutcome) -> None:
    assert iris.model.named_steps["scale"].n_samples_seen_ == 150
    assert iris.n_samples == 150
    assert iris.model.predict(np.array([[5.1, 3.5, 1.4, 0.2]]))[0] == "setosa"


def test_class_labels_follow_the_models_probability_columns(iris: TrainingOutcome) -> None:
    assert iris.class_labels == [str(c) for c in iris.model.classes_]
    assert iris.class_labels == ["setosa", "versicolor", "virginica"]
    assert iris.feature_names == ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def test_holdout_numbers_come_from_a_stratified_fifth_of_the_rows(iris: TrainingOutcome) -> None:
    matrix = np.array(iris.confusion_matrix)
    assert matrix.sum(axis=1).tolist() == [10, 10, 10]
    assert iris.metrics["holdout_accuracy"] == pytest.approx(np.trace(matrix) / 30)
    macro = iris.holdout_report["macro avg"]
    assert iris.metrics["holdout_f1_macro"] == pytest.approx(macro["f1-score"])
    assert iris.metrics["holdout_precision_macro"] == pytest.approx(macro["precision"])
    assert iris.metrics["holdout_recall_macro"] == pytest.approx(macro["recall"])
    assert iris.holdout_report["virginica"]["support"] == 10


def _winner_out_of_fold(iris: TrainingOutcome) -> tuple[np.ndarray, np.ndarray]:
    """The winner's out-of-fold top-class probabilities over all 150 rows, and which were
    right, recomputed here on the selection's folds and seed."""
    dataset = load_dataset(DataSettings())
    training = _settings().training
    probabilities = out_of_fold_probabilities(
        iris.algorithm,
        build_candidates(training)[iris.algorithm],
        dataset.X,
        dataset.y,
        folds=training.cv_folds,
        random_state=training.random_state,
    )
    correct = np.array(iris.class_labels)[probabilities.argmax(axis=1)] == dataset.y
    return probabilities.max(axis=1), correct


def test_the_calibration_is_fitted_on_out_of_fold_predictions_of_every_row(
    iris: TrainingOutcome,
) -> None:
    confidences, correct = _winner_out_of_fold(iris)
    assert iris.calibration.samples == 150
    assert iris.calibration == fit_calibration(confidences, correct)
    # Not on the published model's own (in-sample) probabilities, which are right more often.
    in_sample = iris.model.predict_proba(load_dataset(DataSettings()).X).max(axis=1)
    assert iris.calibration != fit_calibration(in_sample, np.ones(150, dtype=bool))


def test_cv_accuracy_is_the_out_of_fold_accuracy_and_the_estimate_on_those_rows(
    iris: TrainingOutcome,
) -> None:
    confidences, correct = _winner_out_of_fold(iris)
    assert iris.metrics[CV_ACCURACY] == pytest.approx(correct.mean())
    assert 0.9 < iris.metrics[CV_ACCURACY] < 1.0
    estimate = expected_accuracy(iris.calibration, confidences)
    assert estimate == pytest.approx(iris.metrics[CV_ACCURACY], abs=0.01)


def test_reference_statistics_describe_every_feature_over_all_rows(iris: TrainingOutcome) -> None:
    x = load_dataset(DataSettings()).X
    assert list(iris.reference_stats) == iris.feature_names
    for index, name in enumerate(iris.feature_names):
        stats = iris.reference_stats[name]
        assert stats.mean == pytest.approx(x[:, index].mean())
        assert stats.std == pytest.approx(x[:, index].std())
        assert (stats.min, stats.max) == (x[:, index].min(), x[:, index].max())
        assert stats.quantiles == pytest.approx(np.quantile(x[:, index], np.arange(1, 10) / 10))


def test_the_class_prior_is_the_class_frequency(iris: TrainingOutcome) -> None:
    assert iris.class_prior == pytest.approx({c: 1 / 3 for c in iris.class_labels})


def test_the_same_params_give_identical_results(iris: TrainingOutcome) -> None:
    again = train_offline(_settings(), show_progress=False)
    assert again.metrics == iris.metrics
    assert [(c.name, c.fold_scores) for c in again.candidates] == [
        (c.name, c.fold_scores) for c in iris.candidates
    ]
    assert again.confusion_matrix == iris.confusion_matrix
    assert again.data_fingerprint == iris.data_fingerprint
    assert again.calibration == iris.calibration
    x = load_dataset(DataSettings()).X
    np.testing.assert_array_equal(again.model.predict_proba(x), iris.model.predict_proba(x))


def test_another_csv_trains_with_no_code_change(tmp_path: Path) -> None:
    _two_blobs(tmp_path / "blobs.csv")
    settings = _settings(tmp_path, source="blobs.csv", label_column="kind", feature_columns=())
    outcome = train_offline(settings, show_progress=False)  # path relative to params_path
    assert outcome.feature_names == ["alpha", "beta", "gamma"]
    assert outcome.class_labels == ["a", "b"]
    assert outcome.n_samples == 120
    assert len(outcome.candidates) == 5
    assert outcome.metrics["holdout_accuracy"] > 0.9
    assert outcome.data_source == str(tmp_path / "blobs.csv")


def test_a_class_too_small_for_stratified_cv_is_named_before_training(tmp_path: Path) -> None:
    _two_blobs(tmp_path / "blobs.csv", rows=60, rare=4)
    settings = _settings(tmp_path, source="blobs.csv", label_column="kind")
    assert rows_needed_per_class(settings.training) == 8  # (5 folds + 1) / 80 %, rounded up
    with pytest.raises(DataError, match=r"class\(es\) 'b' \(4\) have fewer than the 8 rows"):
        train_offline(settings, show_progress=False)


def test_the_progress_bar_is_drawn_on_stderr_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _two_blobs(tmp_path / "blobs.csv", rows=40)
    settings = Settings(
        params_path=tmp_path / "params.yaml",
        data=DataSettings(source="blobs.csv", label_column="kind"),
        training=TrainingSettings(candidates={"naive_bayes": {}, "knn": {}}),
    )
    train_offline(settings, show_progress=True)
    shown = capsys.readouterr()
    assert "5-fold CV" in shown.err
    assert "knn" in shown.err
    assert shown.out == ""
    train_offline(settings, show_progress=False)
    assert capsys.readouterr().err == ""
