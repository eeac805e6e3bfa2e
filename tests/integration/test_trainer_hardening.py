"""A real ``irisflow trainer`` process on the real broker survives what used to kill it.

Finding 1 of the hardening issue: a labeled sample with ``sepal_length: 1e39`` made every
retraining raise before offsets were committed, so the trainer died, restarted, re-read the same
label and died again. Now the sample is refused at the door (``out_of_domain``), as is one
labelled with a class no model knows (``schema_mismatch``), and, independently, a retraining
that fails anyway is a recorded ``failed`` decision whose pending labels are dead-lettered
(``training_failed``) and committed, after which the service goes on.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import TopicPartition

from irisflow.cli.dead_letters import LetterFilter, read_letters
from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.clients import make_consumer
from irisflow.kafka.model_topic import read_live_update
from irisflow.local.broker.runtime import free_port
from irisflow.registry import LocalRegistry, load_update
from irisflow.schemas import LabeledSample
from irisflow.settings import load_settings
from tests.conftest import unique_params
from tests.e2e.conftest import Stack
from tests.factories import IRIS_FEATURES, iris_xy
from tests.integration.labels import send_labeled

pytestmark = pytest.mark.kafka

ROUND = 40
"""Labels per retraining (retraining.min_new_labels)."""


@pytest.fixture(scope="module")
def trainer(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Stack]:
    """A trainer process with model version 1 live; one partition, so labels arrive in order."""
    folder = tmp_path_factory.mktemp("trainer-hardening")
    params = unique_params(
        folder,
        kafka_bootstrap,
        **{
            "kafka.partitions": 1,
            "retraining.port": free_port(),
            "retraining.min_new_labels": ROUND,
            "retraining.holdout_fraction": 0.5,
            "training.candidates": {"logistic_regression": {"max_iter": 300}, "naive_bayes": {}},
            "training.cv_folds": 3,
        },
    )
    stack = Stack(params=params, settings=load_settings(params, environ={}), logs=folder)
    asyncio.run(ensure_topics(stack.settings.kafka))
    stack.publish(1)
    stack.start("trainer", "trainer")
    try:
        _metrics(stack, timeout=90)
        yield stack
    finally:
        stack.stop("trainer")


def _metrics(stack: Stack, timeout: float = 30) -> str:
    url = f"http://127.0.0.1:{stack.settings.retraining.port}/metrics"
    deadline = time.monotonic() + timeout
    while True:
        process = stack.processes["trainer"]
        assert process.poll() is None, _log(stack)
        try:
            return httpx.get(url, timeout=2).text
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the trainer's metrics never answered"
            time.sleep(0.3)


def _log(stack: Stack) -> str:
    return (stack.logs / "trainer.log").read_text(errors="replace")[-4000:]


def _samples(prefix: str, labels: list[str] | None = None) -> list[LabeledSample]:
    x, y = iris_xy()
    rows = range(0, 150, 150 // ROUND)
    return [
        LabeledSample(
            request_id=f"{prefix}-{i}",
            features=dict(zip(IRIS_FEATURES, map(float, x[row]), strict=True)),
            true_label=labels[i] if labels else str(y[row]),
        )
        for i, row in enumerate(list(rows)[:ROUND])
    ]


def _send(stack: Stack, samples: list[LabeledSample]) -> None:
    asyncio.run(send_labeled(stack.settings.kafka, samples))


def _decisions(stack: Stack, count: int, timeout: float = 120) -> list[dict[str, Any]]:
    path = stack.settings.registry_dir / "decisions.jsonl"
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while len(lines) < count:
        assert stack.processes["trainer"].poll() is None, _log(stack)
        assert time.monotonic() < deadline, f"{len(lines)} decisions, expected {count}"
        time.sleep(0.3)
        lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines]


def _letters(stack: Stack, reason: str, count: int, timeout: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout
    where = LetterFilter(reason=reason, consumer="trainer")
    while True:
        found = asyncio.run(read_letters(stack.settings.kafka, where, progress=False)).letters
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _committed_and_end(stack: Stack) -> tuple[int | None, int]:
    """The trainer group's committed offset on the labeled topic, and the topic's end."""

    async def read() -> tuple[int | None, int]:
        group = f"{stack.settings.kafka.app_id}-trainer"
        consumer = make_consumer(stack.settings.kafka, group_id=group)
        await consumer.start()
        try:
            tp = TopicPartition(stack.settings.kafka.topics.labeled, 0)
            end = await consumer.end_offsets([tp])
            return await consumer.committed(tp), end[tp]
        finally:
            await consumer.stop()

    return asyncio.run(read())


def _until_committed(stack: Stack, timeout: float = 30) -> None:
    """Wait until the trainer's group has committed everything on the labeled topic."""
    deadline = time.monotonic() + timeout
    while (offsets := _committed_and_end(stack))[0] != offsets[1]:
        assert time.monotonic() < deadline, f"committed, end: {offsets}"
        time.sleep(0.3)


def _sample_value(metrics: str, name: str, **labels: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_an_infinite_in_float32_label_is_refused_and_never_reaches_training(
    trainer: Stack,
) -> None:
    outlier = _samples("huge")[0].model_copy(
        update={"features": {**_samples("huge")[0].features, "sepal_length": 1e39}}
    )
    _send(trainer, [outlier])

    (letter,) = _letters(trainer, "out_of_domain", 1)

    assert letter.key == b"huge-0"
    assert letter.letter.original == outlier.to_bytes()
    assert "sepal_length" in letter.letter.error
    assert "float32" in letter.letter.error
    _until_committed(trainer)  # no label waits for a decision: its offset is committed
    assert trainer.processes["trainer"].poll() is None
    labeled = trainer.settings.kafka.topics.labeled
    metrics = _metrics(trainer)
    assert (
        _sample_value(metrics, "irisflow_dead_letters_total", topic=labeled, reason="out_of_domain")
        == 1
    )


def test_a_failing_retraining_is_recorded_its_labels_dead_lettered_and_the_next_one_works(
    trainer: Stack,
) -> None:
    # Labels of a class no model knows are refused at the door, one letter each: they used to
    # fail the retraining and take every pending label down with them.
    strangers = _samples("daisy", ["daisy"] * ROUND)[:2]
    # A failure no sample can be blamed for: the folder the new version would be written to
    # is taken by a file (the retraining trains, wins the gate, then cannot save).
    blocker = trainer.settings.registry_dir / "v0002"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"in the way")
    doomed = _samples("doomed")
    _send(trainer, [*strangers, *doomed])

    (failed,) = _decisions(trainer, 1)

    refused = _letters(trainer, "schema_mismatch", 2)
    assert sorted(s.letter.original for s in refused) == sorted(s.to_bytes() for s in strangers)
    assert all(
        "true_label 'daisy' is not one of the model's classes" in s.letter.error for s in refused
    )
    assert failed["outcome"] == "failed"
    assert failed["trigger"] == "labels"
    assert failed["version"] is None
    assert "FileExistsError" in failed["error"]
    assert failed["dead_lettered"] == ROUND
    letters = _letters(trainer, "training_failed", ROUND)
    assert sorted(s.letter.original for s in letters) == sorted(s.to_bytes() for s in doomed)
    assert all("FileExistsError" in s.letter.error for s in letters)
    committed, end = _committed_and_end(trainer)
    assert committed == end  # every label read, the doomed round included
    metrics = _metrics(trainer)
    assert (
        _sample_value(metrics, "irisflow_retrains_total", trigger="labels", outcome="failed") == 1
    )
    labeled = trainer.settings.kafka.topics.labeled
    assert (
        _sample_value(
            metrics, "irisflow_dead_letters_total", topic=labeled, reason="training_failed"
        )
        == ROUND
    )
    assert "retraining (labels): failed — FileExistsError" in _log(trainer)
    assert trainer.processes["trainer"].poll() is None

    blocker.unlink()
    _send(trainer, _samples("good1"))

    decisions = _decisions(trainer, 2)
    assert decisions[1]["outcome"] == "promoted", decisions[1]
    assert decisions[1]["version"] == 2
    live = asyncio.run(read_live_update(trainer.settings.kafka, trainer.settings.model_name))
    assert live is not None
    assert live.version == 2
    assert live.parent_version == 1
    assert Path(trainer.settings.registry_dir / "v0002" / "metadata.json").exists()
    assert trainer.processes["trainer"].poll() is None


# ------------------------------------------------------------ SIGKILL in the middle of training

SLOW = {"random_forest": {"n_estimators": 2000}}
"""A candidate that takes many seconds to fit on ~170 rows: time enough to be killed mid-way."""


def _pending_labels(stack: Stack) -> float:
    """The trainer's ``irisflow_trainer_pending_labels`` gauge (a sample without labels)."""
    for line in _metrics(stack).splitlines():
        if line.startswith("irisflow_trainer_pending_labels "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _fast_params(slow: Path) -> Path:
    """The same topics, group and registry as ``slow``, with candidates that train in a second."""
    params = yaml.safe_load(slow.read_text())
    params["training"]["candidates"] = {
        "logistic_regression": {"max_iter": 300},
        "naive_bayes": {},
    }
    fast = slow.with_name(f"fast-{slow.name}")
    fast.write_text(yaml.safe_dump(params))
    return fast


@pytest.mark.slow
def test_a_trainer_killed_mid_training_publishes_nothing_and_its_restart_retrains_the_labels(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """README: "Offsets are committed only after a decision, so a trainer that dies re-reads the
    same labels and decides again; a version is published only after it is completely written".
    A real ``irisflow trainer`` process gets SIGKILL (no handler, no cleanup) once it is
    training; a new one on the same group decides on exactly those labels."""
    params = unique_params(
        tmp_path,
        kafka_bootstrap,
        **{
            "kafka.partitions": 1,
            "retraining.port": free_port(),
            "retraining.min_new_labels": ROUND,
            "retraining.holdout_fraction": 0.5,
            "training.candidates": SLOW,
            "training.cv_folds": 3,
        },
    )
    stack = Stack(params=params, settings=load_settings(params, environ={}), logs=tmp_path)
    settings = stack.settings
    asyncio.run(ensure_topics(settings.kafka))
    stack.publish(1)
    stack.start("trainer", "trainer")
    try:
        doomed = _samples("killed")
        _send(stack, doomed)
        # Observably training: every label read and pending, which is the loop step that
        # starts the retraining (the metric drops to 0 only with its decision).
        deadline = time.monotonic() + 90
        while _pending_labels(stack) < ROUND:
            assert time.monotonic() < deadline, "the trainer never started retraining"
            time.sleep(0.1)
        stack.processes["trainer"].send_signal(signal.SIGKILL)
        assert stack.processes["trainer"].wait(30) == -signal.SIGKILL
    finally:
        stack.stop("trainer")

    registry = LocalRegistry(settings.registry_dir)
    assert registry.decisions() == []  # killed before its decision: the kill was mid-training
    assert registry.versions() == []  # nothing written, let alone half of it
    live = asyncio.run(read_live_update(settings.kafka, settings.model_name))
    assert live is not None
    assert live.version == 1
    committed, end = _committed_and_end(stack)
    assert end == ROUND
    assert committed in (None, 0)  # the labels stay uncommitted

    successor = Stack(params=_fast_params(params), settings=settings, logs=tmp_path)
    successor.start("trainer", "trainer")
    try:
        (decision,) = _decisions(successor, 1)
        assert decision["trigger"] == "labels"
        assert decision["holdout_size"] == ROUND // 2  # the same 40 labels, read again
        assert decision["outcome"] == "promoted", decision
        assert decision["version"] == 2
        live = asyncio.run(read_live_update(settings.kafka, settings.model_name))
        assert live is not None
        assert (live.version, live.parent_version, live.trigger) == (2, 1, "labels")
        load_update(live, settings.artifacts)  # published whole: checksum, contract, smoke test
        assert registry.get(2).artifact == live.artifact
        _until_committed(successor)
        assert _committed_and_end(successor) == (ROUND, ROUND)
    finally:
        successor.stop("trainer")
