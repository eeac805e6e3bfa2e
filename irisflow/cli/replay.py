"""``irisflow dlq replay``: publish dead letters' original bytes and keys again.

Once per origin (several consumers may dead-letter one record), in order, to the source topic
or another one, never creating a topic by accident, and never a letter whose original or key
was cut to fit the dead-letter topic. Replaying twice publishes twice: the source topic's
consumers deduplicate what they must, by request id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from irisflow.cli.dead_letters import DlqError, StoredLetter
from irisflow.kafka.clients import make_consumer, make_producer, send
from irisflow.settings import KafkaSettings
from irisflow.topics import HEADER_PREFIX, Outgoing

__all__ = ["REPLAY_HEADER", "ReplayReport", "replay"]

REPLAY_HEADER = HEADER_PREFIX + "replay-of"
"""Names the dead letter a replayed record came from (``<dead-letter topic>[partition:offset]``)."""


@dataclass
class ReplayReport:
    """What a replay sent (or would send, on a dry run), what it refused, with why, and what it
    skipped as a duplicate, with the letter of the same origin that was chosen instead."""

    dry_run: bool
    sent: list[tuple[StoredLetter, str]] = field(default_factory=list)
    refused: list[tuple[StoredLetter, str]] = field(default_factory=list)
    skipped: list[tuple[StoredLetter, StoredLetter]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "sent" if not self.dry_run else "would_send": [
                {"position": s.position, "to": to, "bytes": len(s.letter.original)}
                for s, to in self.sent
            ],
            "refused": [{"position": s.position, "why": why} for s, why in self.refused],
            "skipped": [
                {"position": s.position, "duplicate_of": first.position}
                for s, first in self.skipped
            ],
        }


def _refusal(stored: StoredLetter) -> str | None:
    if stored.truncated:
        return (
            f"the original was {stored.letter.original_size:,} bytes, cut to "
            f"{len(stored.letter.original):,} to fit the dead-letter topic: it cannot be "
            "replayed whole; produce it again from its source"
        )
    letter = stored.letter
    if letter.original_key is not None and letter.original_key_size != len(letter.original_key):
        return (
            f"the original key was {letter.original_key_size:,} bytes, cut to "
            f"{len(letter.original_key):,} to fit the dead-letter topic: it cannot be replayed "
            "whole; produce it again from its source"
        )
    return None


async def replay(
    kafka: KafkaSettings,
    letters: Iterable[StoredLetter],
    *,
    to: str | None = None,
    dry_run: bool = False,
) -> ReplayReport:
    """Publish each letter's original bytes and key to its source topic (or ``to``), once per
    origin: of the letters with one source topic, partition and offset, the first that can be
    replayed whole is sent and the others are skipped."""
    report = ReplayReport(dry_run=dry_run)
    letters = list(letters)
    chosen: dict[tuple[str, int, int], StoredLetter] = {}
    for stored in letters:  # per origin, the first letter that can be replayed whole
        if stored.source is not None and _refusal(stored) is None:
            chosen.setdefault(stored.source, stored)
    for stored in letters:
        first = chosen.get(stored.source) if stored.source is not None else None
        why = _refusal(stored)
        if first is not None and first is not stored:
            report.skipped.append((stored, first))
        elif why is not None:
            report.refused.append((stored, why))
        else:
            report.sent.append((stored, to or stored.letter.source_topic))
    if dry_run or not report.sent:
        return report
    await _require_topics(kafka, {target for _, target in report.sent})
    producer = make_producer(kafka)
    await producer.start()
    try:
        for stored, target in report.sent:
            headers = ((REPLAY_HEADER, _replay_of(kafka, stored)),)
            await send(
                producer,
                Outgoing(target, stored.original_key, stored.letter.original, None, headers),
            )
    finally:
        await producer.stop()
    return report


def _replay_of(kafka: KafkaSettings, stored: StoredLetter) -> bytes:
    return f"{kafka.topics.dead_letters}[{stored.position}]".encode()


async def _require_topics(kafka: KafkaSettings, names: set[str]) -> None:
    """A replay never creates a topic by accident (a typo in ``--to`` would)."""
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        missing = sorted(names - set(await consumer.topics()))
    finally:
        await consumer.stop()
    if missing:
        raise DlqError(
            f"topic {', '.join(missing)} does not exist: check --to (or create it first); "
            "nothing was replayed"
        )
