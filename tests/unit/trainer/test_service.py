"""The retraining service's input and failure handling, without Kafka: one bad record or one
failed retraining costs dead letters and a recorded decision, never the service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from irisflow.estimation import CV_ACCURACY
from irisflow.registry import LocalRegistry
from irisflow.schemas import DeadLetter, DriftEvent, LabeledSample, ModelUpdate, RetrainRequest
from irisflow.settings import Settings
from irisflow.topics import Incoming, Outgoing
from tests.conftest import SettingsFactory
from tests.factories import IRIS_FEATURES, SETOSA, forged_update, iris_xy, model_update
from trainer.data import Dataset
from trainer.inputs import Labeled, Window, unlearnable
from trainer.publish import build_update
from trainer.service import ModelFeedStopped, RetrainingService
from trainer.training import TrainingOutcome, train_on

FAST = {"logistic_regression": {"max_iter": 300}, "naive_bayes": {}}
_FAST_TRAINING = {"training.candidates": FAST, "training.cv_folds": 3}


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
    entry = LocalRegistry(settings.registry_dir).decisions()[-1]
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


# --------------------------------------------------------------- labels the model cannot learn


def _labelled_as(settings: Settings, offset: int, label: str) -> Incoming:
    sample = LabeledSample(request_id=f"r{offset}", features=SETOSA, true_label=label)
    return Incoming(sample.to_bytes(), b"r%d" % offset, 0, offset, settings.kafka.topics.labeled)


def test_a_label_that_is_no_class_of_the_base_data_is_refused_schema_mismatch(
    settings: Settings,
) -> None:
    service = RetrainingService(settings)
    record = _labelled_as(settings, 4, "banana")

    assert service.take(record) is None

    (letter,) = service.drain_letters()
    body = _letter(letter)
    assert body.reason == "schema_mismatch"
    assert body.original == record.value
    assert "true_label 'banana' is not one of the model's classes" in body.error
    assert "setosa, versicolor, virginica" in body.error
    assert len(service._window) == 0


def test_once_a_champion_is_live_labels_are_checked_against_its_classes(
    settings: Settings,
) -> None:
    service = RetrainingService(settings)
    assert asyncio.run(service._on_model(model_update(1)))
    service.take(_labelled_as(settings, 1, "banana"))
    service.take(_labelled_as(settings, 2, "setosa"))
    assert [_letter(letter).reason for letter in service.drain_letters()] == ["schema_mismatch"]
    assert len(service._window) == 1


def test_one_unknown_label_costs_one_dead_letter_not_every_pending_label(
    settings: Settings,
) -> None:
    service = RetrainingService(settings)
    asyncio.run(service._on_model(model_update(1)))
    service.take(_labelled_as(settings, 0, "banana"))
    for offset in range(1, 13):
        service.take(_labeled(settings, offset))

    decision = asyncio.run(service.retrain("labels"))

    assert decision.outcome == "rejected", decision.error
    assert decision.dead_lettered == 0
    letters = [_letter(letter) for letter in service.drain_letters()]
    assert [(letter.reason, letter.offset) for letter in letters] == [("schema_mismatch", 0)]


def test_samples_of_a_class_training_cannot_learn_are_left_out_and_only_they_dead_lettered(
    settings: Settings,
) -> None:
    """A champion may know a class the base data lacks; a few labels of it would fail every
    retraining's class-size check and, with it, every other pending label."""
    service = RetrainingService(settings)
    asyncio.run(service._on_model(model_update(1)))  # a champion: the gate decides, no publish
    service._input.classes = (*service._input.classes, "hybrid")
    hybrids = [_labelled_as(settings, offset, "hybrid") for offset in (12, 13)]
    for offset in range(12):
        service.take(_labeled(settings, offset))
    for record in hybrids:
        service.take(record)

    decision = asyncio.run(service.retrain("labels"))

    assert decision.outcome == "rejected", decision.error  # trained, then judged
    assert decision.excluded == 2
    letters = [_letter(letter) for letter in service.drain_letters()]
    assert [letter.original for letter in letters] == [record.value for record in hybrids]
    assert {letter.reason for letter in letters} == {"schema_mismatch"}
    assert "class 'hybrid' would have fewer than" in letters[0].error
    assert len(service._window) == 12
    entry = LocalRegistry(settings.registry_dir).decisions()[-1]
    assert entry["excluded"] == 2


def test_enough_labels_of_a_class_the_base_data_lacks_are_kept(settings: Settings) -> None:
    base = RetrainingService(settings)._base
    window = Window(100)
    for offset in range(40):
        label = "hybrid" if offset % 2 else "setosa"
        sample = LabeledSample(request_id=f"r{offset}", features=SETOSA, true_label=label)
        window.add(Labeled(sample, Incoming(b"", None)))

    def everything(count: int) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(count), np.arange(0)

    assert unlearnable(window, base, minimum=20, split=everything) == {}
    assert list(unlearnable(window, base, minimum=21, split=everything)) == ["hybrid"]


def test_dropping_samples_keeps_the_pending_count_right() -> None:
    window = Window(10)
    entries = [
        Labeled(
            LabeledSample(request_id=f"r{i}", features=SETOSA, true_label="a"), Incoming(b"", None)
        )
        for i in range(6)
    ]
    for entry in entries[:3]:
        window.add(entry)
    window.decided()
    for entry in entries[3:]:
        window.add(entry)

    window.drop([entries[0], entries[4]])

    assert window.pending == 2
    assert window.drop_pending() == [entries[3], entries[5]]
    assert list(window) == [entries[1], entries[2]]


# --------------------------------------------------------------------- the model feed


def test_a_model_update_that_raises_anything_while_loading_is_refused_and_dead_lettered(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``classes_ = 5`` made the contract check raise TypeError, which killed the feed task."""

    def crafted(update: object, artifacts: object) -> object:
        raise TypeError("'int' object is not iterable")

    refused: list[tuple[int, str]] = []

    class Feed:
        caught_up = asyncio.Event()

        async def refuse(self, update: ModelUpdate, reason: str) -> None:
            refused.append((update.version, reason))

    service = RetrainingService(settings)
    monkeypatch.setattr("trainer.service.load_update", crafted)
    feed = Feed()
    feed.caught_up.set()
    service._feed = feed  # type: ignore[assignment]

    assert asyncio.run(service._on_model(model_update(3))) is False

    assert refused == [(3, "TypeError: 'int' object is not iterable")]
    assert service._retraining.champion is None


class _Client:
    """Stands in for the trainer's Kafka consumer and producer."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(self, **options: object) -> dict[object, list[object]]:
        await asyncio.sleep(0.01)
        return {}

    async def commit(self) -> None: ...


def _dying_feed(*, after_catch_up: bool) -> type:
    class Feed:
        def __init__(self, *args: object, **options: object) -> None:
            self.caught_up = asyncio.Event()

        async def run(self) -> None:
            if after_catch_up:
                self.caught_up.set()
                await asyncio.sleep(0.05)
            raise RuntimeError("feed task died")

    return Feed


@pytest.mark.parametrize("after_catch_up", [False, True])
def test_the_trainer_fails_loudly_when_its_model_feed_dies_instead_of_hanging(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, after_catch_up: bool
) -> None:
    monkeypatch.setattr("trainer.service.ModelFeed", _dying_feed(after_catch_up=after_catch_up))
    monkeypatch.setattr("trainer.service.make_consumer", lambda *a, **k: _Client())
    monkeypatch.setattr("trainer.service.make_producer", lambda *a, **k: _Client())
    service = RetrainingService(settings)

    async def scenario() -> BaseException | None:
        task = asyncio.create_task(service.run())
        done, _ = await asyncio.wait({task}, timeout=3)
        if not done:
            task.cancel()
            await asyncio.wait({task})
            pytest.fail("the trainer hung after its model feed died")
        return task.exception()

    error = asyncio.run(scenario())

    assert isinstance(error, ModelFeedStopped)
    assert "feed task died" in str(error)
    assert service.ready.is_set() is after_catch_up


def test_a_promoted_challenger_is_numbered_from_the_model_feed_without_reading_the_topic(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: list[int | None] = []

    async def save_and_publish(
        settings: Settings, outcome: TrainingOutcome, *, trigger: str, live_version: int | None
    ) -> ModelUpdate:
        published.append(live_version)
        return model_update((live_version or 0) + 1)

    monkeypatch.setattr("trainer.retraining.save_and_publish", save_and_publish)
    service = RetrainingService(settings)
    service._seen(model_update(4))  # the feed saw version 4 on the topic (it need not load)

    for round_ in range(2):
        for offset in range(12):
            assert service.take(_labeled(settings, 12 * round_ + offset)) is None
        assert asyncio.run(service.retrain("manual")).outcome == "promoted"

    assert published == [4, 5]  # the second parent is the first's version, not yet fed back


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ("checksum", "checksum mismatch"),
        ("zip_bomb", "unpacks to"),  # refused from the zip's directory, before unpacking
        ("wrong_features", "takes 3 features"),
        ("regressor", "no predict_proba"),
    ],
)
def test_the_trainer_refuses_a_forged_version_as_champion_and_keeps_the_one_it_has(
    settings: Settings, how: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    """README: "Before a worker, a gateway or the trainer trusts a version it checks the
    checksum, [the zip's size], the type allow-list, and the estimator contract"."""
    service = RetrainingService(settings)
    assert asyncio.run(service._on_model(model_update(1)))

    assert asyncio.run(service._on_model(forged_update(2, how))) is False

    assert "version 2 cannot be loaded as champion" in caplog.text
    assert why in caplog.text

    assert service._retraining.champion is not None
    assert service._retraining.champion[0].version == 1
    assert service.metrics.registry.get_sample_value("irisflow_trainer_live_model_version") == 1


# --------------------------------------------------------------- what the settings decide


def test_a_relative_base_data_path_is_read_from_the_params_files_folder_not_the_cwd(
    make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data.source: flowers.csv`` next to params.yaml is the trainer's base data wherever
    ``irisflow trainer`` is started from (as for ``irisflow train``)."""
    x, y = iris_xy()
    rows = [",".join([*IRIS_FEATURES, "species"])]
    rows += [",".join([*map(str, x[i]), str(y[i])]) for i in range(0, len(y), 2)]  # 75 rows
    (tmp_path / "flowers.csv").write_text("\n".join(rows) + "\n")
    settings = make_settings(**{"data.source": "flowers.csv"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    service = RetrainingService(settings)

    assert service._base.source == str(tmp_path / "flowers.csv")
    assert service._base.n_samples == 75


def test_the_trainer_keeps_only_the_newest_window_size_labels_for_a_retraining(
    make_settings: SettingsFactory,
) -> None:
    """``retraining.window_size`` bounds the recent labels: training part plus holdout."""
    settings = make_settings(
        **{"retraining.window_size": 10, "retraining.min_new_labels": 1000, **_FAST_TRAINING}
    )
    sizes: list[int] = []

    def train(data: Dataset) -> TrainingOutcome:
        sizes.append(data.n_samples)
        return train_on(data, settings.training, show_progress=False)

    service = RetrainingService(settings, train=train)
    asyncio.run(service._on_model(model_update(1)))  # a champion: the gate decides, no publish
    for offset in range(25):
        service.take(_labeled(settings, offset))

    decision = asyncio.run(service.retrain("labels"))

    held = round(10 * settings.retraining.holdout_fraction)
    assert decision.gate.holdout_size == held
    assert sizes == [150 + 10 - held]


def test_the_default_trainer_draws_no_progress_bars_into_the_services_log(
    settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    """The service's stderr is its log (``irisflow up`` collects it): training must not write
    progress bars there, unlike ``irisflow train`` at a terminal."""
    service = RetrainingService(settings)  # the default trainer: train_on with settings.training
    asyncio.run(service._on_model(model_update(1)))
    for offset in range(12):
        service.take(_labeled(settings, offset))
    capfd.readouterr()

    decision = asyncio.run(service.retrain("labels"))

    assert decision.algorithm in FAST, decision.error
    captured = capfd.readouterr()
    assert "model/s" not in captured.err
    assert "%|" not in captured.err


def test_the_configured_artifact_limits_apply_to_the_champion_the_trainer_loads(
    make_settings: SettingsFactory,
) -> None:
    """``artifacts.max_entries`` is a limit of the trainer too, not only of the workers: an
    11-file naive Bayes artifact loads under the default limit and is refused under 10."""
    update = model_update(1, kind="naive_bayes")
    assert asyncio.run(RetrainingService(make_settings())._on_model(update)) is True

    strict = RetrainingService(make_settings(**{"artifacts.max_entries": 10}))

    assert asyncio.run(strict._on_model(update)) is False
    assert strict._retraining.champion is None


# --------------------------------------------------------------- what an operator reads


def test_a_refused_record_is_logged_once_with_where_it_was_and_why(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    service = RetrainingService(settings)
    topic = settings.kafka.topics.labeled

    service.take(Incoming(b"\xff not json", b"r0", 1, 42, topic))

    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.WARNING
    (letter,) = service.drain_letters()
    error = _letter(letter).error
    assert record.getMessage() == (
        f"trainer dead-lettered {topic}[1] offset 42 (undecodable): {error}"
    )


def test_a_failed_retraining_logs_one_summary_not_a_line_per_dead_lettered_label(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed retraining dead-letters every pending label; the decision's error line says
    so once. A warning per label would bury it (window_size labels at a time)."""
    service = RetrainingService(settings, train=_failing("cannot learn this"))
    for offset in range(12):
        service.take(_labeled(settings, offset))
    caplog.clear()

    decision = asyncio.run(service.retrain("labels"))

    assert decision.dead_lettered == 12
    assert len(service.drain_letters()) == 12
    assert [r for r in caplog.records if r.levelno == logging.WARNING] == []
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "12 labeled samples dead-lettered" in error.getMessage()


def test_a_record_whose_handling_raises_is_dead_lettered_with_the_exceptions_type(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = RetrainingService(settings)

    def broken(record: Incoming) -> LabeledSample:
        raise RuntimeError("the window is on fire")

    monkeypatch.setattr(service._input, "decode", broken)
    service.take(_labeled(settings, 2))
    (letter,) = service.drain_letters()
    assert _letter(letter).error == "RuntimeError: the window is on fire"


def test_the_log_says_who_asked_for_a_retraining_and_which_alarm_caused_one(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trainer.service")
    topics = settings.kafka.topics
    request = RetrainRequest(
        model_name=settings.model_name, reason="new season", requested_by="ana"
    )
    drift = DriftEvent(
        model_name=settings.model_name,
        feature="petal_length",
        detector="adwin",
        statistic=1.23456,
        threshold=0.5,
        window=10,
    )
    service = RetrainingService(settings)

    assert service.take(_record(settings, topics.retrain_requests, request.to_bytes(), b"iris"))
    assert service.take(
        _record(settings, topics.drift_events, drift.to_bytes(), b"petal_length/adwin")
    )

    assert [r.getMessage() for r in caplog.records if r.name == "trainer.service"] == [
        "retraining requested by ana: new season",
        "drift alarm on petal_length (adwin 1.235 > 0.500): retraining",
    ]


def test_a_retrained_version_is_published_with_its_calibration_and_cv_accuracy(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retraining service trains through the same ``train_on`` as ``irisflow train``, so
    what it publishes carries the label-free estimate's calibration and baseline too."""
    updates: list[ModelUpdate] = []
    trained: list[int] = []

    async def save_and_publish(
        settings: Settings, outcome: TrainingOutcome, *, trigger: str, live_version: int | None
    ) -> ModelUpdate:
        trained.append(outcome.n_samples)
        update = build_update(
            outcome, model_name=settings.model_name, version=5, parent=live_version, trigger=trigger
        )
        updates.append(update)
        return update

    monkeypatch.setattr("trainer.retraining.save_and_publish", save_and_publish)
    service = RetrainingService(settings)
    service._seen(model_update(4))
    for offset in range(12):
        assert service.take(_labeled(settings, offset)) is None
    assert asyncio.run(service.retrain("manual")).outcome == "promoted"

    (update,) = updates
    assert update.calibration is not None
    # Out-of-fold over every row it was trained on: the base data and the new labels (less
    # those the gate holds out).
    assert update.calibration.samples == trained[0] > 150
    assert 0.8 < update.metrics[CV_ACCURACY] <= 1.0
