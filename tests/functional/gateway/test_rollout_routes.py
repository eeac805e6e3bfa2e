"""The rollout's HTTP API in-process: the state as read, commands and their outcomes, no broker.

A fake bridge plays the rollout controller: each command the gateway publishes is decoded from
the record exactly as the controller reads it, and the answer (a state carrying the command's
outcome) is offered to the gateway's own follower, as if read from ``irisflow.rollouts``. The
lifespan (which connects to Kafka) is skipped, and one client keeps one event loop for all its
requests, as a served gateway has.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.bridge import KafkaBridge
from irisflow.errors import KafkaUnavailable
from irisflow.kafka.rollout_topic import RolloutFollower
from irisflow.registry import LocalRegistry
from irisflow.schemas import RolloutCommand, RolloutStage, RolloutState
from irisflow.settings import KafkaSettings
from irisflow.topics import Outgoing
from tests.conftest import SettingsFactory
from tests.factories import model_update
from tests.rollout_samples import ROLLOUT_ID, answer, rollout_state, step

KEY = {"X-API-Key": "s3cret"}
Respond = Callable[[RolloutCommand], RolloutState | None]


async def offer(follower: RolloutFollower, state: RolloutState) -> None:
    """What the follower does with a state it reads: keep it, wake whoever waits."""
    follower.current = state
    async with follower.changed:
        follower.changed.notify_all()


class ControllerBridge(KafkaBridge):
    """Publishes rollout commands to a fake controller that answers through the follower."""

    def __init__(self, kafka: KafkaSettings, follower: RolloutFollower, respond: Respond) -> None:
        super().__init__(kafka)
        self.follower = follower
        self.respond = respond
        self.commands: list[RolloutCommand] = []
        self.unreachable = False  # the broker does not acknowledge (a 503 for the client)

    async def publish(self, record: Outgoing, *, timeout: float) -> int | None:
        assert record.topic == self.topics.rollout_commands.name
        if self.unreachable:
            raise KafkaUnavailable("could not publish: no broker answered")
        command = self.topics.rollout_commands.decode(record.value, record.key)
        self.commands.append(command)
        state = self.respond(command)
        if state is not None:
            asyncio.get_running_loop().call_later(0.05, self._offer_soon, state)
        return 0

    def _offer_soon(self, state: RolloutState) -> None:
        asyncio.get_running_loop().create_task(offer(self.follower, state))


@contextlib.asynccontextmanager
async def _no_lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield


@pytest.fixture
def gateway(make_settings: SettingsFactory) -> Iterator[Callable[..., tuple[TestClient, Any]]]:
    """``gateway(respond, state=…, **settings)``: a client of an app whose follower has caught up
    (holding ``state``), Kafka reachable, the admin key set, and the fake controller."""
    opened: list[TestClient] = []

    def factory(
        respond: Respond = lambda command: None,
        *,
        state: RolloutState | None = None,
        caught_up: bool = True,
        **changes: Any,
    ) -> tuple[TestClient, Any]:
        settings = make_settings(
            **{"gateway.api_key": "s3cret", "gateway.command_wait_seconds": 2.0, **changes}
        )
        app = create_app(settings)
        app.router.lifespan_context = _no_lifespan
        app.state.history.make_live(model_update(1))
        app.state.kafka.ready = True
        follower: RolloutFollower = app.state.rollout
        follower.current = state
        if caught_up:
            follower.caught_up.set()
        bridge = ControllerBridge(settings.kafka, follower, respond)
        app.state.bridge = bridge
        client = TestClient(app)
        client.__enter__()
        opened.append(client)
        return client, app

    yield factory
    for client in opened:
        client.__exit__(None, None, None)


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    return error


def test_the_rollout_before_any_is_a_state_with_no_stage(gateway: Any) -> None:
    client, _ = gateway()
    body = client.get("/v1/rollout").json()
    assert body["stage"] is None
    assert body["active"] is False
    assert body["model_name"] == "iris"
    assert (body["readings"], body["steps"], body["last_command"]) == ([], [], None)


def test_the_rollout_is_a_503_until_the_gateway_has_read_the_topic(gateway: Any) -> None:
    client, _ = gateway(caught_up=False)
    error = _error(client.get("/v1/rollout"), 503, "kafka_unavailable")
    assert "retry" in error["message"]


def test_the_rollout_shows_stage_versions_readings_and_steps_without_the_artifact(
    gateway: Any,
) -> None:
    candidate = model_update(2, kind="naive_bayes")
    client, _ = gateway(state=rollout_state(RolloutStage.SHADOW, candidate=candidate))
    response = client.get("/v1/rollout")
    assert response.status_code == 200
    body = response.json()
    assert (body["stage"], body["active"], body["rollout_id"]) == ("shadow", True, ROLLOUT_ID)
    assert (body["candidate_version"], body["champion_version"]) == (2, 1)
    assert body["candidate"]["algorithm"] == "naive_bayes"
    assert body["champion"]["version"] == 1
    assert body["share"] == 0.1
    roles = {r["role"]: r for r in body["readings"]}
    assert roles["candidate"]["agreement"] == pytest.approx(0.9688)
    assert roles["champion"]["accuracy"] == pytest.approx(0.95)
    assert roles["candidate"]["estimated_accuracy"] == pytest.approx(0.915)
    assert [s["stage"] for s in body["steps"]] == ["shadow"]
    assert "artifact" not in response.text
    assert "sha256" not in body["candidate"]


def test_a_start_answers_200_with_the_state_the_controller_published(gateway: Any) -> None:
    def respond(command: RolloutCommand) -> RolloutState:
        return answer(command, rollout_state(RolloutStage.SHADOW, share=command.share or 0.1))

    client, app = gateway(respond)
    body = {"version": 2, "mode": "shadow", "share": 0.25, "automatic": False}
    response = client.post("/v1/rollout", json=body, headers=KEY)
    assert response.status_code == 200, response.text
    assert response.json()["stage"] == "shadow"
    assert response.json()["share"] == 0.25
    (command,) = app.state.bridge.commands
    assert (command.action, command.version, command.mode, command.share) == (
        "start",
        2,
        "shadow",
        0.25,
    )
    assert (command.automatic, command.requested_by, command.model_name) == (False, "api", "iris")
    assert response.json()["last_command"]["command_id"] == command.command_id


def test_a_start_without_a_share_leaves_it_to_the_policy(gateway: Any) -> None:
    client, app = gateway(**{"gateway.command_wait_seconds": 0.1})
    response = client.post("/v1/rollout", json={"version": 2.0, "mode": "canary"}, headers=KEY)
    assert response.status_code == 202
    (command,) = app.state.bridge.commands
    assert (command.version, command.share, command.automatic) == (2, None, True)


@pytest.mark.parametrize(
    ("status", "code"), [(404, "not_found"), (409, "rollout_conflict"), (422, "invalid_request")]
)
def test_a_refused_command_is_the_controllers_status_and_reason(
    gateway: Any, status: int, code: str
) -> None:
    reason = "version 9 is not in the registry: train or publish it first"
    client, _ = gateway(lambda command: answer(command, None, status=status, error=reason))
    response = client.post("/v1/rollout", json={"version": 9, "mode": "shadow"}, headers=KEY)
    error = _error(response, status, code)
    assert reason in error["message"]


def test_an_outcome_of_another_command_is_not_taken_for_this_ones(gateway: Any) -> None:
    other = RolloutCommand(model_name="iris", command_id="cli-other", action="abort")
    client, _ = gateway(
        lambda command: answer(other, None, status=409, error="nothing to abort"),
        **{"gateway.command_wait_seconds": 0.3},
    )
    response = client.post("/v1/rollout/abort", headers=KEY)
    assert response.status_code == 202, response.text


def test_without_a_controller_a_command_is_a_202_saying_the_trainer_applies_it(
    gateway: Any,
) -> None:
    client, app = gateway(**{"gateway.command_wait_seconds": 0.2})
    response = client.post("/v1/rollout/promote", json={"reason": "looks good"}, headers=KEY)
    assert response.status_code == 202, response.text
    body = response.json()
    (command,) = app.state.bridge.commands
    assert (body["status"], body["action"], body["command_id"]) == (
        "pending",
        "promote",
        command.command_id,
    )
    assert command.reason == "looks good"
    assert "irisflow trainer" in body["message"]
    assert body["topic"] == app.state.settings.kafka.topics.rollout_commands


def test_promote_and_abort_answer_with_the_ended_state(gateway: Any) -> None:
    ended = {"promote": RolloutStage.PROMOTED, "abort": RolloutStage.ABORTED}

    def respond(command: RolloutCommand) -> RolloutState:
        return answer(command, rollout_state(ended[command.action]))

    client, app = gateway(respond)
    promoted = client.post("/v1/rollout/promote", headers=KEY)
    assert (promoted.status_code, promoted.json()["stage"]) == (200, "promoted")
    aborted = client.post("/v1/rollout/abort", json={"reason": "too slow"}, headers=KEY)
    assert (aborted.status_code, aborted.json()["stage"]) == (200, "aborted")
    assert [c.reason for c in app.state.bridge.commands] == ["", "too slow"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "shadow"}, "version"),
        ({"version": 0, "mode": "shadow"}, "version"),
        ({"version": 2, "mode": "blue-green"}, "mode"),
        ({"version": 2, "mode": "canary", "share": 1.5}, "share"),
        ({"version": 2, "mode": "canary", "share": 0}, "share"),
        ({"version": 2, "mode": "canary", "colour": "red"}, "colour"),
        ({"version": 2, "mode": "shadow", "automatic": "sometimes"}, "automatic"),
        ({"version": 2, "mode": "shadow", "automatic": 0}, "automatic"),
        ({"version": "2", "mode": "shadow"}, "version"),
        ({"version": 2.5, "mode": "shadow"}, "version"),
        ({"version": 2**31, "mode": "shadow"}, "version"),
        ({"version": 2**70, "mode": "shadow"}, "version"),
        ({"version": True, "mode": "shadow"}, "version"),
        ({"version": 2, "mode": "shadow", "share": "0.5"}, "share"),
    ],
)
def test_a_bad_start_body_is_a_422_naming_the_field(
    gateway: Any, body: dict[str, Any], field: str
) -> None:
    client, app = gateway()
    error = _error(client.post("/v1/rollout", json=body, headers=KEY), 422, "invalid_request")
    assert [f["field"] for f in error["fields"]] == [field]
    assert app.state.bridge.commands == []


@pytest.mark.parametrize("path", ["/v1/rollout", "/v1/rollout/promote", "/v1/rollout/abort"])
def test_rollout_commands_need_the_api_key(gateway: Any, path: str) -> None:
    client, app = gateway()
    body = {"version": 2, "mode": "shadow"}
    _error(client.post(path, json=body), 401, "unauthorized")
    _error(client.post(path, json=body, headers={"X-API-Key": "nope"}), 403, "forbidden")
    assert app.state.bridge.commands == []


def test_a_rollout_command_while_kafka_is_down_is_a_503(gateway: Any) -> None:
    client, app = gateway()
    app.state.kafka.ready = False
    response = client.post("/v1/rollout/abort", headers=KEY)
    _error(response, 503, "kafka_unavailable")
    assert app.state.bridge.commands == []


def test_a_command_the_broker_does_not_take_is_a_503_and_waits_for_nothing(gateway: Any) -> None:
    client, app = gateway()
    app.state.bridge.unreachable = True
    response = client.post("/v1/rollout/promote", headers=KEY)
    assert "no broker answered" in _error(response, 503, "kafka_unavailable")["message"]
    follower: RolloutFollower = app.state.rollout
    assert len(follower.changed._waiters or ()) == 0  # type: ignore[attr-defined]


def test_a_models_deployment_history_merges_the_topic_and_the_registry(gateway: Any) -> None:
    shadow = step(RolloutStage.SHADOW, at=1_000.0, decided_by="api", reason="started by api")
    canary = step(RolloutStage.CANARY, at=1_100.0, share=0.2, reason="agreement 0.97 >= 0.9")
    other = step(RolloutStage.ABORTED, version=3, at=1_200.0, rollout_id="rollout-3-ff")
    state = rollout_state(RolloutStage.CANARY, steps=[shadow, canary], history=[other])
    client, app = gateway(state=state)
    registry = LocalRegistry(app.state.history.registry.root)
    registry.save(model_update(2))
    registry.append_decision(
        {"version": 2, "outcome": "promoted", "at": 900.0, "reason": "gate", "trigger": "drift"}
    )
    registry.append_decision({"kind": "rollout", **shadow.model_dump(mode="json")})
    registry.append_decision({"version": 3, "outcome": "promoted", "at": 950.0, "reason": "x"})
    body = client.get("/v1/models/2").json()
    steps = [(d["stage"], d["decided_by"], d["sources"]) for d in body["deployments"]]
    assert steps == [
        ("live", "trainer", ["registry"]),
        ("shadow", "api", ["kafka", "registry"]),
        ("canary", "policy", ["kafka"]),
    ]
    assert body["deployments"][0]["trigger"] == "drift"
    assert body["deployments"][2]["numbers"]["agreement"] == pytest.approx(0.97)


def test_the_rollout_endpoints_are_in_the_openapi_document(gateway: Any) -> None:
    client, _ = gateway()
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/rollout"]) == {"get", "post"}
    assert {"200", "202", "404", "409", "422"} <= set(
        paths["/v1/rollout/promote"]["post"]["responses"]
    )
    assert "post" in paths["/v1/rollout/abort"]


def test_a_wrong_method_on_the_rollout_names_every_method_it_takes(gateway: Any) -> None:
    client, _ = gateway()
    response = client.request("DELETE", "/v1/rollout")
    _error(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}
    assert client.request("PUT", "/v1/rollout/abort").headers["allow"] == "POST"
