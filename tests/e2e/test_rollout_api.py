"""The rollout's HTTP API on the real broker: a gateway process, a test playing the controller.

The gateway sends each command to ``irisflow.rollout-commands`` and answers with the outcome it
reads back from ``irisflow.rollouts``; the test reads the command there as the controller would
and publishes its answer, so the 200 / 409 / 202 paths cross the broker both ways.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from irisflow.schemas import RolloutCommand, RolloutStage, RolloutState
from tests.e2e.conftest import Stack, eventually, launch_stack, records_on, stop_all
from tests.factories import model_update
from tests.rollout_controller import PlayedController, publish_states
from tests.rollout_samples import answer, rollout_state, step

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

KEY = {"X-API-Key": "rollout-api-key"}
WAIT = 3.0


@pytest.fixture(scope="module")
def rollout_stack(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str
) -> Iterator[Stack]:
    """A gateway alone (it reads the rollout and sends commands; no worker is needed)."""
    stack = launch_stack(
        tmp_path_factory.mktemp("rollout-api"),
        kafka_bootstrap,
        roles=("gateway",),
        **{"gateway.api_key": KEY["X-API-Key"], "gateway.command_wait_seconds": WAIT},
    )
    try:
        yield stack
    finally:
        stop_all(stack)


def _post(stack: Stack, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{stack.gateway_url}{path}", json=body, headers=KEY, timeout=30)


def test_a_start_is_answered_with_the_state_the_controller_published(
    rollout_stack: Stack,
) -> None:
    candidate = model_update(2, kind="naive_bayes")

    def respond(command: RolloutCommand) -> RolloutState:
        assert command.mode is not None
        return answer(
            command,
            rollout_state(RolloutStage(command.mode.value), candidate=candidate, share=0.3),
        )

    with PlayedController(rollout_stack.settings.kafka, respond) as controller:
        response = _post(
            rollout_stack, "/v1/rollout", {"version": 2, "mode": "canary", "share": 0.3}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    (command,) = controller.commands
    assert (command.action, command.version, command.mode, command.share) == (
        "start",
        2,
        "canary",
        0.3,
    )
    assert command.requested_by == "api"
    assert body["last_command"]["command_id"] == command.command_id
    assert (body["stage"], body["candidate_version"], body["share"]) == ("canary", 2, 0.3)
    assert body["candidate"]["algorithm"] == "naive_bayes"
    shown = httpx.get(f"{rollout_stack.gateway_url}/v1/rollout", timeout=10).json()
    assert shown["last_command"]["command_id"] == command.command_id


def test_a_refused_command_is_the_controllers_409_with_its_reason(rollout_stack: Stack) -> None:
    reason = "no rollout is active: start one with POST /v1/rollout"

    def respond(command: RolloutCommand) -> RolloutState:
        return answer(command, None, status=409, error=reason)

    with PlayedController(rollout_stack.settings.kafka, respond) as controller:
        response = _post(rollout_stack, "/v1/rollout/promote")
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "rollout_conflict"
    assert reason in error["message"]
    assert [c.action for c in controller.commands] == ["promote"]


def test_with_no_controller_running_a_command_is_a_202_left_on_kafka(
    rollout_stack: Stack,
) -> None:
    response = _post(rollout_stack, "/v1/rollout/abort", {"reason": "testing"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert "irisflow trainer" in body["message"]
    kafka = rollout_stack.settings.kafka
    assert body["topic"] == kafka.topics.rollout_commands
    sent = [
        RolloutCommand.model_validate_json(r.value)
        for r in records_on(kafka, kafka.topics.rollout_commands)
        if r.value is not None
    ]
    assert [(c.action, c.reason) for c in sent if c.command_id == body["command_id"]] == [
        ("abort", "testing")
    ]


def test_a_versions_deployment_history_comes_from_the_rollout_topic(rollout_stack: Stack) -> None:
    canary = step(RolloutStage.CANARY, version=1, champion=1, rollout_id="rollout-1-e2e", at=10.0)
    kafka = rollout_stack.settings.kafka
    publish_states(kafka, rollout_state(RolloutStage.ABORTED, history=[canary]))

    def shown() -> list[dict[str, Any]]:
        body = httpx.get(f"{rollout_stack.gateway_url}/v1/models/1", timeout=10).json()
        return [d for d in body["deployments"] if d.get("rollout_id") == "rollout-1-e2e"]

    found = eventually(shown, timeout=20)
    assert [(d["stage"], d["sources"]) for d in found] == [("canary", ["kafka"])]
