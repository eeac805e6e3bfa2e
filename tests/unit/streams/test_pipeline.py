"""A worker's batch handling without Faust: score, join, watch for drift, count."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest

from irisflow.estimation import CV_ACCURACY
from irisflow.registry import deserialize_model
from irisflow.schemas import (
    Calibration,
    DeadLetter,
    DriftEvent,
    Feedback,
    LabeledSample,
    Prediction,
    PredictionRequest,
)
from irisflow.settings import Settings
from irisflow.topics import Incoming, Outgoing
from streams.intake import LiveModel
from streams.metrics import WorkerMetrics
from streams.model_updates import ModelHolder
from streams.pipeline import Pipeline
from tests.conftest import SettingsFactory
from tests.factories import IRIS_FEATURES, SETOSA, VIRGINICA, iris_xy, model_update

CHANGELOG = "join-changelog"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _live(version: int) -> LiveModel:
    update = model_update(version)
    return LiveModel(update.metadata(), deserialize_model(update.artifact, sha256=update.sha256))


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(**{"streams.join_window_seconds": 60, "drift.cooldown_seconds": 600})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pipeline(settings: Settings, clock: Clock) -> Pipeline:
    holder = ModelHolder()
    holder.current = _live(1)
    return Pipeline(
        settings,
        holder=holder,
        metrics=WorkerMetrics.create(),
        join_data={},
        changelog_topic=CHANGELOG,
        clock=clock,
        monotonic=clock,
    )


def _request(rid: str, features: dict[str, float], partition: int = 0) -> Incoming:
    raw = PredictionRequest(request_id=rid, features=features).to_bytes()
    return Incoming(value=raw, key=rid.encode(), partition=partition, offset=0)


def _feedback(rid: str, label: str, partition: int = 0) -> Incoming:
    raw = Feedback(request_id=rid, label=label).to_bytes()
    return Incoming(value=raw, key=rid.encode(), partition=partition, offset=5)


def _on(out: list[Outgoing], topic: str) -> list[Outgoing]:
    return [o for o in out if o.topic == topic]


def _sample(pipeline: Pipeline, name: str, labels: dict[str, str]) -> float | None:
    return pipeline.metrics.registry.get_sample_value(name, labels)


def test_a_scored_batch_answers_every_request_and_remembers_it_for_the_join(
    pipeline: Pipeline,
) -> None:
    topics = pipeline.topics
    out = pipeline.score([_request("a", SETOSA, 1), _request("b", VIRGINICA, 2)])
    answers = [Prediction.from_bytes(o.value) for o in _on(out, topics.predictions)]
    assert {a.request_id: a.label for a in answers} == {"a": "setosa", "b": "virginica"}
    assert {(o.key, o.partition) for o in _on(out, CHANGELOG)} == {(b"a", 1), (b"b", 2)}
    labels = {"model_version": "1", "label": "setosa"}
    assert _sample(pipeline, "irisflow_predictions_total", labels) == 1.0
    assert _sample(pipeline, "irisflow_join_entries", {}) == 2.0


def test_feedback_joins_into_a_labeled_sample_and_updates_live_accuracy(
    pipeline: Pipeline,
) -> None:
    pipeline.score([_request("a", SETOSA, 1), _request("b", VIRGINICA, 1)])
    out = pipeline.feedback([_feedback("a", "setosa", 1), _feedback("b", "versicolor", 1)])
    samples = [LabeledSample.from_bytes(o.value) for o in _on(out, pipeline.topics.labeled)]
    assert {(s.request_id, s.true_label, s.predicted_label) for s in samples} == {
        ("a", "setosa", "setosa"),
        ("b", "versicolor", "virginica"),
    }
    assert all(o.partition == 1 for o in _on(out, pipeline.topics.labeled))
    assert _sample(pipeline, "irisflow_live_accuracy", {"model_version": "1"}) == 0.5
    assert _sample(pipeline, "irisflow_feedback_total", {"outcome": "joined"}) == 2.0


def test_unparseable_feedback_is_dead_lettered_with_its_reason(pipeline: Pipeline) -> None:
    out = pipeline.feedback([Incoming(value=b"nope", key=b"k", partition=0, offset=1)])
    (letter,) = [DeadLetter.from_bytes(o.value) for o in _on(out, pipeline.topics.dead_letters)]
    assert letter.source_topic == pipeline.topics.feedback
    assert letter.original == b"nope"
    assert letter.reason == "undecodable"
    labels = {
        "topic": pipeline.topics.feedback,
        "reason": "undecodable",
        "consumer": "streams.join",
    }
    assert _sample(pipeline, "irisflow_dead_letters_total", labels) == 1.0


def test_feedback_without_a_prediction_is_dead_lettered_after_the_window(
    pipeline: Pipeline, clock: Clock
) -> None:
    pipeline.feedback([_feedback("ghost", "setosa", 0)])
    assert not _on(pipeline.sweep(owned={0}), pipeline.topics.dead_letters)
    clock.now += 61
    out = pipeline.sweep(owned={0})
    (letter,) = [DeadLetter.from_bytes(o.value) for o in _on(out, pipeline.topics.dead_letters)]
    assert "no prediction within 60s" in letter.error
    assert [(o.key, o.value) for o in _on(out, CHANGELOG)] == [(b"ghost", None)]
    labels = {
        "topic": pipeline.topics.feedback,
        "reason": "unmatched_feedback",
        "consumer": "streams.join",
    }
    assert _sample(pipeline, "irisflow_dead_letters_total", labels) == 1.0


def _rows(rng: np.random.Generator, count: int, shift: float = 0.0) -> list[Incoming]:
    x, _ = iris_xy()
    records = []
    for i in rng.integers(len(x), size=count):
        features = dict(zip(IRIS_FEATURES, x[i].tolist(), strict=True))
        features["sepal_width"] += shift
        records.append(_request(f"r{rng.integers(1 << 40)}", features))
    return records


def test_drift_in_one_feature_sends_a_drift_event_naming_that_feature(pipeline: Pipeline) -> None:
    rng = np.random.default_rng(0)
    quiet = [o for _ in range(20) for o in pipeline.score(_rows(rng, 50))]
    assert not _on(quiet, pipeline.topics.drift_events)
    loud = [o for _ in range(10) for o in pipeline.score(_rows(rng, 50, shift=1.0))]
    events = [DriftEvent.from_bytes(o.value) for o in _on(loud, pipeline.topics.drift_events)]
    assert [(e.feature, e.detector, e.model_version) for e in events] == [
        ("sepal_width", "adwin", 1)
    ]
    assert _on(loud, pipeline.topics.drift_events)[0].key == b"sepal_width/adwin"
    labels = {"feature": "sepal_width", "detector": "adwin"}
    assert _sample(pipeline, "irisflow_drift_alarms_total", labels) == 1.0
    assert (_sample(pipeline, "irisflow_drift_statistic", labels) or 0.0) > 1.0


def test_a_new_model_version_starts_its_detectors_afresh(pipeline: Pipeline) -> None:
    rng = np.random.default_rng(1)
    pipeline.score(_rows(rng, 50))
    first = pipeline.monitor
    pipeline.holder.current = _live(2)
    pipeline.score(_rows(rng, 50))
    assert first is not None
    assert pipeline.monitor is not None
    assert (first.version, pipeline.monitor.version) == (1, 2)
    assert pipeline.monitor.features[0][1][0].window == 50


def test_feedback_with_a_nan_timestamp_costs_a_dead_letter_not_the_worker(
    pipeline: Pipeline,
) -> None:
    """The incident behind issue 10: this record, then a request with its id, killed a worker."""
    poison = b'{"request_id":"victim-1","label":"setosa","labeled_at":NaN}'
    out = pipeline.feedback([Incoming(value=poison, key=b"victim-1", partition=0, offset=3)])
    (letter,) = [DeadLetter.from_bytes(o.value) for o in _on(out, pipeline.topics.dead_letters)]
    assert (letter.original, letter.offset, letter.consumer) == (poison, 3, "streams.join")
    out = pipeline.score([_request("victim-1", SETOSA)])
    (answer,) = [Prediction.from_bytes(o.value) for o in _on(out, pipeline.topics.predictions)]
    assert answer.label == "setosa"
    assert not _on(out, pipeline.topics.labeled)


def test_a_join_entry_left_by_an_older_worker_cannot_fail_the_request_that_meets_it(
    pipeline: Pipeline,
) -> None:
    """A changelog entry written before the fix (NaN stored as null) is recovered into the
    table; the request that meets it is still answered, the entry goes with a dead letter."""
    pipeline.join._data[b"victim-2"] = (
        b'{"k":"feedback","p":0,"o":7,"y":"setosa","at":null,"raw":"{}","t":999.0}'
    )
    out = pipeline.score([_request("victim-2", SETOSA), _request("bystander", VIRGINICA)])
    answers = {
        a.request_id: a.label
        for a in (Prediction.from_bytes(o.value) for o in _on(out, pipeline.topics.predictions))
    }
    assert answers == {"victim-2": "setosa", "bystander": "virginica"}
    (letter,) = [DeadLetter.from_bytes(o.value) for o in _on(out, pipeline.topics.dead_letters)]
    assert (letter.reason, letter.consumer) == ("processing_failed", "streams.join")
    assert b"victim-2" not in pipeline.join._data
    assert (b"victim-2", None) in [(o.key, o.value) for o in _on(out, CHANGELOG)]


def test_one_feedback_whose_handling_raises_does_not_cost_the_rest_of_its_batch(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline.score([_request("a", SETOSA), _request("b", VIRGINICA)])
    real = pipeline.join.on_feedback

    def explode_on_a(feedback: Feedback, **kwargs: object) -> object:
        if feedback.request_id == "a":
            raise RuntimeError("boom")
        return real(feedback, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline.join, "on_feedback", explode_on_a)
    out = pipeline.feedback([_feedback("a", "setosa"), _feedback("b", "virginica")])
    (letter,) = [DeadLetter.from_bytes(o.value) for o in _on(out, pipeline.topics.dead_letters)]
    assert letter.reason == "processing_failed"
    assert "boom" in letter.error
    (sample,) = [LabeledSample.from_bytes(o.value) for o in _on(out, pipeline.topics.labeled)]
    assert sample.request_id == "b"


def test_feedback_keyed_by_another_id_is_refused_so_it_cannot_join_in_the_wrong_partition(
    pipeline: Pipeline,
) -> None:
    raw = Feedback(request_id="a", label="setosa").to_bytes()
    out = pipeline.feedback([Incoming(value=raw, key=b"not-a", partition=0, offset=1)])
    (letter,) = [DeadLetter.from_bytes(o.value) for o in _on(out, pipeline.topics.dead_letters)]
    assert letter.reason == "bad_key"


def test_if_handling_a_batch_raises_only_the_records_that_still_raise_alone_are_lost(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug, not bad input: one record makes the scorer raise. The others are answered."""
    import streams.pipeline as module

    real = module.score_batch

    def fragile(model: object, records: list[Incoming], **kwargs: object) -> object:
        if any(r.key == b"cursed" for r in records):
            raise RuntimeError("bug")
        return real(model, records, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "score_batch", fragile)
    out = pipeline.score([_request("a", SETOSA), _request("cursed", SETOSA), _request("b", SETOSA)])
    answers = {
        a.request_id: a
        for a in (Prediction.from_bytes(o.value) for o in _on(out, pipeline.topics.predictions))
    }
    assert (answers["a"].label, answers["b"].label) == ("setosa", "setosa")
    assert answers["cursed"].error_code == "invalid_request"
    (letter,) = [DeadLetter.from_bytes(o.value) for o in _on(out, pipeline.topics.dead_letters)]
    assert (letter.reason, letter.consumer) == ("processing_failed", "streams.scoring")


def test_feedback_naming_a_class_the_model_does_not_know_is_refused_before_the_join(
    pipeline: Pipeline,
) -> None:
    """A "banana" in the trainer's window would fail the next retraining for everyone."""
    pipeline.score([_request("a", SETOSA)])
    out = pipeline.feedback([_feedback("a", "banana")])
    (letter,) = [DeadLetter.from_bytes(o.value) for o in _on(out, pipeline.topics.dead_letters)]
    assert letter.reason == "schema_mismatch"
    assert "banana" in letter.error
    assert not _on(out, pipeline.topics.labeled)


def test_a_hostile_row_in_a_batch_costs_no_second_predict_proba_call(pipeline: Pipeline) -> None:
    model = pipeline.holder.current
    assert model is not None
    far = {**SETOSA, "sepal_length": 1e39}
    with patch.object(model.estimator, "predict_proba", wraps=model.estimator.predict_proba) as spy:
        out = pipeline.score(
            [_request("a", SETOSA), _request("far", far), _request("b", VIRGINICA)]
        )
    assert spy.call_count == 1
    answers = {
        a.request_id: (a.label, a.error_code)
        for a in (Prediction.from_bytes(o.value) for o in _on(out, pipeline.topics.predictions))
    }
    assert answers == {
        "a": ("setosa", None),
        "far": (None, "out_of_domain"),
        "b": ("virginica", None),
    }


def _calibrated_live(version: int, *, cv_accuracy: float, flat: float | None) -> LiveModel:
    """A live version with a cross-validated accuracy and, with ``flat``, a calibration that
    says every row is right with that probability whatever its confidence."""
    live = _live(version)
    calibration = (
        None
        if flat is None
        else Calibration(confidence=[0.0, 1.0], accuracy=[flat, flat], samples=100)
    )
    metadata = live.metadata.model_copy(
        update={"metrics": {CV_ACCURACY: cv_accuracy}, "calibration": calibration}
    )
    return LiveModel(metadata, live.estimator)


def test_a_falling_label_free_estimate_is_a_cbpe_drift_event_and_a_gauge(
    make_settings: SettingsFactory, clock: Clock
) -> None:
    settings = make_settings(**{"drift.estimate_window": 50, "drift.cooldown_seconds": 600})
    holder = ModelHolder()
    holder.current = _calibrated_live(1, cv_accuracy=0.6, flat=None)
    pipeline = Pipeline(
        settings,
        holder=holder,
        metrics=WorkerMetrics.create(),
        join_data={},
        changelog_topic=CHANGELOG,
        clock=clock,
        monotonic=clock,
    )
    rng = np.random.default_rng(3)
    quiet = [o for _ in range(3) for o in pipeline.score(_rows(rng, 50))]
    assert not [e for e in _on(quiet, pipeline.topics.drift_events) if b"cbpe" in (e.key or b"")]
    raw = _sample(pipeline, "irisflow_estimated_accuracy", {"model_version": "1"})
    assert raw is not None
    assert raw > 0.6
    holder.current = _calibrated_live(2, cv_accuracy=0.99, flat=0.5)
    loud = [o for _ in range(2) for o in pipeline.score(_rows(rng, 50))]
    events = [DriftEvent.from_bytes(o.value) for o in _on(loud, pipeline.topics.drift_events)]
    cbpe = [e for e in events if e.detector == "cbpe"]
    assert [(e.feature, e.model_version) for e in cbpe] == [("accuracy", 2)]
    assert cbpe[0].statistic == pytest.approx(0.5)
    assert cbpe[0].threshold == pytest.approx(0.99 - settings.drift.estimated_accuracy_drop)
    assert _sample(pipeline, "irisflow_estimated_accuracy", {"model_version": "2"}) == 0.5
    assert _sample(pipeline, "irisflow_estimated_accuracy", {"model_version": "1"}) is None
