"""The retraining service's input and failure handling, without Kafka: one bad record or one
failed retraining costs dead letters and a recorded decision, never the service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import numpy as np
import orjson
import pytest

from irisflow.schemas import DeadLetter, DriftEvent, LabeledSample, RetrainRequest
from irisflow.settings import Settings
from irisflow.topics import Incoming, Outgoing
from tests.conftest import SettingsFactory
from tests.factories import IRIS_FEATURES, SETOSA, iris_xy, model_update
from trainer.data import Dataset
from trainer.service import RetrainingService
from trainer.training import TrainingOutcome, train_on

FAST = {"logistic_regression": {"max_iter": 300}, "naive_bayes": {}}


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(
        **{"training.candidates": FAST, "training.cv_folds": 3, "retraining.min_new_labels": 10}
    )


def _labeled(settings: Settings, offset: int, **features: float) -> Incoming:
    x, y = iris_xy()
    row = (offset * 7) % len(y)
    values = dict(zip(IRIS_FEATURES, map(float, x[row]), strict=True)) | features
    sample = LabeledSample(request_id=f"r{offset}", features=values, true_label=str(y[row]))
    return Incoming(sample.to_bytes(), b"r%d" % offset, 0, offset, settings.kafka.topics.labeled)


def _letter(record: Outgoing) -> DeadLetter:
    assert record.value is not None
    return DeadLetter.from_bytes(record.value)


def _headers(record: Outgoing) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def _dead_letter_count(service: RetrainingService, topic: str, reason: str) -> float:
    value = service.metrics.registry.get_sample_value(
        "irisflow_dead_letters_total", {"topic": topic, "reason": reason, "consumer": "trainer"}
    )
    return value or 0.0


def test_a_labeled_sample_beyond_float32_is_refused_out_of_domain_and_never_trained_on(
    settings: Settings,
) -> None:
    service = RetrainingService(settings)
    record = _labeled(settings, 3, sepal_length=1e39)

    assert service.take(record) is None

    (letter,) = service.drain_letters()
    assert letter.topic == settings.kafka.topics.dead_letters
    assert letter.key == b"r3"
    body = _letter(letter)
    assert body.reason == "out_of_domain"
    assert body.consumer == "trainer"
    assert body.original == record.value
    assert (body.source_topic, body.partition, body.offset) == (record.topic, 0, 3)
    assert "sepal_length" in body.error
    assert _headers(letter)["irisflow-reason"] == "out_of_domain"
    assert _dead_letter_count(service, record.topic, "out_of_domain") == 1
    assert service.metrics.registry.get_sample_value("irisflow_trainer_pending_labels") in (
        None,
        0.0,
    )


def test_after_a_refused_outlier_ordinary_labels_retrain_as_before(settings: Settings) -> None:
    service = RetrainingService(settings)
    asyncio.run(service._on_model(model_update(1)))  # a champion: the gate decides, no publish
    service.take(_labeled(settings, 0, sepal_length=1e39))
    for offset in range(1, 13):
        assert service.take(_labeled(settings, offset)) is None

    decision = asyncio.run(service.retrain("labels"))

    assert decision.outcome == "rejected", decision.error  # too few held-out labels to replace
    assert decision.algorithm in FAST
    assert decision.gate.holdout_size == round(12 * settings.retraining.holdout_fraction)


@pytest.mark.parametrize(
    ("features", "reason"),
    [
        ({"sepal_length": 5.0, "sepal_width": 3.0, "petal_length": 1.0}, "schema_mismatch"),
        ({**SETOSA, "colour": 1.0}, "schema_mismatch"),
        ({**SETOSA, "petal_width": 1e6}, "out_of_domain"),
    ],
)
def test_a_labeled_sample_that_does_not_fit_the_base_data_is_refused(
    settings: Settings, features: dict[str, float], reason: str
) -> None:
    service = RetrainingService(settings)
    raw = orjson.dumps({"request_id": "q", "features": features, "true_label": "setosa"})
    service.take(Incoming(raw, b"q", 1, 9, settings.kafka.topics.labeled))
    (letter,) = service.drain_letters()
    assert _letter(letter).reason == reason


def test_labeled_samples_are_checked_against_the_champion_once_one_is_live(
    settings: Settings,
) -> None:
    service = RetrainingService(settings)
    champion = model_update(1)
    stats = champion.reference_stats["petal_length"]
    far = stats.mean + 50 * stats.std  # inside the base limit (100 std), outside a tighter one
    narrowed = {
        **champion.reference_stats,
        "petal_length": stats.model_copy(update={"std": stats.std / 10}),
    }
    asyncio.run(service._on_model(champion.model_copy(update={"reference_stats": narrowed})))

    service.take(_labeled(settings, 1, petal_length=far))

    (letter,) = service.drain_letters()
    assert _letter(letter).reason == "out_of_domain"
    assert "petal_length" in _letter(letter).error


def _record(settings: Settings, topic: str, value: bytes | None, key: bytes | None) -> Incoming:
    return Incoming(value, key, 0, 5, topic)


def test_undecodable_invalid_and_mis_keyed_records_are_dead_lettered_with_their_reason(
    settings: Settings,
) -> None:
    topics = settings.kafka.topics
    request = RetrainRequest(model_name=settings.model_name, reason="test")
    drift = DriftEvent(
        model_name=settings.model_name,
        feature="petal_length",
        detector="adwin",
        statistic=1.0,
        threshold=0.5,
        window=10,
    )
    cases = [
        (topics.labeled, b"\xff\xfe not json", b"k", "undecodable"),
        (topics.labeled, None, b"k", "undecodable"),
        (topics.labeled, b'{"request_id": "a", "features": {}, "true_label": 3}', b"a", "invalid"),
        (topics.labeled, _labeled(settings, 1).value, b"someone-else", "bad_key"),
        (topics.retrain_requests, request.to_bytes(), None, "bad_key"),
        (topics.drift_events, drift.to_bytes(), b"petal_length", "bad_key"),
        (topics.drift_events, b'{"model_name": "iris", "statistic": NaN}', b"x", "undecodable"),
    ]
    service = RetrainingService(settings)

    triggers = [service.take(_record(settings, t, v, k)) for t, v, k, _ in cases]

    assert triggers == [None] * len(cases)
    assert [_letter(letter).reason for letter in service.drain_letters()] == [
        reason for *_, reason in cases
    ]
    assert service.drain_letters() == []


def test_keyed_requests_and_drift_alarms_still_trigger_a_retraining(settings: Settings) -> None:
    topics = settings.kafka.topics
    name = settings.model_name
    request = RetrainRequest(model_name=name, reason="test")
    drift = DriftEvent(
        model_name=name,
        feature="petal_length",
        detector="adwin",
        statistic=1.0,
        threshold=0.5,
        window=10,
    )
    service = RetrainingService(settings)
    assert service.take(_record(settings, topics.retrain_requests, request.to_bytes(), b"iris"))
    assert service.take(
        _record(settings, topics.drift_events, drift.to_bytes(), b"petal_length/adwin")
    )
    assert service.drain_letters() == []


def test_a_record_whose_handling_raises_is_dead_lettered_processing_failed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = RetrainingService(settings)

    def broken(record: Incoming) -> LabeledSample:
        raise RuntimeError("the window is on fire")

    monkeypatch.setattr(service._input, "decode", broken)
    assert service.take(_labeled(settings, 2)) is None
    (letter,) = service.drain_letters()
    assert _letter(letter).reason == "processing_failed"
    assert "the window is on fire" in _letter(letter).error
    assert service.take(_labeled(settings, 3)) is None  # and it goes on


def _failing(message: str) -> Callable[[Dataset], TrainingOutcome]:
    def train(data: Dataset) -> TrainingOutcome:
        raise ValueError(message)

    return train


def test_a_failing_retraining_is_a_failed_decision_that_dead_letters_its_new_labels(
    settings: Settings,
) -> None:
    service = RetrainingService(settings, train=_failing("cannot learn this"))
    records = [_labeled(settings, offset) for offset in range(12)]
    for record in records:
        service.take(record)

    decision = asyncio.run(service.retrain("labels"))

    assert decision.outcome == "failed"
    assert decision.error == "ValueError: cannot learn this"
    assert decision.version is None
    assert decision.dead_lettered == 12
    letters = [_letter(letter) for letter in service.drain_letters()]
    assert [letter.reason for letter in letters] == ["training_failed"] * 12
    assert [letter.original for letter in letters] == [record.value for record in records]
    assert all("cannot learn this" in letter.error for letter in letters)
    registry = service.metrics.registry
    assert (
        registry.get_sample_value(
            "irisflow_retrains_total", {"trigger": "labels", "outcome": "failed"}
        )
        == 1
    )
    assert registry.get_sample_value("irisflow_trainer_pending_labels") == 0
    entry = json.loads((settings.registry_dir / "decisions.jsonl").read_text().splitlines()[-1])
    assert entry["outcome"] == "failed"
    assert entry["error"] == "ValueError: cannot learn this"
    assert entry["dead_lettered"] == 12


def test_after_a_failed_retraining_only_new_labels_are_trained_on(settings: Settings) -> None:
    seen: list[int] = []

    def counting(data: Dataset) -> TrainingOutcome:
        seen.append(data.n_samples)
        if len(seen) == 1:
            raise ValueError("first attempt fails")
        return train_on(data, settings.training, show_progress=False)

    service = RetrainingService(settings, train=counting)
    asyncio.run(service._on_model(model_update(1)))
    for offset in range(12):
        service.take(_labeled(settings, offset))
    assert asyncio.run(service.retrain("labels")).outcome == "failed"
    for offset in range(12, 24):
        service.take(_labeled(settings, offset))

    decision = asyncio.run(service.retrain("labels"))

    assert decision.outcome == "rejected", decision.error
    assert decision.error is None
    base = 150
    held = round(12 * settings.retraining.holdout_fraction)
    assert seen == [base + 12 - held, base + 12 - held]  # the failed 12 are gone, not added again


def test_a_champion_that_breaks_its_contract_is_not_used_by_the_gate(settings: Settings) -> None:
    service = RetrainingService(settings)
    broken = model_update(1).model_copy(update={"class_labels": ["a", "b", "c"]})
    assert asyncio.run(service._on_model(broken)) is False
    assert asyncio.run(service._on_model(model_update(2))) is True
    assert np.isclose(
        service.metrics.registry.get_sample_value("irisflow_trainer_live_model_version") or 0, 2
    )
