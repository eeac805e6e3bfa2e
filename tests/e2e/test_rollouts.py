"""Safe rollouts with real processes on the real broker, while traffic flows (issue 14's Done).

One worker, two gateways and the trainer (whose rollout controller writes the state). Requests go
to both gateways in turn at a steady rate the whole time; every one must be answered 200.

- A good candidate goes shadow → canary → live by the policy alone.
- A bad candidate (fitted on shuffled labels) started in canary is rolled back by the policy, and
  the clients in its share got at most the policy's budget of its answers (and nobody else any).
- A rollout survives a worker restart: the restarted worker routes the same ids to the candidate.
- Both gateways report the same rollout.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from irisflow.local.broker.runtime import free_port
from irisflow.registry import LocalRegistry
from irisflow.rollout import point_of
from tests.e2e.conftest import Stack, eventually, launch_stack, live_version, stop_all
from tests.factories import SETOSA, VIRGINICA, fitted_pipeline, model_update

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow]

KEY = "rollout-e2e-key"
BUDGET = 150
POLICY: dict[str, Any] = {
    "rollout.min_samples": 40,
    "rollout.min_stage_seconds": 2,
    "rollout.canary_share": 0.3,
    "rollout.canary_budget": BUDGET,
    "rollout.evaluate_interval_seconds": 0.5,
    "rollout.min_labels": 10_000,  # no feedback here: the label-free estimate and agreement decide
    "gateway.api_key": KEY,
    "retraining.min_new_labels": 100_000,
}
RATE = 25.0
"""Requests per second, split over both gateways."""
VERSICOLOR = {"sepal_length": 5.9, "sepal_width": 2.8, "petal_length": 4.3, "petal_width": 1.3}


@dataclass
class Answer:
    request_id: str
    gateway: str
    status: int
    version: int | None


@dataclass
class Traffic:
    """A steady stream of predictions through both gateways, in a thread, until stopped."""

    urls: list[str]
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        rows = itertools.cycle([SETOSA, VERSICOLOR, VIRGINICA])
        gateways = itertools.cycle(self.urls)
        with httpx.Client(timeout=15) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                url = next(gateways)
                rid = f"ro-{uuid.uuid4().hex[:16]}"
                try:
                    reply = client.post(
                        f"{url}/v1/predict", json={"request_id": rid, "features": next(rows)}
                    )
                    version = reply.json().get("model_version")
                    self.answers.append(Answer(rid, url, reply.status_code, version))
                except httpx.HTTPError:
                    self.answers.append(Answer(rid, url, 0, None))
                time.sleep(max(0.0, 1 / RATE - (time.monotonic() - started)))

    def unanswered(self) -> list[Answer]:
        return [answer for answer in self.answers if answer.status != 200]


@pytest.fixture(scope="module")
def rollout_stack(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str
) -> Iterator[tuple[Stack, list[str]]]:
    folder = tmp_path_factory.mktemp("rollouts")
    stack = launch_stack(
        folder,
        kafka_bootstrap,
        roles=("worker", "gateway", "trainer"),
        **{"retraining.port": free_port(), **POLICY},
    )
    try:
        second = free_port()
        stack.start("gateway-2", "gateway", "--port", str(second))
        urls = [stack.gateway_url, f"http://127.0.0.1:{second}"]
        ready = eventually(lambda: all(_ready(url) for url in urls), timeout=90)
        assert ready, "the second gateway did not become ready"
        metrics = f"http://127.0.0.1:{stack.settings.retraining.port}/metrics"
        assert eventually(lambda: "irisflow_rollout_active" in _text(metrics), timeout=90), (
            "the trainer's rollout controller did not start"
        )
        yield stack, urls
    finally:
        stop_all(stack)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _text(url: str) -> str:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return ""


def _candidate(stack: Stack, *, shuffled: bool = False, kind: str = "naive_bayes") -> int:
    """Save a new version in the trainer's registry (not published) and return its number."""
    registry = LocalRegistry(stack.settings.registry_dir)
    version = max(registry.latest() or 0, live_version(stack)) + 1
    pipeline = fitted_pipeline(kind, shuffled=shuffled)
    registry.save(model_update(version, kind=kind, pipeline=pipeline))
    return version


def _rollout(url: str) -> dict[str, Any]:
    reply = httpx.get(f"{url}/v1/rollout", timeout=10)
    assert reply.status_code == 200
    body: dict[str, Any] = reply.json()
    return body


def _start(url: str, **body: Any) -> dict[str, Any]:
    reply = httpx.post(f"{url}/v1/rollout", json=body, headers={"X-API-Key": KEY}, timeout=30)
    assert reply.status_code == 200, reply.text
    state: dict[str, Any] = reply.json()
    return state


def _until_stage(
    urls: list[str], rollout_id: str, stages: set[str], timeout: float
) -> dict[str, Any]:
    """The rollout once it reached one of ``stages`` on every gateway (they must agree)."""

    def reached() -> list[dict[str, Any]] | None:
        seen = [_rollout(url) for url in urls]
        if all(s.get("rollout_id") == rollout_id and s.get("stage") in stages for s in seen):
            return seen
        return None

    seen = eventually(reached, timeout=timeout)
    assert seen, f"rollout {rollout_id} did not reach {stages}: {_rollout(urls[0])}"
    first, second = seen
    assert (first["stage"], first["share"], first["candidate_version"]) == (
        second["stage"],
        second["share"],
        second["candidate_version"],
    )
    return dict(first)


def _serves(url: str, request_id: str) -> int:
    reply = httpx.post(
        f"{url}/v1/predict", json={"request_id": request_id, "features": SETOSA}, timeout=15
    )
    assert reply.status_code == 200, reply.text
    version: int = reply.json()["model_version"]
    return version


def test_a_good_candidate_goes_from_shadow_to_canary_to_live_by_policy_alone(
    rollout_stack: tuple[Stack, list[str]],
) -> None:
    stack, urls = rollout_stack
    champion = live_version(stack)
    candidate = _candidate(stack)
    with Traffic(urls) as traffic:
        started = _start(urls[0], version=candidate, mode="shadow")
        assert started["stage"] == "shadow"
        rollout_id = started["rollout_id"]
        ended = _until_stage(urls, rollout_id, {"promoted", "rolled_back", "aborted"}, 120)
        assert ended["stage"] == "promoted", ended["steps"]
        assert eventually(lambda: live_version(stack) == candidate, timeout=60)
        time.sleep(1.0)  # a second of traffic on the new live version
    stages = [(step["stage"], step["decided_by"]) for step in ended["steps"]]
    assert stages == [("shadow", "api"), ("canary", "policy"), ("promoted", "policy")]
    assert traffic.answers, "no traffic flowed"
    assert traffic.unanswered() == []
    assert {a.version for a in traffic.answers} <= {champion, candidate}
    assert any(a.version == candidate for a in traffic.answers)
    history = httpx.get(f"{urls[1]}/v1/models/{candidate}", timeout=10).json()["deployments"]
    assert [entry["stage"] for entry in history][-3:] == ["shadow", "canary", "promoted"]


def test_a_bad_canary_is_rolled_back_with_at_most_the_budget_of_its_answers_served(
    rollout_stack: tuple[Stack, list[str]],
) -> None:
    stack, urls = rollout_stack
    champion = live_version(stack)
    bad = _candidate(stack, shuffled=True, kind="logistic_regression")
    with Traffic(urls) as traffic:
        started = _start(urls[1], version=bad, mode="canary", share=0.3)
        rollout_id = started["rollout_id"]
        ended = _until_stage(urls, rollout_id, {"promoted", "rolled_back", "aborted"}, 120)
        time.sleep(1.0)  # and the champion answers everybody again
    assert ended["stage"] == "rolled_back"
    assert ended["steps"][-1]["decided_by"] == "policy"
    assert traffic.unanswered() == []
    from_bad = [a for a in traffic.answers if a.version == bad]
    assert 0 < len(from_bad) <= BUDGET
    assert all(point_of(rollout_id, a.request_id) < 0.3 for a in from_bad)
    assert {a.version for a in traffic.answers} <= {champion, bad}
    assert live_version(stack) == champion


def test_a_rollout_survives_a_worker_restart_and_routes_the_same_ids(
    rollout_stack: tuple[Stack, list[str]],
) -> None:
    stack, urls = rollout_stack
    champion = live_version(stack)
    candidate = _candidate(stack, kind="logistic_regression")
    started = _start(urls[0], version=candidate, mode="canary", share=0.5, automatic=False)
    rollout_id = started["rollout_id"]

    def expected(ids: list[str]) -> dict[str, int]:
        return {rid: candidate if point_of(rollout_id, rid) < 0.5 else champion for rid in ids}

    def canary_id() -> str:
        """A fresh id in the candidate's share (a fresh one: answered ids are cached)."""
        while point_of(rollout_id, rid := f"probe-{uuid.uuid4().hex}") >= 0.5:
            pass
        return rid

    before = expected([f"before-{i}" for i in range(12)])
    after = expected([f"after-{i}" for i in range(24)])  # new ids: answered ids are cached
    assert set(before.values()) == set(after.values()) == {champion, candidate}
    try:
        # The worker applies the state a moment after the gateway answered the command.
        assert eventually(lambda: _serves(urls[0], canary_id()) == candidate, timeout=30)
        assert {rid: _serves(urls[0], rid) for rid in before} == before
        stack.stop("worker", signal.SIGKILL)
        stack.start("worker", "worker")
        stack.wait_ready()
        assert {rid: _serves(urls[1], rid) for rid in after} == after
        state = _rollout(urls[1])
        assert (state["rollout_id"], state["stage"]) == (rollout_id, "canary")
    finally:
        reply = httpx.post(
            f"{urls[0]}/v1/rollout/abort",
            json={"reason": "end of the restart test"},
            headers={"X-API-Key": KEY},
            timeout=30,
        )
    assert reply.status_code == 200, reply.text
    assert reply.json()["stage"] == "aborted"
    assert eventually(
        lambda: _serves(urls[0], f"after-abort-{uuid.uuid4().hex}") == champion, timeout=30
    )


def test_the_produce_scenario_trains_a_bad_candidate_whose_canary_the_policy_rolls_back(
    rollout_stack: tuple[Stack, list[str]],
) -> None:
    stack, urls = rollout_stack
    champion = live_version(stack)
    command = [
        sys.executable, "-m", "irisflow.cli", "--params", str(stack.params),
        "produce", "-n", "600", "--rate", "40", "--candidate", "bad",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRISFLOW_")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fitted on shuffled labels" in done.stdout
    state = _rollout(urls[0])
    assert state["stage"] == "rolled_back", done.stdout
    assert state["steps"][0]["decided_by"] == "produce"
    assert state["steps"][-1]["decided_by"] == "policy"
    assert "rolled_back" in done.stdout
    assert live_version(stack) == champion
