"""``irisflow dlq`` without a broker: letters are filtered and bounded as they are read, and a
replay sends each origin once."""

from __future__ import annotations

import asyncio

from irisflow.cli.dead_letters import LetterFilter, StoredLetter, _Keeper
from irisflow.cli.replay import replay
from irisflow.schemas import DeadLetter
from irisflow.settings import Settings
from tests.conftest import SettingsFactory


def _stored(
    offset: int,
    *,
    reason: str = "invalid",
    source: tuple[str, int | None, int | None] = ("irisflow.feedback", 0, 0),
    original: bytes = b"x" * 1000,
    size: int | None = None,
) -> StoredLetter:
    topic, partition, at = source
    letter = DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=at,
        original=original,
        original_size=len(original) if size is None else size,
        error="bad",
        reason=reason,
        consumer="test",
        first_seen=1_750_000_000.0 + offset,
    )
    return StoredLetter(0, offset, b"k", letter)


def test_letters_are_filtered_while_read_and_no_more_than_the_limit_are_kept() -> None:
    keep = _Keeper(LetterFilter(reason="invalid"), limit=5, keep_originals=True)
    for offset in range(1000):
        keep(_stored(offset, reason="invalid" if offset % 2 else "bad_key"))
    keep(None)

    reading = keep.reading
    assert [stored.offset for stored in reading.letters] == [1, 3, 5, 7, 9]
    assert (reading.matched, reading.scanned, reading.unreadable) == (500, 1001, 1)


def test_a_listing_keeps_no_original_bytes() -> None:
    keep = _Keeper(LetterFilter(), limit=None, keep_originals=False)
    keep(_stored(0, original=b"y" * 100_000))

    (stored,) = keep.reading.letters
    assert stored.letter.original == b""
    assert stored.letter.original_size == 100_000
    assert stored.truncated is False
    assert stored.summary()["error"] == "bad"


def test_a_record_dead_lettered_by_several_consumers_is_replayed_once(
    make_settings: SettingsFactory,
) -> None:
    settings: Settings = make_settings()
    first, twin, other = (
        _stored(0, source=("irisflow.feedback", 2, 40)),
        _stored(1, source=("irisflow.feedback", 2, 40)),
        _stored(2, source=("irisflow.feedback", 2, 41)),
    )
    unplaced = [_stored(3, source=("irisflow.feedback", None, None)) for _ in range(2)]

    report = asyncio.run(replay(settings.kafka, [first, twin, other, *unplaced], dry_run=True))

    assert [stored.offset for stored, _ in report.sent] == [0, 2, 3, 3]
    assert [(stored.offset, kept.offset) for stored, kept in report.skipped] == [(1, 0)]
    assert report.as_json()["skipped"] == [{"position": "0:1", "duplicate_of": "0:0"}]


def test_a_duplicate_that_is_whole_is_replayed_instead_of_a_cut_one() -> None:
    cut = _stored(0, source=("t", 0, 7), size=5_000_000)
    whole = _stored(1, source=("t", 0, 7))

    report = asyncio.run(replay(None, [cut, whole], dry_run=True))  # type: ignore[arg-type]

    assert [stored.offset for stored, _ in report.sent] == [1]
    assert [(stored.offset, kept.offset) for stored, kept in report.skipped] == [(0, 1)]
    assert report.refused == []


def test_a_letter_keyed_by_a_digest_is_replayed_with_the_original_key(
    make_settings: SettingsFactory,
) -> None:
    long_key = b"k" * 5000
    letter = _stored(0).letter.model_copy(
        update={"original_key": long_key, "original_key_size": len(long_key)}
    )
    stored = StoredLetter(0, 0, b"sha256:abc", letter)
    assert stored.original_key == long_key
    report = asyncio.run(replay(make_settings().kafka, [stored], dry_run=True))
    assert [s.position for s, _ in report.sent] == ["0:0"]


def test_a_letter_whose_key_was_cut_is_not_replayed(make_settings: SettingsFactory) -> None:
    letter = _stored(0).letter.model_copy(
        update={"original_key": b"k" * 100, "original_key_size": 5000}
    )
    report = asyncio.run(
        replay(make_settings().kafka, [StoredLetter(0, 0, b"sha256:abc", letter)], dry_run=True)
    )
    assert report.sent == []
    assert "original key" in report.refused[0][1]
