"""``irisflow dlq list | show | replay`` on a real broker: find a dead letter, read it whole,
send its original bytes back where they came from (or elsewhere), and never send a cut one."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from typer.testing import CliRunner, Result

from irisflow.cli import app
from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.clients import make_consumer, make_producer, send
from irisflow.schemas import LabeledSample
from irisflow.settings import Settings, load_settings
from irisflow.topics import DeadLetters, Incoming, Outgoing, Reason
from tests.conftest import unique_params
from tests.factories import SETOSA

pytestmark = pytest.mark.kafka

T0 = 1_750_000_000.0  # 2025-06-15T15:06:40Z


@dataclass
class Letters:
    params: Path
    settings: Settings
    sample: LabeledSample

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(app, ["--params", str(self.params), "dlq", *args])

    def json(self, *args: str) -> object:
        result = self.run(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


def _letter(
    settings: Settings,
    *,
    source: str,
    value: bytes,
    key: bytes,
    reason: Reason,
    consumer: str,
    seen: float,
    offset: int,
) -> Outgoing:
    letters = DeadLetters(
        settings.kafka.topics.dead_letters,
        consumer,
        max_message_bytes=settings.kafka.max_message_bytes,
        clock=lambda: seen,
    )
    record = Incoming(value, key, 1, offset, source)
    built = letters.letter(record, source_topic=source, reason=reason, error=f"{reason} here")
    return Outgoing(built.topic, built.key, built.value, 0, built.headers)  # all on partition 0


@pytest.fixture(scope="module")
def letters(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Letters:
    """Four records on a dead-letter topic, shared by the tests that only read them.

    A test that replays writes to the source topics: it gets its own (``own_letters``), so no
    test sees what another replayed, whatever the order.
    """
    return _seed(tmp_path_factory.mktemp("dlq"), kafka_bootstrap)


@pytest.fixture
def own_letters(tmp_path: Path, kafka_bootstrap: str) -> Letters:
    """The same four records on topics of this test alone."""
    return _seed(tmp_path, kafka_bootstrap)


def _seed(folder: Path, kafka_bootstrap: str) -> Letters:
    params = unique_params(folder, kafka_bootstrap)
    settings = load_settings(params, environ={})
    topics = settings.kafka.topics
    sample = LabeledSample(request_id="r-1", features=SETOSA, true_label="setosa")
    truncated = _letter(
        settings,
        source=topics.feedback,
        value=b"x" * 10,
        key=b"r-3",
        reason=Reason.INVALID,
        consumer="streams.join",
        seen=T0 + 200,
        offset=9,
    )
    body = json.loads(truncated.value or b"")
    body["original_size"] = 5_000_000  # as if cut to fit the dead-letter topic
    records = [
        _letter(
            settings,
            source=topics.labeled,
            value=sample.to_bytes(),
            key=b"r-1",
            reason=Reason.TRAINING_FAILED,
            consumer="trainer",
            seen=T0,
            offset=7,
        ),
        _letter(
            settings,
            source=topics.requests,
            value=b"\xff\xfe\x00binary",
            key=b"r-2",
            reason=Reason.UNDECODABLE,
            consumer="streams.scoring",
            seen=T0 + 100,
            offset=8,
        ),
        Outgoing(truncated.topic, truncated.key, json.dumps(body).encode(), 0, truncated.headers),
        Outgoing(topics.dead_letters, None, b"not a dead letter", 0),
    ]

    async def prepare() -> None:
        await ensure_topics(settings.kafka)
        producer = make_producer(settings.kafka)
        await producer.start()
        try:
            for record in records:
                await send(producer, record)
        finally:
            await producer.stop()

    asyncio.run(prepare())
    return Letters(params, settings, sample)


def test_list_shows_every_letter_oldest_first_with_its_origin_and_reason(
    letters: Letters,
) -> None:
    result = letters.run("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["POSITION", "FIRST", "SEEN", "SOURCE", "REASON"]
    assert [line.split()[0] for line in lines[1:]] == ["0:0", "0:1", "0:2"]
    first = lines[1]
    topics = letters.settings.kafka.topics
    assert "2025-06-15T15:06:40Z" in first
    assert f"{topics.labeled}[1]@7" in first
    assert "training_failed" in first
    assert "trainer" in first
    assert "3 letters shown of 3 matching, 4 read" in result.stderr
    assert "1 records there are not dead letters" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--reason", "undecodable"), ["0:1"]),
        (("--consumer", "trainer"), ["0:0"]),
        (("--since", "2025-06-15T15:08:00Z"), ["0:1", "0:2"]),
        (("--until", str(T0 + 100)), ["0:0", "0:1"]),
        (("--since", "2025-06-15T17:08:00+02:00", "--until", "2025-06-15T15:09:00"), ["0:1"]),
        (("--limit", "2"), ["0:0", "0:1"]),
        (("--reason", "out_of_domain"), []),
    ],
)
def test_list_filters_combine(letters: Letters, args: tuple[str, ...], expected: list[str]) -> None:
    rows = letters.json("list", *args)
    assert isinstance(rows, list)
    assert [row["position"] for row in rows] == expected


def test_list_filters_by_source_topic(letters: Letters) -> None:
    rows = letters.json("list", "--topic", letters.settings.kafka.topics.requests)
    assert isinstance(rows, list)
    assert [(row["position"], row["source_offset"]) for row in rows] == [("0:1", 8)]


def test_show_prints_a_utf8_original_as_text_and_a_binary_one_as_base64(letters: Letters) -> None:
    text = letters.json("show", "0:0")
    assert isinstance(text, dict)
    assert text["original"] == {"text": letters.sample.to_bytes().decode()}
    assert text["key"] == {"text": "r-1"}
    assert text["reason"] == "training_failed"
    assert text["truncated"] is False

    binary = letters.json("show", "1")  # a bare offset is enough when one partition has it
    assert isinstance(binary, dict)
    assert base64.b64decode(binary["original"]["base64"]) == b"\xff\xfe\x00binary"

    shown = letters.run("show", "0:2")
    assert shown.exit_code == 0, shown.output
    assert "cut from 5,000,000 bytes: cannot be replayed" in shown.stdout
    assert "(UTF-8) r-3" in shown.stdout


async def _read(
    settings: Settings, topic: str
) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
    consumer = make_consumer(settings.kafka, group_id=None)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert tps, f"{topic} has no partitions"
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        found = []
        deadline = asyncio.get_running_loop().time() + 20
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            assert asyncio.get_running_loop().time() < deadline
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                found += [(r.key, r.value, dict(r.headers)) for r in batch]
        return found
    finally:
        await consumer.stop()


def test_a_dry_run_says_what_it_would_send_and_sends_nothing(own_letters: Letters) -> None:
    labeled = own_letters.settings.kafka.topics.labeled
    before = asyncio.run(_read(own_letters.settings, labeled))
    result = own_letters.run("replay", "--consumer", "trainer", "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"would send 0:0 -> {labeled}" in result.stdout
    assert asyncio.run(_read(own_letters.settings, labeled)) == before


def test_replay_sends_the_original_bytes_and_key_back_to_the_source_topic(
    own_letters: Letters,
) -> None:
    labeled = own_letters.settings.kafka.topics.labeled
    report = own_letters.json("replay", "0:0")
    assert report == {
        "dry_run": False,
        "sent": [{"position": "0:0", "to": labeled, "bytes": len(own_letters.sample.to_bytes())}],
        "refused": [],
        "skipped": [],
    }
    (replayed,) = [r for r in asyncio.run(_read(own_letters.settings, labeled))]
    key, value, headers = replayed
    assert (key, value) == (b"r-1", own_letters.sample.to_bytes())
    dead = own_letters.settings.kafka.topics.dead_letters
    assert headers["irisflow-replay-of"] == f"{dead}[0:0]".encode()


def test_replay_to_another_topic_keeps_bytes_that_are_not_utf8(own_letters: Letters) -> None:
    other = own_letters.settings.kafka.topics.retrain_requests  # any existing topic
    result = own_letters.run("replay", "--reason", "undecodable", "--to", other)
    assert result.exit_code == 0, result.output
    replayed = [r for r in asyncio.run(_read(own_letters.settings, other)) if r[0] == b"r-2"]
    assert [value for _, value, _ in replayed] == [b"\xff\xfe\x00binary"]


def test_a_truncated_original_is_refused_with_the_reason_and_exit_code_1(
    own_letters: Letters,
) -> None:
    feedback = own_letters.settings.kafka.topics.feedback
    result = own_letters.run("replay", "0:2")
    assert result.exit_code == 1
    assert "refused 0:2: the original was 5,000,000 bytes, cut to 10" in result.stdout
    assert "sent 0, refused 1, skipped 0 duplicates" in result.stdout
    assert asyncio.run(_read(own_letters.settings, feedback)) == []


def test_list_keeps_at_most_the_limit_but_counts_every_match(letters: Letters) -> None:
    result = letters.run("list", "--limit", "1")
    assert result.exit_code == 0, result.output
    assert "1 letters shown of 3 matching, 4 read" in result.stderr


def test_a_record_dead_lettered_by_two_consumers_is_replayed_once(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    params = unique_params(tmp_path, kafka_bootstrap)
    settings = load_settings(params, environ={})
    topics = settings.kafka.topics
    twins = [
        _letter(
            settings,
            source=topics.feedback,
            value=b'{"request_id": "r-9"}',
            key=b"r-9",
            reason=Reason.INVALID,
            consumer=consumer,
            seen=T0,
            offset=12,
        )
        for consumer in ("streams.join", "gateway.audit")
    ]

    async def prepare() -> None:
        await ensure_topics(settings.kafka)
        producer = make_producer(settings.kafka)
        await producer.start()
        try:
            for record in twins:
                await send(producer, record)
        finally:
            await producer.stop()

    asyncio.run(prepare())
    twin = Letters(params, settings, LabeledSample(request_id="r", features=SETOSA, true_label="a"))

    result = twin.run("replay", "--all")

    assert result.exit_code == 0, result.output
    assert f"skipped 0:1: same origin ({topics.feedback}[1]@12) as 0:0" in result.stdout
    assert "sent 1, refused 0, skipped 1 duplicates" in result.stdout
    replayed = asyncio.run(_read(settings, topics.feedback))
    assert [value for _, value, _ in replayed] == [b'{"request_id": "r-9"}']


def _cli(letters: Letters, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRISFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "irisflow.cli", "--params", str(letters.params), "dlq", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("replay",), "say which letters to replay: positions (0:17), a filter"),
        (("replay", "--all", "--to", "no.such.topic"), "topic no.such.topic does not exist"),
        (("show", "0:99"), "no dead letter at 0:99: `irisflow dlq list` shows"),
        (("show", "zero"), "'zero' is not a dead-letter position"),
        (("list", "--since", "last week"), "'last week' is not a time: give ISO 8601"),
        (("list", "--reason", "bogus"), "unknown reason 'bogus': use one of undecodable"),
    ],
)
def test_mistakes_are_one_line_saying_what_to_do(
    letters: Letters, args: tuple[str, ...], message: str
) -> None:
    done = _cli(letters, *args)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("irisflow: error:")]
    assert len(errors) == 1, done.stderr
    assert message in errors[0]
