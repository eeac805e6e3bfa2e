"""``irisflow rollout`` and ``irisflow models show`` on the real broker, a test playing the
rollout controller: the command crosses ``irisflow.rollout-commands``, its outcome comes back
on ``irisflow.rollouts``, and the exit code and output follow the outcome."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from irisflow.cli import app
from irisflow.kafka.admin import ensure_topics
from irisflow.registry import LocalRegistry
from irisflow.schemas import RolloutCommand, RolloutStage, RolloutState
from irisflow.settings import Settings, load_settings
from tests.conftest import unique_params
from tests.factories import model_update
from tests.rollout_controller import PlayedController, publish_states
from tests.rollout_samples import answer, rollout_state, step

pytestmark = pytest.mark.kafka


@pytest.fixture
def params(tmp_path: Path, kafka_bootstrap: str) -> Path:
    path = unique_params(tmp_path, kafka_bootstrap)
    asyncio.run(ensure_topics(load_settings(path, environ={}).kafka))
    return path


def _settings(params: Path) -> Settings:
    return load_settings(params, environ={})


def _invoke(params: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["--params", str(params), *args])


def test_start_then_status_then_a_refused_abort_through_the_broker(params: Path) -> None:
    kafka = _settings(params).kafka
    current: list[RolloutState] = []

    def respond(command: RolloutCommand) -> RolloutState:
        if command.action == "start":
            current.append(answer(command, rollout_state(share=command.share or 1.0)))
            return current[-1]
        return answer(command, current[-1], status=409, error="abort refused: testing")

    with PlayedController(kafka, respond) as controller:
        started = _invoke(params, "rollout", "start", "2", "--shadow", "--share", "0.4", "--json")
        assert started.exit_code == 0, started.output
        status = _invoke(params, "rollout", "status")
        refused = _invoke(params, "rollout", "abort", "--reason", "why not")
    body = json.loads(started.stdout)
    (start, abort) = controller.commands
    assert (start.action, start.version, start.share, start.requested_by) == (
        "start",
        2,
        0.4,
        "cli",
    )
    assert (body["result"], body["command_id"]) == ("applied", start.command_id)
    assert body["state"]["share"] == 0.4
    assert status.exit_code == 0, status.output
    assert "shadow (automatic), share 40%" in status.stdout
    assert (abort.action, abort.reason) == ("abort", "why not")
    assert refused.exit_code == 1
    assert "refused (409): abort refused: testing" in refused.stderr


def test_a_command_nobody_answers_exits_3_and_stays_on_kafka(params: Path) -> None:
    result = _invoke(params, "rollout", "promote", "--wait", "1")
    assert result.exit_code == 3, result.output
    assert "irisflow trainer" in result.stderr


def test_models_show_merges_the_topics_steps_with_the_registrys(params: Path) -> None:
    settings = _settings(params)
    registry = LocalRegistry(settings.registry_dir)
    registry.save(model_update(2))
    registry.append_decision({"version": 2, "outcome": "promoted", "at": 50.0, "reason": "gate"})
    shadow = step(RolloutStage.SHADOW, at=100.0, reason="started by cli")
    registry.append_decision({"kind": "rollout", **shadow.model_dump(mode="json")})
    canary = step(RolloutStage.CANARY, at=200.0, reason="agreement held")
    publish_states(settings.kafka, rollout_state(RolloutStage.CANARY, steps=[shadow, canary]))
    shown = _invoke(params, "models", "show", "2", "--json")
    assert shown.exit_code == 0, shown.output
    steps = [(d["stage"], d["sources"]) for d in json.loads(shown.stdout)["deployments"]]
    assert steps == [
        ("live", ["registry"]),
        ("shadow", ["kafka", "registry"]),
        ("canary", ["kafka"]),
    ]
