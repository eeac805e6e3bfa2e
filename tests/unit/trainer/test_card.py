"""trainer.card: a Markdown model card a person can read, and the confusion matrix picture."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from irisflow.settings import DataSettings, Settings, TrainingSettings
from trainer.card import confusion_matrix_png, render_model_card
from trainer.training import TrainingOutcome, train_offline

FAST = {
    "logistic_regression": {"max_iter": 500},
    "random_forest": {"n_estimators": 10},
    "svm": {},
    "knn": {},
    "naive_bayes": {},
}


@pytest.fixture(scope="module")
def outcome() -> TrainingOutcome:
    settings = Settings(training=TrainingSettings(candidates=FAST, cv_folds=3))
    return train_offline(settings, show_progress=False)


def _card(outcome: TrainingOutcome, parent: int | None = 2) -> str:
    return render_model_card(
        outcome,
        model_name="iris",
        version=3,
        parent_version=parent,
        trigger="drift",
        created_at=86400.0,
    )


def test_the_card_is_titled_with_the_model_and_version_and_records_lineage(
    outcome: TrainingOutcome,
) -> None:
    card = _card(outcome)
    assert card.startswith("# Model card: iris version 3\n")
    assert "Created 1970-01-02 00:00:00 UTC; trigger `drift`; parent version 2;" in card
    assert "parent version none;" in _card(outcome, parent=None)


def test_the_card_summarizes_the_data(outcome: TrainingOutcome) -> None:
    card = _card(outcome)
    assert "Source `iris`: 150 rows, 4 features (sepal_length, sepal_width," in card
    assert "| versicolor | 50 | 33.3% |" in card


def test_the_card_names_the_winner_and_tables_every_candidate_with_mean_and_std(
    outcome: TrainingOutcome,
) -> None:
    card = _card(outcome)
    assert f"Winner: **{outcome.algorithm}**" in card
    assert "| candidate | CV f1_macro (mean ± std) | folds | seconds |" in card
    for score in outcome.candidates:
        name = f"**{score.name}**" if score.name == outcome.algorithm else score.name
        assert f"| {name} | {score.mean:.4f} ± {score.std:.4f} | 3 |" in card


def test_the_card_shows_holdout_metrics_and_the_classification_report(
    outcome: TrainingOutcome,
) -> None:
    card = _card(outcome)
    assert f"| holdout_accuracy | {outcome.metrics['holdout_accuracy']:.4f} |" in card
    for row in ("setosa", "versicolor", "virginica", "macro avg", "weighted avg"):
        f1 = outcome.holdout_report[row]["f1-score"]
        assert f"| {row} | " in card
        assert f"{f1:.3f} |" in card


def test_the_card_links_the_confusion_matrix_picture_and_repeats_it_as_text(
    outcome: TrainingOutcome,
) -> None:
    card = _card(outcome)
    assert "![confusion matrix](confusion_matrix.png)" in card
    assert "| true \\ predicted | setosa | versicolor | virginica |" in card
    first = outcome.confusion_matrix[0]
    assert f"| setosa | {first[0]} | {first[1]} | {first[2]} |" in card


def test_the_card_lists_the_reference_statistics_of_every_feature(
    outcome: TrainingOutcome,
) -> None:
    card = _card(outcome)
    stats = outcome.reference_stats["petal_length"]
    assert f"| petal_length | {stats.mean:.3f} | {stats.std:.3f} | 1.000 |" in card
    assert "| p10 | p50 | p90 |" in card


def test_a_pipe_in_a_class_label_does_not_break_the_tables(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = ["x,kind"] + [
        f"{rng.normal(i % 2 * 4):.3f},{'a|b' if i % 2 else 'c'}" for i in range(40)
    ]
    (tmp_path / "pipes.csv").write_text("\n".join(rows) + "\n")
    settings = Settings(
        params_path=tmp_path / "params.yaml",
        data=DataSettings(source="pipes.csv", label_column="kind"),
        training=TrainingSettings(candidates={"naive_bayes": {}}, cv_folds=2),
    )
    card = _card(train_offline(settings, show_progress=False))
    assert "| a\\|b | 20 | 50.0% |" in card


def test_the_confusion_matrix_picture_is_a_readable_png(outcome: TrainingOutcome) -> None:
    picture = confusion_matrix_png(outcome)
    assert picture.startswith(b"\x89PNG\r\n\x1a\n")
    height, width, _ = imread(io.BytesIO(picture), format="png").shape
    assert height >= 300
    assert width >= 300
