"""After a fault drill: read every irisflow topic and count, per topic, what was lost,
duplicated and reordered, and which answers are wrong.

Why a checker rather than a few assertions per test: a broker failure can lose or repeat
records anywhere (a request the gateway acknowledged, an answer, a labeled sample, a model
version), and only a reading of every topic against what the clients were told shows it. The
counts follow Jepsen's Kafka workload, adapted to what irisflow promises:

- **lost**: promised but absent. A request a client saw accepted (200/202) missing from the
  requests topic; a request on the topic with no answer on the predictions topic; accepted
  feedback missing from the feedback topic; feedback on an answered request with no labeled
  sample (when the drill expects every one to be joined); a model version the trainer
  published missing from model-updates; a retrain request ``irisflow retrain`` had
  acknowledged missing from its topic.
- **duplicated**: the same key and content more than once (timestamps, latencies and the
  replica that sent it left out of "content"): what at-least-once delivery may cost, and what
  idempotent producers keep from growing on their own retries.
- **reordered**: within one partition, a record that comes after one its client sent later.
  Request ids carry ``<run>.<lane>.<sequence>``, and each lane waits for one call before it
  makes the next, so records of one lane must appear in sequence order wherever they share a
  partition; model versions must appear in version order. Only the first record of a key
  counts (a redelivered one is a duplicate, not a reordering).
- **wrong**: an answer whose ``input_digest`` is not its request's, or whose label is not what
  that model version gives for that input (on the topic or as told to a client over HTTP).

Pure functions over records (:class:`Rec`), so :mod:`tests.cluster.test_checker` can feed it
forged topics; :func:`read_topics` reads the real ones.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from irisflow.kafka.clients import assign_all, behind, make_consumer
from irisflow.registry import load_update
from irisflow.schemas import ModelUpdate
from irisflow.settings import ArtifactSettings, KafkaSettings, TopicNames
from irisflow.tracing import HEDGE_OF

__all__ = [
    "Call",
    "Ledger",
    "Rec",
    "Report",
    "Row",
    "check",
    "labeler",
    "lane_id",
    "read_topics",
    "settled",
]

VOLATILE = frozenset(
    {
        "sent_at",
        "scored_at",
        "labeled_at",
        "detected_at",
        "requested_at",
        "first_seen",
        "created_at",
        "latency_seconds",
        "worker_seconds",
        "reply_to",
    }
)
"""Fields that differ between two sendings of the same thing (when, how fast, which replica)."""

_LANE_ID = re.compile(r"^(?P<run>[A-Za-z0-9]+)\.(?P<lane>[0-9]+)\.(?P<seq>[0-9]+)$")

LabelOf = Callable[[int, Mapping[str, float]], str | None]
"""The label model version ``v`` gives for ``features`` (``None``: that version is unknown)."""


def lane_id(run: str, lane: int, seq: int) -> str:
    """A request id that says which client lane sent it and in what order."""
    return f"{run}.{lane}.{seq:06d}"


def _lane_of(key: str) -> tuple[str, int] | None:
    match = _LANE_ID.match(key)
    if match is None:
        return None
    return f"{match['run']}.{match['lane']}", int(match["seq"])


@dataclass(frozen=True)
class Rec:
    """One record as read back: where it is, and its raw key, value and headers."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def rid(self) -> str:
        return (self.key or b"").decode(errors="replace")

    def json(self) -> dict[str, Any] | None:
        try:
            body = orjson.loads(self.value or b"")
        except orjson.JSONDecodeError:
            return None
        return body if isinstance(body, dict) else None


@dataclass(frozen=True)
class Call:
    """A prediction a client saw accepted: what it sent and what it was told."""

    features: Mapping[str, float]
    label: str | None = None
    model_version: int | None = None
    truth: str | None = None
    """The input's true label (the feedback a client gives for it)."""


@dataclass
class Ledger:
    """What the clients were told; the checker holds the topics against it."""

    accepted: dict[str, Call] = field(default_factory=dict)
    """Request id → the accepted call (200, or 202 with ``?wait=false``)."""
    attempted: set[str] = field(default_factory=set)
    """Every request id a client tried, accepted or not."""
    feedback: dict[str, str] = field(default_factory=dict)
    """Request id → the label of feedback accepted with 202."""
    gave_up: list[str] = field(default_factory=list)
    """Calls (``predict <id>``, ``feedback <id>``) never accepted within the client's patience."""
    refused: list[str] = field(default_factory=list)
    """Calls answered with a 4xx: never expected from the drill's well-formed traffic."""
    expect_joined: bool = False
    """Whether every accepted feedback on an answered request must become a labeled sample."""
    versions: set[int] = field(default_factory=set)
    """Model versions that must be on model-updates."""
    retrains_acknowledged: int = 0
    """Retrain requests the broker acknowledged (``irisflow retrain`` succeeded)."""
    retried: Counter[str] = field(default_factory=Counter)
    """What made clients retry (``503``, ``504``, ``ReadTimeout``, …), attempt by attempt."""
    slowest: float = 0.0
    """Seconds the slowest accepted call took, its retries included."""

    def merge(self, other: Ledger) -> None:
        self.accepted.update(other.accepted)
        self.attempted |= other.attempted
        self.feedback.update(other.feedback)
        self.gave_up += other.gave_up
        self.refused += other.refused
        self.retried.update(other.retried)
        self.slowest = max(self.slowest, other.slowest)


@dataclass
class Row:
    """One topic's counts."""

    topic: str
    records: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: int = 0
    reordered: int = 0
    note: str = ""


@dataclass
class Report:
    rows: list[Row]
    wrong: list[str]
    ledger: Ledger

    def row(self, topic: str) -> Row:
        return next(row for row in self.rows if row.topic == topic)

    def failures(self) -> list[str]:
        """Everything that breaks the promise: a lost promise or a wrong answer."""
        found = [f"{row.topic}: lost {', '.join(row.lost[:10])}" for row in self.rows if row.lost]
        return found + [f"wrong answer: {why}" for why in self.wrong[:10]]

    def table(self, title: str, *notes: str) -> str:
        """The counts as a Markdown table under ``title``, with ``notes`` (timings) below it."""
        ledger = self.ledger
        lines = [
            f"### {title}",
            "",
            f"clients: {len(ledger.attempted)} requests tried, {len(ledger.accepted)} accepted, "
            f"{len(ledger.feedback)} feedback accepted, {len(ledger.gave_up)} calls gave up, "
            f"{len(ledger.refused)} refused (4xx); wrong answers: {len(self.wrong)}",
            f"retries: {_counts(ledger.retried) or 'none'}; slowest accepted call "
            f"{ledger.slowest:.1f} s (retries included)",
            "",
            "| topic | records | lost | duplicated | reordered | notes |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for row in self.rows:
            lines.append(
                f"| {row.topic} | {row.records} | {len(row.lost)} | {row.duplicated} | "
                f"{row.reordered} | {row.note} |"
            )
        if notes:
            lines += ["", *notes]
        return "\n".join(lines) + "\n"


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{what} x{n}" for what, n in sorted(counter.items()))


def _content(rec: Rec) -> tuple[str, bytes]:
    """Key and content of a record, what differs between two sendings of it left out."""
    body = rec.json()
    if body is None:
        return rec.rid, rec.value or b""
    kept = {k: v for k, v in body.items() if k not in VOLATILE}
    return rec.rid, orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)


def _duplicated(recs: Iterable[Rec], identity: Callable[[Rec], Any] = _content) -> int:
    counts = Counter(identity(rec) for rec in recs)
    return sum(n - 1 for n in counts.values() if n > 1)


def _reordered(recs: Iterable[Rec], order: Callable[[Rec], tuple[str, int] | None]) -> int:
    """Records that come, within their partition, after a later one of their group (a lane's
    request sent later, a newer model version); a repeat of one already seen is not counted."""
    highest: dict[tuple[int, str], int] = {}
    seen: set[tuple[int, str, int]] = set()
    count = 0
    for rec in sorted(recs, key=lambda r: (r.partition, r.offset)):
        place = order(rec)
        if place is None or (rec.partition, *place) in seen:
            continue
        seen.add((rec.partition, *place))
        group, seq = place
        top = highest.get((rec.partition, group))
        if top is not None and seq < top:
            count += 1
        highest[(rec.partition, group)] = max(seq, top if top is not None else seq)
    return count


def _by_lane(rec: Rec) -> tuple[str, int] | None:
    return _lane_of(rec.rid)


def _by_version(rec: Rec) -> tuple[str, int] | None:
    body = rec.json()
    version = body.get("version") if body else None
    return (rec.rid, version) if isinstance(version, int) else None


Asked = dict[str, tuple[int, dict[str, Any]]]
"""Request id → the partition and body of its first original record (hedged copies aside)."""


def _requests_row(recs: Sequence[Rec], ledger: Ledger) -> tuple[Row, Asked]:
    originals = [rec for rec in recs if HEDGE_OF not in dict(rec.headers)]
    first: Asked = {}
    for rec in originals:
        body = rec.json()
        if body is not None:
            first.setdefault(rec.rid, (rec.partition, body))
    row = Row(
        "requests",
        records=len(recs),
        lost=sorted(rid for rid in ledger.accepted if rid not in first),
        duplicated=_duplicated(originals),
        reordered=_reordered(originals, _by_lane),
        note=f"{len(recs) - len(originals)} hedged copies",
    )
    return row, first


def _answer_wrong(
    rid: str, body: Mapping[str, Any], asked: Mapping[str, Any] | None, label_of: LabelOf
) -> str | None:
    if asked is None:
        return None
    if body.get("input_digest") != asked.get("input_digest"):
        return f"{rid}: answer digest {body.get('input_digest')} != {asked.get('input_digest')}"
    label, version, features = body.get("label"), body.get("model_version"), asked.get("features")
    if label is None or not isinstance(version, int) or not isinstance(features, dict):
        return None
    expected = label_of(version, features)
    if expected is not None and expected != label:
        return f"{rid}: version {version} says {expected}, the answer says {label}"
    return None


def _predictions_row(
    recs: Sequence[Rec], asked: Asked, ledger: Ledger, label_of: LabelOf
) -> tuple[Row, list[str], set[str], set[str]]:
    """Answers are written to the partition of the request they answer, so the answer to a
    hedged copy is in another partition than its original's. A request answered by its copy
    is left out of the order check: its original's answer may come after the lane's next."""
    answered: set[str] = set()
    succeeded: set[str] = set()
    wrong: list[str] = []
    for rec in recs:
        body = rec.json()
        if body is None:
            continue
        answered.add(rec.rid)
        if body.get("label") is not None:
            succeeded.add(rec.rid)
        request = asked.get(rec.rid)
        problem = _answer_wrong(rec.rid, body, request and request[1], label_of)
        if problem is not None:
            wrong.append(problem)
    copies = [rec for rec in recs if rec.rid in asked and rec.partition != asked[rec.rid][0]]
    copied = {rec.rid for rec in copies}
    keys = Counter(rec.rid for rec in recs)
    unanswered = sorted((set(asked) | set(ledger.accepted)) - answered)
    row = Row(
        "predictions",
        records=len(recs),
        lost=unanswered,
        duplicated=_duplicated(recs),
        reordered=_reordered([rec for rec in recs if rec.rid not in copied], _by_lane),
        note=f"{sum(1 for n in keys.values() if n > 1)} requests answered more than once, "
        f"{len(copies)} answers to hedged copies",
    )
    return row, wrong, succeeded, copied


def _told_wrong(ledger: Ledger, label_of: LabelOf) -> list[str]:
    """Answers given to clients over HTTP that the model would not give."""
    wrong = []
    for rid, call in ledger.accepted.items():
        if call.label is None or call.model_version is None:
            continue
        expected = label_of(call.model_version, call.features)
        if expected is not None and expected != call.label:
            wrong.append(f"{rid}: told {call.label}, version {call.model_version} says {expected}")
    return wrong


def _models_row(recs: Sequence[Rec], ledger: Ledger) -> Row:
    versions = [v for rec in recs if (p := _by_version(rec)) is not None for v in [p[1]]]
    return Row(
        "model-updates",
        records=len(recs),
        lost=[str(v) for v in sorted(ledger.versions - set(versions))],
        duplicated=_duplicated(recs, lambda r: _by_version(r) or (r.rid, -1)),
        reordered=_reordered(recs, _by_version),
        note=f"versions {', '.join(map(str, versions))}",
    )


def _simple_row(name: str, recs: Sequence[Rec], note: str = "") -> Row:
    return Row(name, records=len(recs), duplicated=_duplicated(recs), note=note)


def check(
    topics: Mapping[str, Sequence[Rec]],
    names: TopicNames,
    ledger: Ledger,
    label_of: LabelOf,
    *,
    run: str | None = None,
) -> Report:
    """Every topic of ``names`` held against ``ledger`` (see the module docstring); with
    ``run``, the topics keyed by request id count only that run's ids (drills sharing a stack)."""
    keyed = {names.requests, names.predictions, names.feedback, names.labeled}

    def of(name: str) -> Sequence[Rec]:
        recs = topics.get(name, ())
        if run is None or name not in keyed:
            return recs
        return [rec for rec in recs if rec.rid.startswith(run + ".")]

    requests, asked = _requests_row(of(names.requests), ledger)
    predictions, wrong, succeeded, copied = _predictions_row(
        of(names.predictions), asked, ledger, label_of
    )
    feedback = of(names.feedback)
    present = {rec.rid for rec in feedback}
    labeled = of(names.labeled)
    joined = {rec.rid for rec in labeled}
    unjoined = [
        rid
        for rid in sorted(ledger.feedback)
        if ledger.expect_joined and rid in succeeded and rid not in joined
    ]
    retrains = of(names.retrain_requests)
    letters = Counter(str((rec.json() or {}).get("reason")) for rec in of(names.dead_letters))
    rows = [
        requests,
        predictions,
        Row(
            "feedback",
            records=len(feedback),
            lost=sorted(rid for rid in ledger.feedback if rid not in present),
            duplicated=_duplicated(feedback),
            reordered=_reordered(feedback, _by_lane),
        ),
        Row(
            "labeled",
            records=len(labeled),
            lost=unjoined,
            duplicated=_duplicated(labeled),
            # a copy's answer is not joined: its sample waits for the original's, maybe late
            reordered=_reordered([r for r in labeled if r.rid not in copied], _by_lane),
            note="every join expected" if ledger.expect_joined else "",
        ),
        _models_row(of(names.model_updates), ledger),
        Row(
            "retrain-requests",
            records=len(retrains),
            lost=[f"{ledger.retrains_acknowledged - len(retrains)} acknowledged"]
            if len(retrains) < ledger.retrains_acknowledged
            else [],
            duplicated=_duplicated(retrains),
        ),
        _simple_row("drift-events", of(names.drift_events)),
        _simple_row(
            "dead-letters",
            of(names.dead_letters),
            ", ".join(f"{reason} {n}" for reason, n in sorted(letters.items())),
        ),
    ]
    return Report(rows, wrong + _told_wrong(ledger, label_of), ledger)


def labeler(model_updates: Sequence[Rec], artifacts: ArtifactSettings) -> LabelOf:
    """What each version on the topic answers: its estimator, loaded as every worker loads it."""
    models: dict[int, tuple[Any, list[str]]] = {}
    for rec in model_updates:
        try:
            update = ModelUpdate.from_bytes(rec.value or b"")
            models[update.version] = (load_update(update, artifacts), update.feature_names)
        except Exception:  # a version every reader refuses answers nothing
            continue

    def label_of(version: int, features: Mapping[str, float]) -> str | None:
        if version not in models:
            return None
        model, names = models[version]
        row = np.array([[float(features[n]) for n in names]], dtype=np.float64)
        probabilities = model.predict_proba(row)[0]
        return str(model.classes_[int(np.argmax(probabilities))])

    return label_of


def settled(
    kafka: KafkaSettings, ledger: Ledger, *, run: str | None = None, timeout: float = 60.0
) -> Report:
    """The report once the checker finds nothing missing, or the last one at the deadline:
    a labeled sample may follow its accepted feedback by a poll or a rebalance."""
    deadline = time.monotonic() + timeout
    while True:
        topics = read_topics(kafka)
        label_of = labeler(topics[kafka.topics.model_updates], ArtifactSettings())
        result = check(topics, kafka.topics, ledger, label_of, run=run)
        if not result.failures() or time.monotonic() > deadline:
            return result
        time.sleep(1.0)


def read_topics(kafka: KafkaSettings) -> dict[str, list[Rec]]:
    """Every record of every irisflow topic, from the beginning to the end offsets of now."""

    async def read(topic: str) -> list[Rec]:
        consumer = make_consumer(kafka, group_id=None)
        await consumer.start()
        try:
            tps = await assign_all(consumer, topic, start="beginning")
            end = await consumer.end_offsets(tps)
            found: list[Rec] = []
            while await behind(consumer, end):
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    found += [
                        Rec(
                            r.topic,
                            r.partition,
                            r.offset,
                            r.key,
                            r.value,
                            tuple((k, bytes(v)) for k, v in r.headers or ()),
                        )
                        for r in records
                    ]
            return found
        finally:
            await consumer.stop()

    async def read_all() -> dict[str, list[Rec]]:
        names = list(kafka.topics.model_dump().values())
        return dict(zip(names, await asyncio.gather(*(read(n) for n in names)), strict=True))

    return asyncio.run(read_all())


def by_topic(recs: Iterable[Rec]) -> dict[str, list[Rec]]:
    """Records grouped by topic (for forged topics in tests)."""
    grouped: dict[str, list[Rec]] = defaultdict(list)
    for rec in recs:
        grouped[rec.topic].append(rec)
    return dict(grouped)
