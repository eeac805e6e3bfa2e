"""Hostile input on every topic, on the real broker, while real traffic flows.

A worker, a gateway and a trainer run as processes. A client sends predictions and feedback
over HTTP the whole time (with duplicated feedback and feedback that comes before its request).
Meanwhile hypothesis generates malformed records for every topic — not JSON, invalid UTF-8 in
key or value, wrong types, missing fields, NaN/±Infinity/1e309 literals, 1e39 and 1e308
features, huge strings and lists, keys that are not the value's id, tombstones, unknown
request ids, broken model versions, rollout states that are not states, and batches in the
matrix form with ragged rows, values that are not numbers, names given twice or unknown — and
they are produced straight to Kafka.

Afterwards: every process is still the one that was started (none died or restarted), every
good request was answered 200, every bad record is on ``irisflow.dead-letters`` with a reason
(matched by source topic, partition and offset), the gateway still says version 1 is live,
a rollout whose candidate fails its checksum is refused by the worker (counted, shown on its
health page) while the champion keeps answering, and no process grew past a memory bound.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irisflow.errors import SchemaError
from irisflow.kafka.clients import make_consumer, make_producer
from irisflow.local.broker.runtime import free_port
from irisflow.schemas import DeadLetter, MatrixPredictionRequest, RolloutStage, RolloutState
from irisflow.settings import Settings
from irisflow.topics import Reason, Refused, Topics
from tests.e2e.conftest import Stack, eventually, launch_stack, stop_all
from tests.factories import SETOSA, VIRGINICA, forged_update, model_update

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

EXAMPLES_PER_TOPIC = 40
RSS_BOUND_MB = 700
"""Each process stays under this after the campaign (measured: worker ~330 MB, gateway ~260
MB, trainer ~250 MB on Iris; the bound leaves room for a slower machine's allocator)."""

Forged = tuple[bytes | None, bytes | None]
"""(key, value) of one record to produce."""


def _rid() -> st.SearchStrategy[str]:
    return st.uuids().map(lambda u: f"hostile-{u.hex[:16]}")


def _request(rid: str) -> dict[str, Any]:
    return {"request_id": rid, "features": dict(SETOSA), "sent_at": time.time()}


def _matrix_request(rid: str) -> dict[str, Any]:
    """The gateway's batch form: feature names once, then one row of numbers per instance."""
    rows = [list(SETOSA.values()), list(VIRGINICA.values())]
    return {"request_id": rid, "feature_names": list(SETOSA), "rows": rows, "sent_at": time.time()}


def _prediction(rid: str) -> dict[str, Any]:
    return {
        "request_id": rid,
        "label": "setosa",
        "probabilities": {"setosa": 1.0},
        "model_version": 1,
        "scored_at": time.time(),
    }


def _feedback(rid: str) -> dict[str, Any]:
    return {"request_id": rid, "label": "setosa", "labeled_at": time.time()}


def _labeled(rid: str) -> dict[str, Any]:
    return {
        "request_id": rid,
        "features": dict(SETOSA),
        "true_label": "setosa",
        "predicted_label": "setosa",
        "model_version": 1,
        "labeled_at": time.time(),
    }


def _drift(rid: str) -> dict[str, Any]:
    return {
        "model_name": "iris",
        "model_version": 1,
        "feature": "petal_length",
        "detector": "ks",
        "statistic": 0.5,
        "threshold": 0.15,
        "window": 300,
    }


def _retrain(rid: str) -> dict[str, Any]:
    return {"model_name": "iris", "reason": f"hostile {rid}", "requested_by": "tests"}


def _model_update(rid: str) -> dict[str, Any]:
    return orjson.loads(model_update(99).to_bytes())  # type: ignore[no-any-return]


def _rollout(rid: str) -> dict[str, Any]:
    """A rollout state as the controller writes it (without the candidate's bytes: every
    generated one is refused by the codec before a candidate would matter)."""
    return {
        "model_name": "iris",
        "rollout_id": rid,
        "stage": "canary",
        "candidate_version": 2,
        "champion_version": 1,
        "share": 0.5,
        "updated_at": time.time(),
    }


def _rollout_command(rid: str) -> dict[str, Any]:
    return {
        "model_name": "iris",
        "command_id": rid,
        "action": "abort",
        "reason": "hostile",
        "requested_by": "tests",
        "requested_at": time.time(),
    }


def _shadow(rid: str) -> dict[str, Any]:
    return {
        "request_id": rid,
        "rollout_id": "hostile-rollout",
        "mode": "shadow",
        "version": 2,
        "served_version": 1,
        "labels": ["setosa"],
        "served_labels": ["setosa"],
        "confidences": [0.9],
        "served_confidences": [0.9],
        "error": None,
        "seconds": 0.001,
        "scored_at": time.time(),
    }


@dataclass(frozen=True)
class Shape:
    """How a valid value of one topic looks, which fields it needs, and how it is keyed."""

    build: Callable[[str], dict[str, Any]]
    required: tuple[str, ...]
    numbers: tuple[str, ...]
    strings: tuple[str, ...]
    key: Callable[[dict[str, Any]], str]


def _by_id(body: dict[str, Any]) -> str:
    return str(body["request_id"])


SHAPES: dict[str, Shape] = {
    "requests": Shape(_request, ("request_id", "features"), ("sent_at",), ("request_id",), _by_id),
    "requests_matrix": Shape(
        _matrix_request,
        ("request_id", "feature_names", "rows"),
        ("sent_at",),
        ("request_id",),
        _by_id,
    ),
    "predictions": Shape(
        _prediction, ("request_id",), ("scored_at", "model_version"), ("label",), _by_id
    ),
    "feedback": Shape(
        _feedback, ("request_id", "label"), ("labeled_at",), ("label", "request_id"), _by_id
    ),
    "labeled": Shape(
        _labeled,
        ("request_id", "features", "true_label"),
        ("labeled_at",),
        ("true_label",),
        _by_id,
    ),
    "drift_events": Shape(
        _drift,
        ("model_name", "feature", "detector", "statistic", "threshold", "window"),
        ("statistic", "threshold"),
        ("feature",),
        lambda b: f"{b['feature']}/{b['detector']}",
    ),
    "retrain_requests": Shape(
        _retrain,
        ("model_name", "reason"),
        ("requested_at",),
        ("reason", "requested_by"),
        lambda b: str(b["model_name"]),
    ),
    "model_updates": Shape(
        _model_update,
        ("model_name", "version", "sha256", "artifact", "feature_names"),
        ("version", "created_at"),
        ("algorithm",),
        lambda b: str(b["model_name"]),
    ),
    "rollouts": Shape(
        _rollout,
        ("model_name",),
        ("share", "updated_at"),
        ("model_name", "rollout_id"),
        lambda b: str(b["model_name"]),
    ),
}
SHAPES["rollout_commands"] = Shape(
    _rollout_command,
    ("model_name", "command_id", "action"),
    ("requested_at",),
    ("reason", "requested_by"),
    lambda b: str(b["model_name"]),
)
SHAPES["shadow_predictions"] = Shape(
    _shadow,
    ("request_id", "rollout_id", "mode", "version", "served_version"),
    ("seconds", "scored_at"),
    ("rollout_id", "error"),
    _by_id,
)
READ_BY = {"rollouts": "streams.rollout-follower", "rollout_commands": "trainer.rollout"}
READ_BY["shadow_predictions"] = "trainer.rollout"
"""Topics whose only reader is named: each bad record there must be that reader's letter."""
TOPIC_OF = {"requests_matrix": "requests"}
"""Shapes that travel on another kind's topic (the requests topic carries both forms)."""
MATRIX_FAULTS = ["ragged", "not_numbers", "names_twice", "unknown_names", "matrix_domain"]
"""What only a matrix can get wrong: rows of other lengths, values that are not numbers, a name
given twice, names the model does not have, a value beyond its domain."""


def _matrix_fault(draw: st.DrawFn, how: str, body: dict[str, Any]) -> dict[str, Any]:
    rows, names = body["rows"], body["feature_names"]
    if how == "ragged":
        return {**body, "rows": [rows[0], rows[1][: draw(st.integers(0, 3))]]}
    if how == "not_numbers":
        odd = draw(st.sampled_from(["5.1", True, None, [1.0], {"v": 1}]))
        return {**body, "rows": [rows[0], [*rows[1][:3], odd]]}
    if how == "names_twice":
        return {**body, "feature_names": [*names[:3], names[0]]}
    if how == "unknown_names":
        return {**body, "feature_names": [*names[:3], draw(st.sampled_from(["colour", "x"]))]}
    value = draw(st.sampled_from([1e39, -1e39, 1e308, -1.7e308, 3.5e38]))  # matrix_domain
    return {**body, "rows": [rows[0], [*rows[1][:3], value]]}


WRONG_TYPES = st.sampled_from([[1, 2], {"nested": [1]}, [], {"a": {"b": None}}])
NON_FINITE = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e309", "-1e309"])
BAD_KEYS = st.one_of(
    st.none(),
    st.binary(min_size=1, max_size=20).filter(lambda b: b"\xff" in b or not b.isascii()),
    st.just(b"\xff\xfe\xfd"),
)


def _with_literal(body: dict[str, Any], field_name: str, literal: str) -> bytes:
    """``body`` as JSON with one number replaced by a literal JSON parsers disagree on."""
    marker = 987654.125
    text = orjson.dumps({**body, field_name: marker}).decode()
    return text.replace(repr(marker), literal).encode()


def malformed(kind: str) -> st.SearchStrategy[Forged]:
    """Records of one topic that every consumer of it must refuse."""
    shape = SHAPES[kind]

    @st.composite
    def build(draw: st.DrawFn) -> Forged:
        body = shape.build(draw(_rid()))
        key = shape.key(body).encode()
        how = draw(
            st.sampled_from(
                [
                    "not_json",
                    "utf8",
                    "wrong_type",
                    "missing",
                    "non_finite",
                    "huge_string",
                    "bad_key",
                    "tombstone",
                    "not_object",
                ]
                + (["domain", "huge_features"] if "features" in body else [])
                + (MATRIX_FAULTS if "rows" in body else [])
            )
        )
        if how in MATRIX_FAULTS:
            return key, orjson.dumps(_matrix_fault(draw, how, body))
        if how == "not_json":
            raw = draw(st.binary(min_size=1, max_size=200))
            return key, raw if not _parses(raw) else b"{" + raw
        if how == "utf8":
            return key, orjson.dumps(body)[:-1] + b',"x":"\xff\xfe"}'
        if how == "wrong_type":
            name = draw(st.sampled_from(shape.required))
            return key, orjson.dumps({**body, name: draw(WRONG_TYPES)})
        if how == "missing":
            name = draw(st.sampled_from(shape.required))
            return key, orjson.dumps({k: v for k, v in body.items() if k != name})
        if how == "non_finite":
            return key, _with_literal(body, draw(st.sampled_from(shape.numbers)), draw(NON_FINITE))
        if how == "huge_string":
            size = draw(st.sampled_from([5_000, 100_000, 2_000_000]))
            return key, orjson.dumps({**body, draw(st.sampled_from(shape.strings)): "x" * size})
        if how == "bad_key":
            return draw(BAD_KEYS.filter(lambda k: k != key)), orjson.dumps(body)
        if how == "tombstone":
            return key, None
        if how == "not_object":
            return key, orjson.dumps(draw(st.sampled_from([[body], "text", 42, None, True])))
        if how == "domain":
            value = draw(st.sampled_from([1e39, -1e39, 1e308, -1.7e308, 3.5e38]))
            return key, orjson.dumps(
                {**body, "features": {**body["features"], "sepal_width": value}}
            )
        rows = draw(st.sampled_from([20_000, 50_000]))  # huge_features
        return key, orjson.dumps({**body, "features": {f"f{i}": 1.0 for i in range(rows)}})

    return build()


def _parses(raw: bytes) -> bool:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


COMPACTED = {"model_updates", "rollouts"}
"""The broker itself refuses a keyless record on a compacted topic: no consumer can ever see
one, so none is generated there."""


def generate(kind: str, examples: int) -> list[Forged]:
    found: list[Forged] = []
    records = malformed(kind)
    if kind in COMPACTED:
        records = records.filter(lambda record: record[0] is not None)

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(record=records)
    def collect(record: Forged) -> None:
        found.append(record)

    collect()
    return found


@dataclass
class Traffic:
    """Good clients: predictions and feedback over HTTP, bounded in count and time."""

    url: str
    settings: Settings
    answers: dict[str, int] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="good-traffic", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 240
        with httpx.Client(base_url=self.url, timeout=15) as client:
            n = 0
            while not self.stop.is_set() and time.monotonic() < deadline and n < 3000:
                n += 1
                rid = f"good-{n}-{uuid.uuid4().hex[:6]}"
                features, label = (SETOSA, "setosa") if n % 2 else (VIRGINICA, "virginica")
                if n % 7 == 0:  # feedback before its request (out of order)
                    client.post("/v1/feedback", json={"request_id": rid, "label": label})
                response = client.post(
                    "/v1/predict", json={"request_id": rid, "features": features}
                )
                self.answers[rid] = response.status_code
                if response.status_code == 200 and response.json()["label"] != label:
                    self.wrong.append(rid)
                if n % 3 == 0:
                    for _ in range(2 if n % 9 == 0 else 1):  # duplicated feedback
                        client.post("/v1/feedback", json={"request_id": rid, "label": label})
                time.sleep(0.02)

    def wait_answered(self, count: int, timeout: float = 60.0) -> None:
        """Until good clients have had ``count`` answers (a live, bounded run can reach it)."""
        deadline = time.monotonic() + timeout
        assert self.thread is not None
        while len(self.answers) < count:
            assert self.thread.is_alive(), "good traffic stopped"
            assert time.monotonic() < deadline, f"{len(self.answers)} of {count} good answers"
            time.sleep(0.05)

    def finish(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(60)


@pytest.fixture(scope="module")
def hostile_stack(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str
) -> Iterator[Stack]:
    stack = launch_stack(
        tmp_path_factory.mktemp("hostile"),
        kafka_bootstrap,
        roles=("worker", "gateway", "trainer"),
        **{
            "retraining.port": free_port(),
            "retraining.min_new_labels": 100000,
            "streams.join_window_seconds": 3,
            "streams.sweep_interval_seconds": 1,
            "gateway.predict_timeout_seconds": 15,
        },
    )
    try:
        yield stack
    finally:
        stop_all(stack)


async def _produce(
    settings: Settings, batches: dict[str, list[Forged]]
) -> set[tuple[str, int, int]]:
    """Send every forged record; their (topic, partition, offset) once the broker has them."""
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        futures = []
        for topic, records in batches.items():
            for key, value in records:
                futures.append(await producer.send(topic, value=value, key=key))
        sent = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {(meta.topic, meta.partition, meta.offset) for meta in sent}


async def _letters(
    settings: Settings, wanted: set[tuple[str, int, int]], timeout: float
) -> dict[tuple[str, int, int], set[tuple[str, str]]]:
    """Dead letters by origin, read until every wanted origin has one (or the deadline)."""
    consumer = make_consumer(settings.kafka, settings.kafka.topics.dead_letters, group_id=None)
    await consumer.start()
    found: dict[tuple[str, int, int], set[tuple[str, str]]] = {}
    try:
        deadline = time.monotonic() + timeout
        while not wanted <= found.keys() and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    try:
                        letter = DeadLetter.from_bytes(record.value)
                    except SchemaError:  # junk forged onto the dead-letter topic itself
                        continue
                    if letter.partition is None or letter.offset is None:
                        continue
                    origin = (letter.source_topic, letter.partition, letter.offset)
                    found.setdefault(origin, set()).add((letter.reason, letter.consumer))
    finally:
        await consumer.stop()
    return found


def _refused_by_the_model(message: Any) -> None:
    """Raise for a valid message whose features the live model refuses (names or domain)."""
    features = getattr(message, "features", None)
    if isinstance(message, MatrixPredictionRequest):
        if set(message.feature_names) != set(SETOSA):
            raise Refused(Reason.SCHEMA_MISMATCH, "names")
        if max(abs(v) for row in message.rows for v in row) > 1e6:
            raise Refused(Reason.OUT_OF_DOMAIN, "domain")
        return
    if features is None:
        return
    if set(features) != set(SETOSA):
        raise Refused(Reason.SCHEMA_MISMATCH, "names")
    if max(map(abs, features.values())) > 1e6:
        raise Refused(Reason.OUT_OF_DOMAIN, "domain")


def _refused_candidate(settings: Settings) -> dict[str, Any] | None:
    """The worker's refusal of the rollout's candidate, once it is counted and shown."""
    port = settings.worker.port
    health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    counted = any(
        line.startswith("irisflow_candidate_refusals_total ") and float(line.split()[1]) >= 1
        for line in metrics.splitlines()
    )
    refused = (health.get("rollout") or {}).get("candidate_refused")
    return refused if counted and isinstance(refused, dict) else None


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_every_bad_record_costs_a_dead_letter_and_nothing_else(hostile_stack: Stack) -> None:
    stack = hostile_stack
    settings = stack.settings
    names = settings.kafka.topics
    pids = {role: process.pid for role, process in stack.processes.items()}
    topics = Topics.of(settings.kafka)

    batches: dict[str, list[Forged]] = {}
    for kind in SHAPES:  # every forged record is one the codec itself refuses (or out of domain)
        topic = getattr(topics, TOPIC_OF.get(kind, kind))
        forged = generate(kind, EXAMPLES_PER_TOPIC)
        for key, value in forged:
            with pytest.raises(Refused):
                _refused_by_the_model(topic.decode(value, key))
        batches.setdefault(topic.name, []).extend(forged)
    unknown = [f"never-requested-{i}" for i in range(10)]
    batches[names.feedback] += [
        (rid.encode(), orjson.dumps({"request_id": rid, "label": "setosa"})) for rid in unknown
    ]
    broken_versions = [
        forged_update(50, "checksum"),
        forged_update(51, "zip_bomb"),
        forged_update(52, "wrong_features"),
    ]
    batches[names.model_updates] += [(b"iris", update.to_bytes()) for update in broken_versions]
    # A valid rollout state whose candidate fails its checksum: no dead letter (the record is
    # readable), but the worker refuses the candidate and answers with the champion alone.
    broken_rollout = RolloutState(
        model_name="iris",
        rollout_id="hostile-rollout",
        stage=RolloutStage.CANARY,
        candidate_version=60,
        champion_version=1,
        share=0.5,
        candidate=forged_update(60, "checksum"),
    )

    traffic = Traffic(stack.gateway_url, settings)
    traffic.start()
    try:
        traffic.wait_answered(20)  # good clients are being served when the campaign starts
        bad = asyncio.run(_produce(settings, batches))
        asyncio.run(_produce(settings, {names.rollouts: [(b"iris", broken_rollout.to_bytes())]}))
        letters = asyncio.run(_letters(settings, bad, timeout=120))
        refused = eventually(lambda: _refused_candidate(settings), 60)
        traffic.wait_answered(len(traffic.answers) + 20)  # and still are once it is handled
    finally:
        traffic.finish()

    missing = sorted(bad - letters.keys())
    assert not missing, f"{len(missing)} bad records without a dead letter, e.g. {missing[:5]}"
    for kind, reader in READ_BY.items():
        for origin in (origin for origin in bad if origin[0] == getattr(names, kind)):
            assert reader in {consumer for _, consumer in letters[origin]}, (kind, origin)
    assert refused is not None, "the worker did not refuse the rollout's broken candidate"
    assert refused["version"] == 60
    assert "checksum" in refused["error"]
    reasons = {reason for found in letters.values() for reason, _ in found}
    assert reasons <= {str(r) for r in Reason}
    assert {
        "undecodable",
        "invalid",
        "bad_key",
        "out_of_domain",
        "unmatched_feedback",
        "refused_model",
    } <= reasons
    for role, process in stack.processes.items():
        assert process.poll() is None, f"{role} died during the campaign"
        assert process.pid == pids[role]
        assert _rss_mb(process.pid) < RSS_BOUND_MB, f"{role} uses {_rss_mb(process.pid):.0f} MB"
    assert len(traffic.answers) >= 50
    assert set(traffic.answers.values()) == {200}, {
        rid: status for rid, status in traffic.answers.items() if status != 200
    }
    assert traffic.wrong == []
    models = httpx.get(f"{stack.gateway_url}/v1/models", timeout=10).json()
    assert models["live_version"] == 1
    health = httpx.get(f"http://127.0.0.1:{settings.worker.port}/health", timeout=10).json()
    assert health["model_version"] == 1
    assert {50, 51, 52} <= set(health["refused_versions"])


def test_the_incident_that_opened_issue_10_costs_one_dead_letter(hostile_stack: Stack) -> None:
    """Feedback with a NaN timestamp, then a prediction for its id, used to kill the worker
    and stop the whole stack."""
    stack = hostile_stack
    settings = stack.settings
    rid = f"victim-{uuid.uuid4().hex[:8]}"
    poison = b'{"request_id":"%s","label":"setosa","labeled_at":NaN}' % rid.encode()
    (origin,) = asyncio.run(
        _produce(settings, {settings.kafka.topics.feedback: [(rid.encode(), poison)]})
    )
    response = httpx.post(
        f"{stack.gateway_url}/v1/predict",
        json={"request_id": rid, "features": SETOSA},
        timeout=20,
    )
    assert response.status_code == 200, response.text
    assert response.json()["label"] == "setosa"
    letters = asyncio.run(_letters(settings, {origin}, timeout=30))
    assert ("undecodable", "streams.join") in letters[origin]
    assert all(process.poll() is None for process in stack.processes.values())


def test_junk_on_the_dead_letter_topic_itself_is_counted_by_the_dlq_tools_not_fatal(
    hostile_stack: Stack,
) -> None:
    """Nothing in irisflow consumes the dead-letter topic but ``irisflow dlq``: junk there must
    not stop it (and must not be dead-lettered again, which could loop)."""
    stack = hostile_stack
    junk: list[Forged] = [(None, b"\xff\xfe"), (b"k", b"{}"), (b"\xff", None), (b"k", b"[1,2]")]
    junk += [(b"k", value) for _, value in generate("requests", 10)]
    asyncio.run(_produce(stack.settings, {stack.settings.kafka.topics.dead_letters: junk}))
    command = [sys.executable, "-m", "irisflow.cli", "--params", str(stack.params), "dlq", "list"]
    table = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert table.returncode == 0, table.stderr
    unreadable = int(table.stderr.rsplit("; ", 1)[1].split()[0])
    assert unreadable >= len(junk) - 1  # one junk value may happen to be a valid letter
    listed = subprocess.run(
        [*command, "--json"], capture_output=True, text=True, timeout=120, check=False
    )
    assert listed.returncode == 0, listed.stderr
    assert all("reason" in letter for letter in orjson.loads(listed.stdout))
