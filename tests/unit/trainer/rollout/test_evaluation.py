"""The live comparison: counted on paired requests only, once per request, per version."""

from __future__ import annotations

from typing import Any

import pytest

from irisflow.schemas import (
    Calibration,
    LabeledSample,
    ModelMetadata,
    RolloutMode,
    ShadowPrediction,
)
from tests.factories import SETOSA, model_update
from trainer.rollout.evaluation import RolloutEvaluation

ROLLOUT = "iris-v2-test"


def _meta(version: int, **changes: Any) -> ModelMetadata:
    return model_update(version).metadata().model_copy(update=changes)


def _evaluation(**candidate: Any) -> RolloutEvaluation:
    prior = {"setosa": 1 / 3, "versicolor": 1 / 3, "virginica": 1 / 3}
    return RolloutEvaluation(
        ROLLOUT,
        champion=_meta(1, class_prior=prior),
        candidate=_meta(2, class_prior=prior, **candidate),
    )


def _shadow(request_id: str, label: str, served_label: str, **changes: Any) -> ShadowPrediction:
    values: dict[str, Any] = {
        "request_id": request_id,
        "rollout_id": ROLLOUT,
        "mode": RolloutMode.SHADOW,
        "version": 2,
        "served_version": 1,
        "labels": [label],
        "served_labels": [served_label],
        "confidences": [0.9],
        "served_confidences": [0.8],
        "seconds": 0.002,
        "served_seconds": 0.001,
    }
    return ShadowPrediction(**(values | changes))


def test_agreement_is_the_share_of_paired_rows_with_the_same_label() -> None:
    evaluation = _evaluation()
    evaluation.add_shadow(_shadow("a", "setosa", "setosa"))
    evaluation.add_shadow(_shadow("b", "virginica", "setosa"))
    champion, candidate = evaluation.readings()
    assert candidate.agreement == champion.agreement == 0.5
    assert candidate.scored == champion.scored == 2
    assert champion.served == 2
    assert candidate.served == 0
    assert candidate.class_mix == {"setosa": 0.5, "virginica": 0.5}


def test_in_canary_the_served_side_is_the_candidate() -> None:
    evaluation = _evaluation()
    canary = _shadow(
        "a",
        "setosa",
        "virginica",
        mode=RolloutMode.CANARY,
        version=1,
        served_version=2,
        confidences=[0.7],
        served_confidences=[0.6],
    )
    evaluation.add_shadow(canary)
    champion, candidate = evaluation.readings()
    assert candidate.served == 1
    assert champion.served == 0
    assert candidate.class_mix == {"virginica": 1.0}
    assert candidate.confidence_mean == pytest.approx(0.6)
    assert champion.confidence_mean == pytest.approx(0.7)


def test_a_request_counted_once_however_often_it_arrives() -> None:
    evaluation = _evaluation()
    assert evaluation.add_shadow(_shadow("a", "setosa", "setosa"))
    assert not evaluation.add_shadow(_shadow("a", "setosa", "setosa"))
    assert evaluation.readings()[1].scored == 1


def test_records_of_another_rollout_or_version_are_ignored() -> None:
    evaluation = _evaluation()
    assert not evaluation.add_shadow(_shadow("a", "setosa", "setosa", rollout_id="other-1"))
    assert not evaluation.add_shadow(_shadow("b", "setosa", "setosa", version=7))
    assert evaluation.ignored == 2
    assert evaluation.readings()[1].scored == 0


def test_a_refusal_counts_as_an_error_of_that_version_only() -> None:
    evaluation = _evaluation()
    evaluation.add_shadow(_shadow("a", "setosa", "setosa", labels=[], confidences=[], error="x"))
    champion, candidate = evaluation.readings()
    assert (candidate.errors, candidate.scored) == (1, 0)
    assert (champion.errors, champion.scored) == (0, 1)
    assert candidate.agreement is None


def test_labels_give_both_versions_accuracy_and_macro_f1_on_the_same_requests() -> None:
    evaluation = _evaluation()
    for i, (truth, served, shadow) in enumerate(
        [("setosa", "setosa", "setosa"), ("virginica", "virginica", "setosa")]
    ):
        sample = LabeledSample(
            request_id=f"r{i}",
            features=SETOSA,
            true_label=truth,
            predicted_label=served,
            model_version=1,
            shadow_version=2,
            shadow_label=shadow,
        )
        assert evaluation.add_labeled(sample)
        assert not evaluation.add_labeled(sample)
    champion, candidate = evaluation.readings()
    assert (champion.labeled, champion.accuracy, champion.macro_f1) == (2, 1.0, 1.0)
    assert (candidate.labeled, candidate.accuracy) == (2, 0.5)
    assert candidate.macro_f1 == pytest.approx((2 / 3 + 0.0) / 2)


def test_a_labeled_sample_without_a_shadow_is_not_paired() -> None:
    evaluation = _evaluation()
    sample = LabeledSample(
        request_id="r",
        features=SETOSA,
        true_label="setosa",
        predicted_label="setosa",
        model_version=1,
    )
    assert not evaluation.add_labeled(sample)


def test_the_estimate_reads_each_versions_own_calibration() -> None:
    flat = Calibration(confidence=[0.0, 1.0], accuracy=[0.5, 0.5], samples=10)
    evaluation = _evaluation(calibration=flat)
    evaluation.add_shadow(_shadow("a", "setosa", "setosa"))
    champion, candidate = evaluation.readings()
    assert candidate.estimated_accuracy == pytest.approx(0.5)
    assert champion.estimated_accuracy == pytest.approx(0.8)  # no calibration: raw confidence
    assert candidate.estimated_samples == 1


def test_class_psi_is_zero_for_the_prior_mix_and_grows_away_from_it() -> None:
    evaluation = _evaluation()
    for i, label in enumerate(["setosa", "versicolor", "virginica"] * 10):
        evaluation.add_shadow(_shadow(f"a{i}", label, label))
    assert evaluation.readings()[1].class_psi == pytest.approx(0.0, abs=1e-9)
    skewed = _evaluation()
    for i in range(30):
        skewed.add_shadow(_shadow(f"b{i}", "setosa", "setosa"))
    psi = skewed.readings()[1].class_psi
    assert psi is not None
    assert psi > 1.0
