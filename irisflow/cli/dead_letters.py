"""The dead-letter topic, readable: what ``irisflow dlq list|show`` does, without the CLI
(replay is :mod:`irisflow.cli.replay`).

About 360 lines, kept whole on purpose: the stored-letter shape, its filter, the bounded keeper
and the reader are one pipeline and each only makes sense with the others.

Dead letters are only worth keeping if someone can find the one that matters and send it back
once its cause is fixed. The topic is read with no consumer group (reading it never moves anyone's
offsets and never competes with another reader), from the beginning up to the end offsets taken
when the read starts, so a read always finishes even while letters keep arriving.

Letters are filtered as they are read and at most ``limit`` are kept (the rest are only
counted), and ``irisflow dlq list`` keeps no original bytes at all, so reading a topic of
thousands of letters of up to the broker's message size costs the memory of one fetch plus the
letters shown.

A replay (see :mod:`irisflow.cli.replay`) publishes the original bytes with the original key,
once per origin, with an ``irisflow-replay-of`` header; it refuses letters whose original was
cut to fit the topic, and replaying the same letters twice publishes them twice.

Imports no role package: the gateway or the trainer could offer the same views.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from tqdm import tqdm

from irisflow.errors import IrisflowError
from irisflow.kafka.admin import wait_for_kafka
from irisflow.kafka.clients import TopicMissing, assign_all, make_consumer
from irisflow.schemas import DeadLetter
from irisflow.settings import KafkaSettings
from irisflow.topics import Refused, Topic, Topics

__all__ = [
    "DlqError",
    "LetterFilter",
    "Reading",
    "StoredLetter",
    "parse_position",
    "parse_time",
    "read_letters",
]

_PATIENCE = 15
"""Empty one-second polls in a row after which a read that should go on gives up."""


class DlqError(IrisflowError):
    """A dead-letter command cannot do what was asked; the message says what to do instead."""


def parse_time(text: str) -> float:
    """Unix seconds from ``1718000000`` or ISO 8601 (``2024-06-10T08:00``, UTC unless zoned)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise DlqError(
            f"{text!r} is not a time: give ISO 8601 (2024-06-10T08:00:00Z) or Unix seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_position(text: str) -> tuple[int | None, int]:
    """``PARTITION:OFFSET`` or a bare ``OFFSET`` (any partition that has it)."""
    partition, _, offset = text.rpartition(":")
    try:
        return (int(partition) if partition else None), int(offset)
    except ValueError:
        raise DlqError(
            f"{text!r} is not a dead-letter position: give OFFSET or PARTITION:OFFSET as "
            "`irisflow dlq list` shows it (e.g. 0:17)"
        ) from None


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _text_or_base64(data: bytes | None) -> dict[str, str | None]:
    if data is None:
        return {"text": None}
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


@dataclass(frozen=True)
class StoredLetter:
    """One dead letter and where it sits on the dead-letter topic.

    ``original_kept`` is ``False`` when the letter was read for a listing, which drops the
    original bytes (``letter.original`` is then empty and :attr:`truncated` is ``False``).
    """

    partition: int
    offset: int
    key: bytes | None
    letter: DeadLetter
    original_kept: bool = True

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def original_key(self) -> bytes | None:
        """The refused record's key: the letter's own key, unless that key was too long and
        the letter is keyed by its digest (then the letter carries it)."""
        letter = self.letter
        return letter.original_key if letter.original_key is not None else self.key

    @property
    def source(self) -> tuple[str, int, int] | None:
        """The record it was made from, when the letter says (duplicates share it)."""
        letter = self.letter
        if letter.partition is None or letter.offset is None:
            return None
        return letter.source_topic, letter.partition, letter.offset

    @property
    def origin(self) -> str:
        letter = self.letter
        where = "?" if letter.partition is None else letter.partition
        at = "?" if letter.offset is None else letter.offset
        return f"{letter.source_topic}[{where}]@{at}"

    @property
    def truncated(self) -> bool:
        size = self.letter.original_size
        return self.original_kept and size is not None and size > len(self.letter.original)

    def summary(self) -> dict[str, Any]:
        letter = self.letter
        return {
            "position": self.position,
            "partition": self.partition,
            "offset": self.offset,
            "first_seen": _when(letter.first_seen),
            "source_topic": letter.source_topic,
            "source_partition": letter.partition,
            "source_offset": letter.offset,
            "reason": letter.reason,
            "consumer": letter.consumer,
            "error": letter.error,
        }

    def full(self) -> dict[str, Any]:
        """Everything, the bytes as UTF-8 text when they are, else base64."""
        letter = self.letter
        return {
            **self.summary(),
            "first_seen_unix": letter.first_seen,
            "key": _text_or_base64(self.key),
            "original": _text_or_base64(letter.original),
            "original_size": letter.original_size,
            "truncated": self.truncated,
        }


@dataclass(frozen=True)
class LetterFilter:
    """Which letters a command is about; every given condition must hold."""

    topic: str | None = None
    reason: str | None = None
    consumer: str | None = None
    since: float | None = None
    until: float | None = None

    def matches(self, stored: StoredLetter) -> bool:
        letter = stored.letter
        return (
            (self.topic is None or letter.source_topic == self.topic)
            and (self.reason is None or letter.reason == self.reason)
            and (self.consumer is None or letter.consumer == self.consumer)
            and (self.since is None or letter.first_seen >= self.since)
            and (self.until is None or letter.first_seen <= self.until)
        )


@dataclass
class Reading:
    """The matching letters kept (at most the limit), oldest first per partition; ``matched``
    counts every matching letter read, ``scanned`` every record, and ``unreadable`` the records
    on the topic that are not dead letters at all (someone produced there by hand)."""

    letters: list[StoredLetter] = field(default_factory=list)
    scanned: int = 0
    matched: int = 0
    unreadable: int = 0


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    try:
        return await assign_all(consumer, topic, start="beginning", timeout=0.0)
    except TopicMissing as exc:
        raise DlqError(
            f"topic {topic} does not exist: nothing was dead-lettered yet, or the topics were "
            "never created (`irisflow kafka topics`)"
        ) from exc


async def read_letters(
    kafka: KafkaSettings,
    where: LetterFilter = LetterFilter(),
    *,
    positions: Sequence[tuple[int | None, int]] = (),
    limit: int | None = None,
    progress: bool = True,
    keep_originals: bool = True,
) -> Reading:
    """Letters matching ``where`` (and, if given, at ``positions``), at most ``limit`` kept;
    without ``keep_originals`` their original bytes are dropped as they are read."""
    await wait_for_kafka(kafka, timeout=10.0)
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        tps = await _partitions(consumer, kafka.topics.dead_letters)
        start = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        wanted = _resolve(positions, tps, start, end)
        with tqdm(
            total=sum(end[tp] - start[tp] for tp in tps),
            desc=f"reading {kafka.topics.dead_letters}",
            unit="letter",
            file=sys.stderr,
            delay=1.0,
            disable=not progress,
        ) as bar:
            keep = _Keeper(where, limit=limit, keep_originals=keep_originals)
            reader = _Reader(consumer, Topics.of(kafka).dead_letters, bar, keep)
            for tp in tps:
                if wanted is None:
                    await reader.read(tp, start[tp], end[tp])
                elif tp.partition in wanted:
                    await reader.read(tp, start[tp], end[tp], only=wanted[tp.partition])
        return keep.reading
    finally:
        await consumer.stop()


def _resolve(
    positions: Sequence[tuple[int | None, int]],
    tps: list[TopicPartition],
    start: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
) -> dict[int, set[int]] | None:
    """Offsets to read per partition; ``None`` for all. A bare offset must be unambiguous."""
    if not positions:
        return None
    wanted: dict[int, set[int]] = {}
    for partition, offset in positions:
        holders = [
            tp.partition
            for tp in tps
            if (partition is None or tp.partition == partition) and start[tp] <= offset < end[tp]
        ]
        shown = f"{partition}:{offset}" if partition is not None else str(offset)
        if not holders:
            raise DlqError(
                f"no dead letter at {shown}: `irisflow dlq list` shows the positions there are"
            )
        if len(holders) > 1:
            examples = " or ".join(f"{p}:{offset}" for p in holders)
            raise DlqError(f"offset {offset} exists in {len(holders)} partitions: say {examples}")
        wanted.setdefault(holders[0], set()).add(offset)
    return wanted


class _Keeper:
    """Decodes, counts and filters each record as it is read; keeps at most ``limit``."""

    def __init__(self, where: LetterFilter, *, limit: int | None, keep_originals: bool) -> None:
        self.where = where
        self.limit = limit
        self.keep_originals = keep_originals
        self.reading = Reading()

    def __call__(self, stored: StoredLetter | None) -> None:
        reading = self.reading
        reading.scanned += 1
        if stored is None:
            reading.unreadable += 1
            return
        if not self.where.matches(stored):
            return
        reading.matched += 1
        if self.limit is not None and len(reading.letters) >= self.limit:
            return
        if not self.keep_originals:
            slim = stored.letter.model_copy(update={"original": b""})
            stored = StoredLetter(stored.partition, stored.offset, stored.key, slim, False)
        reading.letters.append(stored)


class _Reader:
    """Reads partitions of the dead-letter topic up to fixed end offsets."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topic: Topic[DeadLetter],
        bar: tqdm[Any],
        keep: Callable[[StoredLetter | None], None],
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.bar = bar
        self.keep = keep

    async def read(
        self, tp: TopicPartition, start: int, end: int, *, only: set[int] | None = None
    ) -> None:
        """Offsets ``start``..``end`` of ``tp`` (just those in ``only`` when given)."""
        first, stop = (min(only), max(only) + 1) if only else (start, end)
        self.consumer.seek(tp, first)
        position, idle = start, 0
        while position < stop:
            batches = await self.consumer.getmany(tp, timeout_ms=1000, max_records=500)
            records = [r for r in batches.get(tp, []) if r.offset < stop]
            for record in records:
                if only is None or record.offset in only:
                    self._keep(tp.partition, record.offset, record.key, record.value)
            fetched = min(await self.consumer.position(tp), stop)
            idle = 0 if fetched > position else idle + 1
            if idle >= _PATIENCE:
                raise DlqError(
                    f"{tp.topic}[{tp.partition}] returned nothing past offset {position} for "
                    f"{_PATIENCE}s although it ends at {stop}: is the broker healthy?"
                )
            self.bar.update(fetched - position)
            position = max(position, fetched)
        self.bar.update(end - stop)

    def _keep(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        try:
            letter = self.topic.decode(value)
        except Refused:
            self.keep(None)
            return
        self.keep(StoredLetter(partition, offset, key, letter))
