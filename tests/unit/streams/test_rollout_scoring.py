"""A worker's batches during a rollout: routed by request id, paired with the other version.

Two real versions of the Iris model are live in one pipeline (champion 1, candidate 2). Which
requests a share takes is computed here with :func:`irisflow.rollout.point_of`, the function
every worker and gateway routes by, so the tests know in advance who must answer what.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest

from irisflow.registry import deserialize_model
from irisflow.rollout import point_of
from irisflow.schemas import (
    BatchPrediction,
    BatchPredictionRequest,
    DeadLetter,
    Feedback,
    LabeledSample,
    MatrixPrediction,
    MatrixPredictionRequest,
    ModelUpdate,
    Prediction,
    PredictionRequest,
    RolloutStage,
    RolloutState,
    ShadowPrediction,
)
from irisflow.settings import Settings
from irisflow.topics import Incoming, Outgoing
from irisflow.tracing import HEDGE_OF
from streams.intake import LiveModel
from streams.metrics import WorkerMetrics
from streams.model_updates import ModelHolder, Rollout
from streams.pipeline import Pipeline
from tests.conftest import SettingsFactory
from tests.factories import IRIS_FEATURES, SETOSA, VIRGINICA, model_update

CHANGELOG = "join-changelog"
ROLLOUT = "rollout-7"
SHARE = 0.5


class Counting:
    """An estimator that counts its ``predict_proba`` calls (and can be told to raise)."""

    def __init__(self, estimator: Any, *, raises: bool = False) -> None:
        self.estimator = estimator
        self.classes_ = estimator.classes_
        self.calls: list[int] = []
        self.raises = raises

    def predict_proba(self, matrix: np.ndarray) -> Any:
        self.calls.append(len(matrix))
        if self.raises:
            raise RuntimeError("candidate exploded")
        return self.estimator.predict_proba(matrix)


@cache
def _update(version: int) -> ModelUpdate:
    return model_update(version)


def _live(version: int, *, raises: bool = False, max_reference_std: float | None = None) -> Any:
    update = _update(version)
    estimator = Counting(deserialize_model(update.artifact, sha256=update.sha256), raises=raises)
    return LiveModel(update.metadata(), estimator, max_reference_std=max_reference_std)


def _state(stage: RolloutStage, share: float = SHARE) -> RolloutState:
    return RolloutState(
        model_name="iris",
        rollout_id=ROLLOUT,
        stage=stage,
        candidate_version=2,
        champion_version=1,
        share=share,
        candidate=_update(2),
    )


def _ids(count: int, *, inside: bool, share: float = SHARE) -> list[str]:
    """``count`` request ids whose point in this rollout is inside (or outside) ``share``."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        rid = f"req-{n}"
        if (point_of(ROLLOUT, rid) < share) == inside:
            found.append(rid)
        n += 1
    return found


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(**{"streams.join_window_seconds": 60, "drift.window": 50})


def _pipeline(
    settings: Settings, candidate: Any = None, stage: RolloutStage | None = None
) -> Pipeline:
    holder = ModelHolder()
    holder.current = _live(1)
    if stage is not None:
        model = candidate if candidate is not None else _live(2)
        holder.rollout = Rollout(_state(stage), model, _update(2).sha256)
    return Pipeline(
        settings,
        holder=holder,
        metrics=WorkerMetrics.create(),
        join_data={},
        changelog_topic=CHANGELOG,
        clock=lambda: 1000.0,
        monotonic=lambda: 1000.0,
    )


def _request(rid: str, features: dict[str, float] = SETOSA, partition: int = 0) -> Incoming:
    raw = PredictionRequest(request_id=rid, features=features).to_bytes()
    return Incoming(value=raw, key=rid.encode(), partition=partition, offset=0)


def _on(out: list[Outgoing], topic: str) -> list[Outgoing]:
    return [o for o in out if o.topic == topic]


def _answers(pipeline: Pipeline, out: list[Outgoing]) -> dict[str, Prediction]:
    answers = [Prediction.from_bytes(o.value) for o in _on(out, pipeline.topics.predictions)]
    by_id = {a.request_id: a for a in answers}
    assert len(by_id) == len(answers), "one answer per request"
    return by_id


def _shadows(pipeline: Pipeline, out: list[Outgoing]) -> list[ShadowPrediction]:
    return [
        ShadowPrediction.from_bytes(o.value) for o in _on(out, pipeline.topics.shadow_predictions)
    ]


def _metric(pipeline: Pipeline, name: str, labels: dict[str, str] | None = None) -> float | None:
    return pipeline.metrics.registry.get_sample_value(name, labels or {})


def test_in_shadow_the_champion_answers_everyone_and_each_shadowed_request_gets_a_shadow_record(
    settings: Settings,
) -> None:
    pipeline = _pipeline(settings, stage=RolloutStage.SHADOW)
    inside, outside = _ids(6, inside=True), _ids(6, inside=False)
    records = [_request(rid, partition=i % 3) for i, rid in enumerate(inside + outside)]
    out = pipeline.score(records)

    answers = _answers(pipeline, out)
    assert set(answers) == set(inside + outside)
    assert {a.model_version for a in answers.values()} == {1}
    assert {a.label for a in answers.values()} == {"setosa"}
    shadows = {s.request_id: s for s in _shadows(pipeline, out)}
    assert set(shadows) == set(inside)
    for shadow in shadows.values():
        assert (shadow.rollout_id, shadow.mode) == (ROLLOUT, "shadow")
        assert (shadow.version, shadow.served_version) == (2, 1)
        assert shadow.labels == shadow.served_labels == ["setosa"]
        assert len(shadow.confidences) == len(shadow.served_confidences) == 1
        assert 0.5 < shadow.confidences[0] <= 1.0
        assert shadow.error is None
        assert shadow.served_error is None
        assert shadow.seconds > 0
        assert shadow.served_seconds > 0
    partition_of = {r.key: r.partition for r in records}
    for record in _on(out, pipeline.topics.shadow_predictions):
        assert record.partition == partition_of[record.key], "co-partitioned with the request"
    labels = {"version": "2", "mode": "shadow"}
    assert _metric(pipeline, "irisflow_shadow_scored_total", labels) == len(inside)
    assert not _on(out, pipeline.topics.dead_letters)


def test_in_shadow_each_version_scores_with_one_predict_proba_call(settings: Settings) -> None:
    pipeline = _pipeline(settings, stage=RolloutStage.SHADOW)
    rollout = pipeline.holder.rollout
    champion = pipeline.holder.current
    assert rollout is not None
    assert champion is not None
    inside, outside = _ids(5, inside=True), _ids(5, inside=False)
    pipeline.score([_request(rid) for rid in inside + outside])
    assert champion.estimator.calls == [10]
    assert rollout.candidate.estimator.calls == [5]


def test_a_canary_share_is_answered_by_the_candidate_and_paired_with_the_champion(
    settings: Settings,
) -> None:
    pipeline = _pipeline(settings, stage=RolloutStage.CANARY)
    rollout = pipeline.holder.rollout
    champion = pipeline.holder.current
    assert rollout is not None
    assert champion is not None
    inside, outside = _ids(4, inside=True), _ids(4, inside=False)
    out = pipeline.score([_request(rid, VIRGINICA) for rid in inside + outside])

    answers = _answers(pipeline, out)
    assert {rid: answers[rid].model_version for rid in inside} == dict.fromkeys(inside, 2)
    assert {rid: answers[rid].model_version for rid in outside} == dict.fromkeys(outside, 1)
    assert {a.label for a in answers.values()} == {"virginica"}
    shadows = {s.request_id: s for s in _shadows(pipeline, out)}
    assert set(shadows) == set(inside)
    assert {(s.mode, s.version, s.served_version) for s in shadows.values()} == {("canary", 1, 2)}
    assert rollout.candidate.estimator.calls == [4], "the canary group in one call"
    assert champion.estimator.calls == [4, 4], "its own group, then the paired requests"
    labels = {"version": "1", "mode": "canary"}
    assert _metric(pipeline, "irisflow_shadow_scored_total", labels) == len(inside)
    assert (
        _metric(
            pipeline, "irisflow_predictions_total", {"model_version": "2", "label": "virginica"}
        )
        == 4
    )


def test_a_retried_request_id_meets_the_same_version_again_even_when_the_share_grows(
    settings: Settings,
) -> None:
    pipeline = _pipeline(settings, stage=RolloutStage.CANARY)
    ids = _ids(5, inside=True, share=0.3) + _ids(5, inside=False, share=0.9)
    first = _answers(pipeline, pipeline.score([_request(rid) for rid in ids]))
    again = _answers(pipeline, pipeline.score([_request(rid) for rid in reversed(ids)]))
    assert {rid: a.model_version for rid, a in first.items()} == {
        rid: a.model_version for rid, a in again.items()
    }
    rollout = pipeline.holder.rollout
    assert rollout is not None
    wider = rollout.state.model_copy(update={"share": 0.6})
    pipeline.holder.rollout = Rollout(wider, rollout.candidate, rollout.sha256)
    wide = _answers(pipeline, pipeline.score([_request(rid) for rid in ids]))
    on_candidate = {rid for rid, a in first.items() if a.model_version == 2}
    assert on_candidate <= {rid for rid, a in wide.items() if a.model_version == 2}


def test_batch_and_matrix_requests_are_routed_whole_to_one_version(settings: Settings) -> None:
    pipeline = _pipeline(settings, stage=RolloutStage.CANARY)
    (batch_id,) = _ids(1, inside=True)
    (matrix_id,) = _ids(1, inside=False)
    batch = BatchPredictionRequest(request_id=batch_id, instances=[SETOSA, VIRGINICA])
    rows = [[SETOSA[n] for n in IRIS_FEATURES], [VIRGINICA[n] for n in IRIS_FEATURES]]
    matrix = MatrixPredictionRequest(request_id=matrix_id, feature_names=IRIS_FEATURES, rows=rows)
    records = [
        Incoming(batch.to_bytes(), batch_id.encode(), 0, 1),
        Incoming(matrix.to_bytes(), matrix_id.encode(), 1, 2),
    ]
    out = pipeline.score(records)
    by_key = {o.key: o.value for o in _on(out, pipeline.topics.predictions)}
    batch_answer = BatchPrediction.from_bytes(by_key[batch_id.encode()])
    matrix_answer = MatrixPrediction.from_bytes(by_key[matrix_id.encode()])
    assert batch_answer.model_version == 2
    assert [p.label for p in batch_answer.predictions] == ["setosa", "virginica"]
    assert matrix_answer.model_version == 1
    (shadow,) = _shadows(pipeline, out)
    assert shadow.request_id == batch_id
    assert shadow.labels == shadow.served_labels == ["setosa", "virginica"]
    assert len(shadow.confidences) == 2


def test_a_request_the_candidate_refuses_in_shadow_is_still_answered_by_the_champion(
    settings: Settings,
) -> None:
    """The candidate takes a narrower domain: it refuses VIRGINICA, which only the shadow
    record may show (no error answer, no dead letter)."""
    narrow = _live(2, max_reference_std=0.5)
    pipeline = _pipeline(settings, candidate=narrow, stage=RolloutStage.SHADOW)
    (rid,) = _ids(1, inside=True)
    out = pipeline.score([_request(rid, VIRGINICA)])
    answer = _answers(pipeline, out)[rid]
    assert (answer.label, answer.model_version, answer.error) == ("virginica", 1, None)
    assert not _on(out, pipeline.topics.dead_letters)
    (shadow,) = _shadows(pipeline, out)
    assert shadow.labels == []
    assert shadow.error is not None
    assert "training standard deviations" in shadow.error
    assert shadow.served_labels == ["virginica"]
    assert shadow.served_error is None


def test_a_request_both_versions_refuse_is_refused_once_as_without_a_rollout_and_not_compared(
    settings: Settings,
) -> None:
    pipeline = _pipeline(settings, stage=RolloutStage.SHADOW)
    (rid,) = _ids(1, inside=True)
    out = pipeline.score([_request(rid, {"colour": 1.0})])
    answer = _answers(pipeline, out)[rid]
    assert answer.error_code == "schema_mismatch"
    (letter,) = [DeadLetter.from_bytes(o.value) for o in _on(out, pipeline.topics.dead_letters)]
    assert letter.reason == "schema_mismatch"
    assert _shadows(pipeline, out) == [], "refused by both: no version's error"


def test_a_candidate_that_raises_costs_only_its_shadow_records(settings: Settings) -> None:
    pipeline = _pipeline(settings, candidate=_live(2, raises=True), stage=RolloutStage.SHADOW)
    inside, outside = _ids(3, inside=True), _ids(3, inside=False)
    out = pipeline.score([_request(rid) for rid in inside + outside])
    answers = _answers(pipeline, out)
    assert {a.label for a in answers.values()} == {"setosa"}
    assert len(answers) == 6
    assert not _on(out, pipeline.topics.dead_letters)
    shadows = _shadows(pipeline, out)
    assert {s.request_id for s in shadows} == set(inside)
    assert all(s.error is not None and "candidate exploded" in s.error for s in shadows)


def test_an_undecodable_record_in_the_share_is_dead_lettered_once_and_not_compared(
    settings: Settings,
) -> None:
    pipeline = _pipeline(settings, stage=RolloutStage.SHADOW)
    (rid,) = _ids(1, inside=True)
    out = pipeline.score([Incoming(b"not json", rid.encode(), 0, 3)])
    assert len(_on(out, pipeline.topics.dead_letters)) == 1
    assert _answers(pipeline, out)[rid].error_code == "invalid_request"
    assert _shadows(pipeline, out) == []


def _hedged_copy(rid: str, partition: int) -> Incoming:
    raw = PredictionRequest(request_id=rid, features=SETOSA).to_bytes()
    return Incoming(raw, rid.encode(), partition, 9, headers=((HEDGE_OF, b"0"),))


@pytest.mark.parametrize("stage", [RolloutStage.SHADOW, RolloutStage.CANARY])
def test_a_hedged_copy_is_answered_by_the_same_version_but_makes_no_second_shadow_record(
    settings: Settings, stage: RolloutStage
) -> None:
    pipeline = _pipeline(settings, stage=stage)
    (rid,) = _ids(1, inside=True)
    together = pipeline.score([_request(rid, partition=0), _hedged_copy(rid, 2)])
    answers = _on(together, pipeline.topics.predictions)
    assert sorted(o.partition or 0 for o in answers) == [0, 2]
    versions = {Prediction.from_bytes(o.value).model_version for o in answers}
    assert versions == ({2} if stage == RolloutStage.CANARY else {1})
    assert len(_shadows(pipeline, together)) == 1
    alone = pipeline.score([_hedged_copy(rid, 2)])
    assert _shadows(pipeline, alone) == []
    mode = str(stage)
    version = "2" if stage == RolloutStage.SHADOW else "1"
    labels = {"version": version, "mode": mode}
    assert _metric(pipeline, "irisflow_shadow_scored_total", labels) == 1


@pytest.mark.parametrize(
    ("stage", "served", "shadow"), [(RolloutStage.SHADOW, 1, 2), (RolloutStage.CANARY, 2, 1)]
)
def test_the_labeled_sample_of_a_paired_request_carries_the_other_versions_label(
    settings: Settings, stage: RolloutStage, served: int, shadow: int
) -> None:
    pipeline = _pipeline(settings, stage=stage)
    (paired,) = _ids(1, inside=True)
    (alone,) = _ids(1, inside=False)
    pipeline.score([_request(paired, partition=1), _request(alone, partition=1)])
    feedback = [
        Incoming(Feedback(request_id=rid, label="setosa").to_bytes(), rid.encode(), 1, 4)
        for rid in (paired, alone)
    ]
    out = pipeline.feedback(feedback)
    samples = {
        s.request_id: s
        for s in (LabeledSample.from_bytes(o.value) for o in _on(out, pipeline.topics.labeled))
    }
    assert samples[paired].model_version == served
    assert (samples[paired].shadow_version, samples[paired].shadow_label) == (shadow, "setosa")
    assert samples[alone].model_version == 1
    assert (samples[alone].shadow_version, samples[alone].shadow_label) == (None, None)


def test_drift_monitors_watch_only_the_rows_the_champion_answered(settings: Settings) -> None:
    pipeline = _pipeline(settings, stage=RolloutStage.CANARY)
    inside, outside = _ids(3, inside=True), _ids(2, inside=False)
    seen: list[int] = []
    with patch("streams.monitor.DriftMonitor.update_features", autospec=True) as update:

        def update_features(monitor: object, rows: np.ndarray) -> list[object]:
            seen.append(len(rows))
            return []

        update.side_effect = update_features
        pipeline.score([_request(rid) for rid in inside + outside])
    assert seen == [2]


@pytest.mark.parametrize("rollout", [False, True])
def test_without_a_loaded_candidate_no_request_id_is_hashed_and_nothing_is_paired(
    settings: Settings, rollout: bool
) -> None:
    """The common path (no rollout, or a candidate that was refused) costs what it did."""
    pipeline = _pipeline(settings)
    if rollout:
        pipeline.holder.rollout_state = _state(RolloutStage.CANARY)
    with patch("irisflow.rollout.point_of", side_effect=AssertionError("hashed")):
        out = pipeline.score([_request(rid) for rid in _ids(4, inside=True)])
    assert {a.model_version for a in _answers(pipeline, out).values()} == {1}
    assert _shadows(pipeline, out) == []


def test_a_candidate_that_went_live_is_not_paired_with_itself(settings: Settings) -> None:
    pipeline = _pipeline(settings, stage=RolloutStage.CANARY)
    pipeline.holder.current = _live(2)
    out = pipeline.score([_request(rid) for rid in _ids(3, inside=True)])
    assert {a.model_version for a in _answers(pipeline, out).values()} == {2}
    assert _shadows(pipeline, out) == []
