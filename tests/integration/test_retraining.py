"""Online retraining on a real broker: labels in, a gated version out, served by the worker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.clients import make_producer
from irisflow.kafka.model_topic import publish_update, read_live_update
from irisflow.local.broker.runtime import free_port
from irisflow.schemas import LabeledSample, RetrainRequest
from irisflow.settings import load_settings
from tests.conftest import unique_params
from tests.e2e.conftest import Stack
from tests.factories import SETOSA, iris_xy, model_update
from tests.integration.labels import send_labeled
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


@contextlib.asynccontextmanager
async def running(service: RetrainingService) -> AsyncIterator[RetrainingService]:
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.ready.wait(), 60)
        yield service
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _send_labels(stack: Stack, count: int, seed: int) -> None:
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
    await send_labeled(stack.settings.kafka, samples)


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


def _live_version(stack: Stack) -> int:
    """The version served now, as the gateway reports it (the newest record on the topic may be
    one every reader refused): tests here must not assume which of them ran before."""
    live = httpx.get(f"{stack.gateway_url}/v1/models", timeout=10).json()["live_version"]
    assert isinstance(live, int)
    return live


def test_labels_past_the_threshold_train_a_version_that_the_worker_serves(stack: Stack) -> None:
    before = _live_version(stack)

    async def scenario() -> Decision:
        async with running(RetrainingService(stack.settings)) as service:
            await _send_labels(stack, 30, seed=1)
            await asyncio.sleep(2)
            assert service.decisions == []  # 30 < 40: not yet
            await _send_labels(stack, 20, seed=2)
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

    before = _live_version(stack)

    async def scenario() -> Decision:
        async with running(RetrainingService(stack.settings, train=shuffled)) as service:
            await _send_labels(stack, 60, seed=3)
            return await _next_decision(service, 0)

    decision = asyncio.run(scenario())
    assert not decision.gate.promoted
    assert decision.version is None
    assert decision.gate.challenger_score is not None
    assert decision.gate.champion_score is not None
    assert decision.gate.challenger_score < decision.gate.champion_score - 0.02
    assert _live_version(stack) == before
    assert _served_version(stack, before) == before
    assert '"outcome": "rejected"' in (stack.settings.registry_dir / "decisions.jsonl").read_text()


def test_a_manual_retrain_request_is_acted_on_without_new_labels(stack: Stack) -> None:
    async def scenario() -> Decision:
        async with running(RetrainingService(stack.settings)) as service:
            producer = make_producer(stack.settings.kafka)
            await producer.start()
            request = RetrainRequest(
                model_name=stack.settings.model_name, reason="test", requested_by="pytest"
            )
            await producer.send_and_wait(
                stack.settings.kafka.topics.retrain_requests,
                key=request.model_name.encode(),  # keyed by model name, or dead-lettered
                value=request.to_bytes(),
            )
            await producer.stop()
            return await _next_decision(service, 0)

    decision = asyncio.run(scenario())
    assert decision.trigger == "manual"


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


def test_a_trainer_dying_mid_training_publishes_nothing_and_its_successor_reuses_the_labels(
    stack: Stack,
) -> None:
    started = asyncio.Event()

    def never_finishes(data: Dataset) -> TrainingOutcome:
        started.set()
        time.sleep(3)  # killed before it returns
        raise RuntimeError("the process died")

    async def scenario() -> tuple[int | None, Decision]:
        live_before = await read_live_update(stack.settings.kafka, stack.settings.model_name)
        dying = RetrainingService(stack.settings, train=never_finishes)
        task = asyncio.create_task(dying.run())
        await asyncio.wait_for(dying.ready.wait(), 60)
        await _send_labels(stack, 45, seed=5)
        await asyncio.wait_for(started.wait(), 60)
        task.cancel()  # dies mid-training: no decision, no commit
        with contextlib.suppress(asyncio.CancelledError, RuntimeError):
            await task
        assert dying.decisions == []
        live_after = await read_live_update(stack.settings.kafka, stack.settings.model_name)
        assert live_before is not None
        assert live_after is not None
        assert live_after.version == live_before.version
        async with running(RetrainingService(stack.settings)) as successor:
            return live_before.version, await _next_decision(successor, 0)

    before, decision = asyncio.run(scenario())
    assert decision.trigger == "labels"  # the same uncommitted labels, read again
    assert decision.gate.holdout_size >= 20
    assert decision.gate.promoted
    assert decision.version is not None
    assert before is not None
    assert decision.version > before
