"""Online retraining on a real broker: labels in, a gated version out, served by the worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.model_topic import publish_update
from irisflow.local.broker.runtime import free_port
from irisflow.schemas import LabeledSample, RetrainRequest
from irisflow.settings import Settings, load_settings
from tests.conftest import unique_params
from tests.e2e.conftest import Stack, live_version, records_on
from tests.factories import SETOSA, iris_xy, model_update
from tests.integration.labels import running, send_labeled
from trainer.data import Dataset
from trainer.service import Decision, RetrainingService
from trainer.training import TrainingOutcome, train_on

pytestmark = pytest.mark.kafka

FAST = {"logistic_regression": {"max_iter": 300}, "naive_bayes": {}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("retraining")
    params = unique_params(
        folder,
        kafka_bootstrap,
        **{
            "gateway.port": free_port(),
            "worker.port": free_port(),
            "retraining.min_new_labels": 40,
            "retraining.holdout_fraction": 0.5,
            "training.candidates": FAST,
            "training.cv_folds": 3,
        },
    )
    stack = Stack(params=params, settings=load_settings(params, environ={}), logs=folder)
    asyncio.run(ensure_topics(stack.settings.kafka))
    stack.publish(1)
    stack.start("worker", "worker")
    stack.start("gateway", "gateway")
    try:
        stack.wait_ready()
        yield stack
    finally:
        for role in list(stack.processes):
            stack.stop(role)


def _own_labels(stack: Stack) -> Settings:
    """The stack's settings with a labeled topic of this test's own: labels another test left
    uncommitted in the trainer's group (read, but short of a decision) cannot count here."""
    kafka = stack.settings.kafka
    topics = kafka.topics.model_copy(
        update={"labeled": f"{kafka.topics.labeled}.{uuid.uuid4().hex[:8]}"}
    )
    settings = stack.settings.model_copy(
        update={"kafka": kafka.model_copy(update={"topics": topics})}
    )
    asyncio.run(ensure_topics(settings.kafka))
    return settings


async def _until_read(service: RetrainingService, labels: int, timeout: float = 60) -> None:
    """Wait until the trainer has taken ``labels`` labeled samples (its own counter)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while _labels_seen(service) < labels:
        assert asyncio.get_running_loop().time() < deadline, f"{_labels_seen(service)} labels read"
        await asyncio.sleep(0.1)


def _retrainings_started(service: RetrainingService) -> list[str]:
    """The triggers of the retrainings ``service`` begins from now on, as it begins them."""
    started: list[str] = []
    begin = service.retrain

    async def retrain(trigger: str) -> Decision:
        started.append(trigger)
        return await begin(trigger)

    service.retrain = retrain  # type: ignore[method-assign]
    return started


def _labels_seen(service: RetrainingService) -> float:
    seen = service.metrics.registry.get_sample_value("irisflow_trainer_labeled_samples_total")
    return seen or 0.0


async def _send_labels(settings: Settings, count: int, seed: int) -> None:
    x, y = iris_xy()
    rows = np.random.default_rng(seed).choice(len(y), size=count, replace=True)
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    samples = (
        LabeledSample(
            request_id=f"s{seed}-{i}",
            features=dict(zip(names, map(float, x[row]), strict=True)),
            true_label=str(y[row]),
        )
        for i, row in enumerate(rows)
    )
    await send_labeled(settings.kafka, samples)


async def _next_decision(service: RetrainingService, seen: int, timeout: float = 120) -> Decision:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(service.decisions) <= seen:
        assert asyncio.get_running_loop().time() < deadline, "no retraining decision"
        await asyncio.sleep(0.2)
    return service.decisions[seen]


def _served_version(stack: Stack, wanted: int, timeout: float = 30) -> int | None:
    deadline = time.monotonic() + timeout
    version = None
    while time.monotonic() < deadline:
        body = httpx.post(
            f"{stack.gateway_url}/v1/predict", json={"features": SETOSA}, timeout=10
        ).json()
        version = body.get("model_version")
        if version == wanted:
            break
        time.sleep(0.3)
    return version


def test_labels_past_the_threshold_train_a_version_that_the_worker_serves(stack: Stack) -> None:
    before = live_version(stack)
    settings = _own_labels(stack)

    async def scenario() -> Decision:
        service = RetrainingService(settings)
        started = _retrainings_started(service)
        async with running(service):
            await _send_labels(settings, 30, seed=1)
            await _until_read(service, 30)
            # A retraining begins in the same loop step that reads the label reaching the
            # threshold, so once 30 are read it would already have begun: 30 < 40, none has.
            assert started == []
            await _send_labels(settings, 20, seed=2)
            return await _next_decision(service, 0)

    decision = asyncio.run(scenario())
    assert decision.trigger == "labels"
    assert decision.gate.promoted, decision.gate.reason
    assert decision.version is not None
    assert decision.version > before
    assert decision.gate.holdout_size >= 20  # half of the 40+ labels seen when it triggered
    assert _served_version(stack, decision.version) == decision.version
    log = (stack.settings.registry_dir / "decisions.jsonl").read_text().splitlines()
    assert '"outcome": "promoted"' in log[-1]
    assert (stack.settings.registry_dir / f"v{decision.version:04d}" / "card.md").exists()


def test_a_challenger_trained_on_shuffled_labels_is_rejected_and_the_old_version_keeps_serving(
    stack: Stack,
) -> None:
    def shuffled(data: Dataset) -> TrainingOutcome:
        noise = np.random.default_rng(7).permutation(data.y)
        return train_on(
            Dataset(data.X, noise, data.feature_names, data.class_labels, "shuffled", data.source),
            stack.settings.training,
            show_progress=False,
        )

    before = live_version(stack)
    settings = _own_labels(stack)

    async def scenario() -> Decision:
        async with running(RetrainingService(settings, train=shuffled)) as service:
            await _send_labels(settings, 60, seed=3)
            return await _next_decision(service, 0)

    decision = asyncio.run(scenario())
    assert not decision.gate.promoted
    assert decision.version is None
    assert decision.gate.challenger_score is not None
    assert decision.gate.champion_score is not None
    assert decision.gate.challenger_score < decision.gate.champion_score - 0.02
    assert live_version(stack) == before
    assert _served_version(stack, before) == before
    assert '"outcome": "rejected"' in (stack.settings.registry_dir / "decisions.jsonl").read_text()


def _irisflow(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``irisflow`` command, run as a user runs it, with the stack's params file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRISFLOW_")}
    command = [sys.executable, "-m", "irisflow.cli", "--params", str(stack.params), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, env=env
    )


def test_irisflow_retrain_makes_the_running_trainer_retrain_without_new_labels(
    stack: Stack,
) -> None:
    """``irisflow retrain --json`` reaches a running trainer through the broker, which decides
    (``manual``) and publishes a version the worker serves; the JSON names what was sent."""
    before = live_version(stack)
    settings = _own_labels(stack)
    topic = settings.kafka.topics.retrain_requests
    requests_before = len(records_on(settings.kafka, topic))

    async def scenario() -> tuple[subprocess.CompletedProcess[str], Decision]:
        async with running(RetrainingService(settings)) as service:
            done = await asyncio.to_thread(
                _irisflow, stack, "retrain", "--reason", "from a test", "--json"
            )
            assert done.returncode == 0, done.stderr[-2000:]
            return done, await _next_decision(service, 0)

    done, decision = asyncio.run(scenario())
    printed = json.loads(done.stdout)
    record = records_on(settings.kafka, topic)[requests_before]
    request = RetrainRequest.from_bytes(record.value)
    assert (request.reason, request.requested_by) == ("from a test", "cli")
    assert (printed["reason"], printed["model_name"]) == ("from a test", settings.model_name)
    assert (printed["topic"], printed["partition"]) == (topic, record.partition)
    assert decision.trigger == "manual"
    assert decision.gate.promoted, decision.gate.reason  # no held-out labels: a person decides
    assert decision.version is not None
    assert decision.version > before
    assert _served_version(stack, decision.version) == decision.version
    entry = json.loads((settings.registry_dir / "decisions.jsonl").read_text().splitlines()[-1])
    assert (entry["trigger"], entry["outcome"], entry["version"]) == (
        "manual",
        "promoted",
        decision.version,
    )


def test_a_tampered_artifact_is_refused_and_the_current_version_keeps_serving(stack: Stack) -> None:
    good = model_update(50)
    tampered = model_update(51, artifact=good.artifact[:-10] + b"0123456789", sha256=good.sha256)
    asyncio.run(publish_update(stack.settings.kafka, tampered))
    worker_health = f"http://127.0.0.1:{stack.settings.worker.port}/health"
    deadline = time.monotonic() + 30
    refused: list[int] = []
    while time.monotonic() < deadline and 51 not in refused:
        refused = httpx.get(worker_health, timeout=5).json()["refused_versions"]
        time.sleep(0.2)
    assert 51 in refused
    served = httpx.post(
        f"{stack.gateway_url}/v1/predict", json={"features": SETOSA}, timeout=10
    ).json()
    assert served["model_version"] != 51
    assert served["label"] == "setosa"
    log = Path(stack.logs / "worker.log").read_text(errors="replace")
    assert "refused iris version 51" in log
