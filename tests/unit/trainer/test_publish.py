"""The trainer loads and scores its own artifact exactly as a worker would, before saving it."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import zipfile

import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from irisflow.errors import ArtifactError
from irisflow.registry import LocalRegistry, load_update, sha256_hex
from irisflow.schemas import ModelUpdate
from irisflow.settings import Settings
from tests.conftest import SettingsFactory
from tests.factories import iris_xy
from tests.unit.trainer.failing_disk import FailingDisk
from trainer import publish
from trainer.data import load_dataset
from trainer.training import TrainingOutcome, train_on


@pytest.fixture(scope="module")
def outcome() -> TrainingOutcome:
    from irisflow.settings import DataSettings, TrainingSettings

    training = TrainingSettings(candidates={"naive_bayes": {}}, cv_folds=3)
    return train_on(load_dataset(DataSettings()), training, show_progress=False)


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


def test_a_sound_outcome_becomes_an_update_that_loads(
    outcome: TrainingOutcome, settings: Settings
) -> None:
    update = publish.verified_update(
        outcome, settings=settings, version=3, parent=2, trigger="labels"
    )
    assert (update.version, update.parent_version, update.trigger) == (3, 2, "labels")
    assert update.algorithm == outcome.algorithm
    assert update.calibration == outcome.calibration
    assert update.calibration is not None


def _regressor() -> LinearRegression:
    x, y = iris_xy()
    return LinearRegression().fit(x, (y == "setosa").astype(float))


def _three_features() -> LogisticRegression:
    x, y = iris_xy()
    return LogisticRegression(max_iter=300).fit(x[:, :3], y)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"class_labels": ["a", "b", "c"]}, "classes"),
        ({"model": _regressor()}, "predict_proba"),
        ({"model": _three_features()}, "takes 3 features"),
    ],
)
def test_an_artifact_a_worker_would_refuse_is_refused_before_it_is_saved(
    outcome: TrainingOutcome,
    settings: Settings,
    change: dict[str, object],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    published: list[ModelUpdate] = []

    async def publish_update(kafka: object, update: ModelUpdate) -> None:
        published.append(update)

    monkeypatch.setattr(publish, "publish_update", publish_update)
    broken = dataclasses.replace(outcome, **change)  # type: ignore[arg-type]

    with pytest.raises(ArtifactError, match=message):
        asyncio.run(publish.save_and_publish(settings, broken, trigger="labels", live_version=None))

    assert LocalRegistry(settings.registry_dir).versions() == []
    assert published == []


def test_a_sound_outcome_is_saved_then_published(
    outcome: TrainingOutcome, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: list[ModelUpdate] = []

    async def publish_update(kafka: object, update: ModelUpdate) -> None:
        assert LocalRegistry(settings.registry_dir).versions() == [1]  # saved first
        published.append(update)

    monkeypatch.setattr(publish, "publish_update", publish_update)

    update = asyncio.run(
        publish.save_and_publish(settings, outcome, trigger="labels", live_version=None)
    )

    assert [p.version for p in published] == [update.version] == [1]


def test_the_next_version_is_one_past_both_the_registry_and_the_topic(
    outcome: TrainingOutcome, settings: Settings
) -> None:
    assert publish.next_version(settings, None) == 1
    assert publish.next_version(settings, 7) == 8
    LocalRegistry(settings.registry_dir).save(
        publish.verified_update(outcome, settings=settings, version=9, parent=7, trigger="labels")
    )
    assert publish.next_version(settings, 7) == 10


def test_at_publish_time_the_version_on_disk_is_complete_and_matches_its_checksum(
    outcome: TrainingOutcome, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is published is what the registry holds, byte for byte, checksum verified."""
    published: list[ModelUpdate] = []

    async def publish_update(kafka: object, update: ModelUpdate) -> None:
        registry = LocalRegistry(settings.registry_dir)
        saved = registry.get(update.version)  # verifies the file against metadata.json's sha256
        assert saved.artifact == update.artifact
        assert saved.sha256 == update.sha256 == sha256_hex(update.artifact)
        assert registry.card_path(update.version).read_text().strip()
        load_update(saved, settings.artifacts)
        published.append(update)

    monkeypatch.setattr(publish, "publish_update", publish_update)

    asyncio.run(publish.save_and_publish(settings, outcome, trigger="labels", live_version=None))

    assert [p.version for p in published] == [1]


@pytest.mark.parametrize("how", ["write", "metadata"])
def test_a_version_whose_writing_fails_midway_is_never_published(
    outcome: TrainingOutcome, settings: Settings, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """README: "a version is published only after it is completely written". The disk fails
    half-way through the artifact (``write``) or on the last file, ``metadata.json``
    (``metadata``): nothing reaches the topic, and no version is left looking complete (the
    registry lists none, and no file holds part of an artifact under its final name)."""
    published: list[ModelUpdate] = []

    async def publish_update(kafka: object, update: ModelUpdate) -> None:
        published.append(update)

    monkeypatch.setattr(publish, "publish_update", publish_update)
    disk = FailingDisk(how)
    monkeypatch.setattr("irisflow.registry.os.fdopen", disk)

    with pytest.raises(OSError, match=r"No space left|Input/output"):
        asyncio.run(publish.save_and_publish(settings, outcome, trigger="labels", live_version=1))

    assert disk.failed
    assert published == []
    registry = LocalRegistry(settings.registry_dir)
    assert registry.versions() == []
    folder = registry.version_dir(2)
    assert not (folder / "metadata.json").exists()
    model = folder / "model.skops"
    if model.exists():  # written completely before the failure, or not at all
        with zipfile.ZipFile(io.BytesIO(model.read_bytes())) as archive:
            assert archive.testzip() is None
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temp left
    assert publish.next_version(settings, 1) == 2  # the failed write took no version number
