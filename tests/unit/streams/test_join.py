"""The feedback join window: predictions meet their labels, late or early, within a window."""

from __future__ import annotations

import pytest

from irisflow.schemas import Feedback
from streams.join import FeedbackOutcome, JoinWindow
from tests.factories import SETOSA

WINDOW = 60.0


class Changelog:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None, int]] = []

    def __call__(self, key: bytes, value: bytes | None, partition: int) -> None:
        self.records.append((key, value, partition))


@pytest.fixture
def changelog() -> Changelog:
    return Changelog()


@pytest.fixture
def window(changelog: Changelog) -> JoinWindow:
    return JoinWindow({}, changelog, window_seconds=WINDOW, feedback_topic="fb")


def _predict(window: JoinWindow, rid: str, *, now: float = 0.0, partition: int = 1) -> object:
    return window.on_prediction(
        rid.encode(), features=SETOSA, label="setosa", version=3, partition=partition, now=now
    )


def _feedback(window: JoinWindow, rid: str, label: str = "setosa", *, now: float = 1.0) -> object:
    message = Feedback(request_id=rid, label=label, labeled_at=now)
    return window.on_feedback(message, raw=message.to_bytes(), partition=1, offset=9, now=now)


def test_feedback_after_its_prediction_makes_a_labeled_sample(window: JoinWindow) -> None:
    assert _predict(window, "r1") is None
    outcome = _feedback(window, "r1", "versicolor")
    assert outcome.kind == "joined"
    sample = outcome.sample
    assert sample is not None
    assert (sample.request_id, sample.true_label, sample.predicted_label) == (
        "r1",
        "versicolor",
        "setosa",
    )
    assert sample.features == SETOSA
    assert sample.model_version == 3


def test_feedback_before_its_prediction_is_held_then_joined(window: JoinWindow) -> None:
    assert _feedback(window, "early").kind == "held"
    sample = _predict(window, "early", now=2.0)
    assert sample is not None
    assert sample.true_label == "setosa"


def test_redelivered_feedback_is_a_duplicate_not_a_second_sample(window: JoinWindow) -> None:
    _predict(window, "r2")
    assert _feedback(window, "r2").kind == "joined"
    assert _feedback(window, "r2").kind == "duplicate"
    assert _predict(window, "r2") is None  # a re-scored request after a crash, too


def test_every_change_is_mirrored_to_the_changelog_partition_of_its_request(
    window: JoinWindow, changelog: Changelog
) -> None:
    _predict(window, "r3", partition=2)
    window.expire(WINDOW + 1, owned={2})
    (key, value, partition), (key2, tombstone, partition2) = changelog.records
    assert (key, partition) == (b"r3", 2)
    assert value is not None
    assert (key2, tombstone, partition2) == (b"r3", None, 2)


def test_expired_predictions_leave_quietly(window: JoinWindow) -> None:
    _predict(window, "old", now=0.0)
    _predict(window, "new", now=30.0)
    expired = window.expire(WINDOW + 1, owned={1})
    assert (expired.predictions, expired.unmatched) == (1, [])
    assert len(window) == 1
    assert window.expire(WINDOW + 31, owned={1}).predictions == 1
    assert len(window) == 0


def test_feedback_that_never_finds_its_prediction_is_dead_lettered_at_expiry(
    window: JoinWindow,
) -> None:
    _feedback(window, "ghost", now=5.0)
    assert window.expire(WINDOW + 4, owned={1}).unmatched == []
    ((key, partition, offset, original, why),) = window.expire(WINDOW + 6, owned={1}).unmatched
    assert (key, partition, offset) == (b"ghost", 1, 9)
    assert Feedback.from_bytes(original).request_id == "ghost"
    assert "no prediction within 60s" in why
    assert len(window) == 0


@pytest.mark.parametrize(
    "stored",
    [b"{not json", b"[]", b'{"k": "feedback"}', b'{"k": "nonsense", "p": 1, "t": 0}'],
)
def test_an_unreadable_entry_is_dropped_instead_of_failing_its_request(
    window: JoinWindow, stored: bytes
) -> None:
    window._data[b"broken"] = stored
    assert (
        window.on_prediction(
            b"broken", features={"x": 1.0}, label="a", version=1, partition=1, now=1.0
        )
        is None
    )
    assert b"broken" in window._data  # replaced by a fresh, readable prediction entry
    window.rescan(owned={1})  # and a rescan over a broken entry does not raise either


def test_a_worker_expires_only_the_partitions_it_owns(window: JoinWindow) -> None:
    _predict(window, "mine", partition=1)
    _predict(window, "theirs", partition=2)
    expired = window.expire(WINDOW + 1, owned={1})
    assert expired.predictions == 1
    assert len(window) == 1


def test_a_rescan_after_a_rebalance_forgets_moved_partitions_and_schedules_recovered_ones(
    changelog: Changelog,
) -> None:
    table: dict[bytes, bytes] = {}
    first = JoinWindow(table, changelog, window_seconds=WINDOW, feedback_topic="fb")
    _predict(first, "a", partition=1)
    _predict(first, "b", partition=2)
    recovered = dict(table)  # what a new owner rebuilds from the changelog
    second = JoinWindow(recovered, changelog, window_seconds=WINDOW, feedback_topic="fb")
    second.rescan(owned={2})
    assert set(recovered) == {b"b"}
    assert second.expire(WINDOW + 1, owned={2}).predictions == 1


def _labeled(window: JoinWindow, rid: str) -> FeedbackOutcome:
    message = Feedback(request_id=rid, label="setosa", labeled_at=1.0)
    return window.on_feedback(message, raw=message.to_bytes(), partition=1, offset=9, now=1.0)


def test_a_paired_prediction_joins_into_a_sample_with_the_other_versions_label(
    window: JoinWindow,
) -> None:
    window.on_prediction(
        b"p",
        features=SETOSA,
        label="setosa",
        version=3,
        partition=1,
        now=0.0,
        shadow_version=4,
        shadow_label="versicolor",
    )
    outcome = _labeled(window, "p")
    assert outcome.sample is not None
    assert (outcome.sample.shadow_version, outcome.sample.shadow_label) == (4, "versicolor")


def test_feedback_held_before_a_paired_prediction_still_gets_the_shadow_label(
    window: JoinWindow,
) -> None:
    _feedback(window, "early", "virginica")
    sample = window.on_prediction(
        b"early",
        features=SETOSA,
        label="setosa",
        version=3,
        partition=1,
        now=2.0,
        shadow_version=4,
        shadow_label=None,
    )
    assert sample is not None
    assert (sample.model_version, sample.shadow_version, sample.shadow_label) == (3, 4, None)


def test_an_entry_written_before_shadow_fields_existed_still_joins(changelog: Changelog) -> None:
    """A changelog restored from a worker of the previous release has no ``sv``/``sl``."""
    old = b'{"k":"prediction","p":1,"x":{"sepal_length":5.1},"l":"setosa","v":2,"t":0.5}'
    window = JoinWindow({b"old": old}, changelog, window_seconds=WINDOW, feedback_topic="fb")
    outcome = _labeled(window, "old")
    assert outcome.kind == "joined"
    assert outcome.sample is not None
    assert (outcome.sample.model_version, outcome.sample.predicted_label) == (2, "setosa")
    assert (outcome.sample.shadow_version, outcome.sample.shadow_label) == (None, None)
