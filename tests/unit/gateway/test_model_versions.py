"""The versions a gateway knows: every one seen on Kafka, the live one, refused bad bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.model_versions import ModelHistory
from irisflow.errors import ModelNotFound
from tests.factories import model_update

NOWHERE = Path("/nonexistent/irisflow-registry")


def test_every_version_seen_is_kept_and_the_last_made_live_is_live() -> None:
    history = ModelHistory("iris", NOWHERE)
    history.record(model_update(1))
    history.make_live(model_update(2, kind="naive_bayes"))
    assert [k.metadata.version for k in history.versions()] == [1, 2]
    assert history.live is not None
    assert history.live.version == 2
    assert history.version(1).sources == ("kafka",)


def test_a_rollback_makes_an_older_version_live_again() -> None:
    history = ModelHistory("iris", NOWHERE)
    history.make_live(model_update(1))
    history.make_live(model_update(2))
    history.make_live(model_update(1))
    assert history.live is not None
    assert history.live.version == 1


def test_an_update_whose_bytes_fail_their_checksum_is_refused() -> None:
    history = ModelHistory("iris", NOWHERE)
    history.make_live(model_update(1))
    forged = model_update(2, artifact=b"not a model", sha256="0" * 64)
    assert history.make_live(forged) is False
    assert history.live is not None
    assert history.live.version == 1
    assert [k.metadata.version for k in history.versions()] == [1]


def test_the_update_to_republish_comes_from_kafka_when_no_registry_is_here() -> None:
    history = ModelHistory("iris", NOWHERE)
    history.record(model_update(4))
    update, source = history.update_for(4)
    assert (update.version, source) == (4, "kafka")
    assert update.artifact
    with pytest.raises(ModelNotFound, match="version 5"):
        history.update_for(5)


def test_artifacts_are_kept_for_the_newest_versions_only_and_metadata_for_all() -> None:
    """Finding 6: a long-running gateway must not hold every artifact ever published."""
    history = ModelHistory("iris", NOWHERE, kept_artifacts=2)
    update = model_update(1)
    for version in (3, 1, 4, 2):
        history.record(update.model_copy(update={"version": version}))
    assert [k.metadata.version for k in history.versions()] == [1, 2, 3, 4]
    assert [history.update_for(v)[0].version for v in (3, 4)] == [3, 4]
    with pytest.raises(ModelNotFound, match="keeps the artifacts of the 2 newest"):
        history.update_for(1)
