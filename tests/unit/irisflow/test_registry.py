"""Artifacts: skops only, checksums verified, allow-listed types, immutable versions."""

from __future__ import annotations

import io
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from irisflow.errors import ArtifactError, ModelNotFound
from irisflow.registry import (
    LocalRegistry,
    check_contract,
    deserialize_model,
    load_update,
    republish,
    serialize_model,
    sha256_hex,
)
from irisflow.settings import ArtifactSettings, KafkaSettings
from tests.factories import fitted_pipeline, forged_update, iris_xy, model_update


def test_a_model_round_trips_with_identical_probabilities() -> None:
    pipeline = fitted_pipeline()
    data = serialize_model(pipeline)
    loaded = deserialize_model(data, sha256=sha256_hex(data))
    x, _ = iris_xy()
    np.testing.assert_array_equal(loaded.predict_proba(x), pipeline.predict_proba(x))


def test_a_tampered_artifact_fails_its_checksum() -> None:
    data = serialize_model(fitted_pipeline())
    digest = sha256_hex(data)
    tampered = data[:-1] + bytes([data[-1] ^ 0xFF])
    with pytest.raises(ArtifactError, match="checksum"):
        deserialize_model(tampered, sha256=digest)


def test_an_artifact_naming_a_type_outside_the_allow_list_is_refused() -> None:
    data = serialize_model(fitted_pipeline())
    archive = zipfile.ZipFile(io.BytesIO(data))
    schema = archive.read("schema.json").decode()
    evil = schema.replace('"sklearn.preprocessing._data"', '"os"', 1).replace(
        '"StandardScaler"', '"system"', 1
    )
    assert evil != schema
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as rewritten:
        for item in archive.infolist():
            payload = evil.encode() if item.filename == "schema.json" else archive.read(item)
            rewritten.writestr(item, payload)
    forged = out.getvalue()
    with pytest.raises(ArtifactError, match="allow-list"):
        deserialize_model(forged, sha256=sha256_hex(forged))


def test_bytes_that_are_not_a_skops_file_are_refused() -> None:
    junk = b"\x80\x04\x95 pickle bytes"
    with pytest.raises(ArtifactError):
        deserialize_model(junk, sha256=sha256_hex(junk))


def test_registry_versions_are_immutable(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path)
    first = model_update(1)
    registry.save(first)
    registry.save(first)  # the same bytes again: a no-op
    other = model_update(1, kind="naive_bayes")
    with pytest.raises(ArtifactError, match="immutable"):
        registry.save(other)
    assert registry.versions() == [1]


def test_registry_lists_versions_and_returns_verified_updates(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path)
    for version in (1, 2, 3):
        registry.save(model_update(version))
    assert registry.versions() == [1, 2, 3]
    assert registry.latest() == 3
    assert registry.get(2).version == 2
    with pytest.raises(ModelNotFound, match="version 9"):
        registry.metadata(9)


def test_a_registry_artifact_changed_on_disk_is_refused(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path)
    folder = registry.save(model_update(1))
    (folder / "model.skops").write_bytes(b"changed")
    with pytest.raises(ArtifactError, match="checksum"):
        registry.get(1)


def test_the_registry_owns_its_paths(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path)
    folder = registry.save(model_update(7), extra_files={LocalRegistry.CARD: b"# v7"})
    assert folder == registry.version_dir(7) == tmp_path / "v0007"
    assert registry.card_path(7).read_bytes() == b"# v7"
    assert not registry.card_path(8).exists()


def test_decisions_are_appended_and_read_back_oldest_first(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "new")
    assert registry.decisions() == []
    registry.append_decision({"outcome": "rejected", "version": None})
    registry.append_decision({"outcome": "promoted", "version": 2})
    assert [d["outcome"] for d in registry.decisions()] == ["rejected", "promoted"]
    assert registry.decisions_path.read_text().count("\n") == 2


async def test_a_version_that_does_not_load_is_never_republished() -> None:
    # Refused before any Kafka client is made: nothing listens at this address.
    kafka = KafkaSettings(bootstrap="127.0.0.1:9")
    with pytest.raises(ArtifactError, match="checksum"):
        await republish(kafka, forged_update(2, "checksum"), limits=ArtifactSettings(), timeout=1)


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ("wrong_features", "takes 3 features"),
        ("regressor", "no predict_proba"),
        ("wrong_classes", "classes"),
        ("checksum", "checksum"),
    ],
)
def test_a_version_that_would_crash_or_mislead_the_scorer_is_refused(how: str, why: str) -> None:
    with pytest.raises(ArtifactError, match=why):
        load_update(forged_update(2, how), ArtifactSettings())


def test_a_good_version_passes_every_check_and_scores() -> None:
    estimator = load_update(model_update(1), ArtifactSettings())
    assert estimator.predict_proba(np.array([[5.1, 3.5, 1.4, 0.2]])).shape == (1, 3)


def test_a_zip_bomb_is_refused_from_its_directory_without_unpacking_it() -> None:
    bomb = forged_update(3, "zip_bomb")
    assert len(bomb.artifact) < 2 * 1024 * 1024  # ~300 MB once unpacked
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ArtifactError, match="unpacks to"):
            load_update(bomb, ArtifactSettings())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 20 * 1024 * 1024


def test_an_archive_with_too_many_entries_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(11):
            archive.writestr(f"f{i}", b"")
    data = buffer.getvalue()
    with pytest.raises(ArtifactError, match="11 files"):
        deserialize_model(data, sha256=sha256_hex(data), limits=ArtifactSettings(max_entries=10))


def test_an_estimator_crafted_to_make_the_checks_themselves_raise_is_refused() -> None:
    """``classes_ = 5`` made the contract check raise TypeError, which no caller caught."""
    x, y = iris_xy()
    model = LogisticRegression(max_iter=300).fit(x, y)
    model.classes_ = 5
    data = serialize_model(model)
    update = model_update(3).model_copy(update={"artifact": data, "sha256": sha256_hex(data)})
    with pytest.raises(ArtifactError, match="contract"):
        load_update(update, ArtifactSettings())


class _Scorer:
    """A stand-in estimator whose ``predict_proba`` returns (or raises) what a test needs."""

    n_features_in_ = 4
    classes_ = np.array(["setosa", "versicolor", "virginica"])

    def __init__(self, answer: object) -> None:
        self._answer = answer

    def predict_proba(self, rows: np.ndarray) -> object:
        if isinstance(self._answer, Exception):
            raise self._answer
        return self._answer


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (ValueError("boom"), "failed a smoke prediction"),
        (np.full((3, 2), 0.5), "shape"),
        (np.full((3, 3), float("nan")), "not finite"),
        (np.full((3, 3), 0.5), "sum to one"),
    ],
)
def test_a_smoke_prediction_that_is_not_a_probability_is_refused(answer: object, why: str) -> None:
    with pytest.raises(ArtifactError, match=why):
        check_contract(_Scorer(answer), model_update(1).metadata())


def test_a_version_without_reference_statistics_is_smoke_tested_on_zeros() -> None:
    meta = model_update(1).metadata().model_copy(update={"reference_stats": {}})
    check_contract(fitted_pipeline(), meta)  # no error: zeros are a valid input


def test_an_estimator_fit_on_named_columns_must_name_the_metadatas_features() -> None:
    x, y = iris_xy()
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    model = LogisticRegression(max_iter=300).fit(frame, y)
    with pytest.raises(ArtifactError, match="fit on features"):
        check_contract(model, model_update(1).metadata())
