"""``irisflow rollout`` and ``irisflow models show`` without a broker: what is sent, what is
printed, and the exit codes (the Kafka round trip is tests/integration/test_rollout_cli.py).

The two functions that talk to Kafka (send a command and wait for its answer; read the state)
are replaced by fakes that answer as the controller would, so these tests are about the CLI's
own decisions: the command it builds from the options, how it renders a state, what it exits
with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import irisflow.cli.rollout as rollout_cli
from irisflow.cli import app
from irisflow.registry import LocalRegistry
from irisflow.schemas import RolloutCommand, RolloutStage, RolloutState
from irisflow.settings import Settings, load_settings
from tests.conftest import unique_params
from tests.factories import model_update
from tests.rollout_samples import answer, rollout_state, step


class FakeController:
    """Stands in for ``_ask``: records each command and answers with ``reply(command)``."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.commands: list[RolloutCommand] = []

    async def __call__(
        self, settings: Settings, command: RolloutCommand, wait: float
    ) -> RolloutState | None:
        self.commands.append(command)
        result: RolloutState | None = self.reply(command)
        return result


@pytest.fixture
def params(tmp_path: Path) -> Path:
    return unique_params(tmp_path)


def _invoke(params: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["--params", str(params), *args])


def _controller(monkeypatch: pytest.MonkeyPatch, reply: Any) -> FakeController:
    fake = FakeController(reply)
    monkeypatch.setattr(rollout_cli, "_ask", fake)
    return fake


def test_start_shadow_with_a_share_sends_that_command_and_prints_the_state(
    params: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _controller(monkeypatch, lambda c: answer(c, rollout_state(share=c.share or 1.0)))
    result = _invoke(params, "rollout", "start", "2", "--shadow", "--share", "0.2")
    assert result.exit_code == 0, result.output
    (command,) = fake.commands
    assert (command.action, command.version, command.mode, command.share) == (
        "start",
        2,
        "shadow",
        0.2,
    )
    assert (command.automatic, command.requested_by) == (True, "cli")
    assert "shadow (automatic), share 20%" in result.stdout


def test_start_canary_manual_sends_the_canary_share_and_no_automatic(
    params: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _controller(monkeypatch, lambda c: answer(c, rollout_state(RolloutStage.CANARY)))
    result = _invoke(params, "rollout", "start", "3", "--canary", "0.05", "--manual")
    assert result.exit_code == 0, result.output
    (command,) = fake.commands
    assert (command.mode, command.share, command.automatic) == ("canary", 0.05, False)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ([], "exactly one of --shadow and --canary"),
        (["--shadow", "--canary", "0.1"], "exactly one of --shadow and --canary"),
        (["--canary", "0.1", "--share", "0.2"], "--share goes with --shadow"),
        (["--canary", "0"], "above 0"),
        (["--canary", "1.5"], "--canary"),
    ],
)
def test_a_start_without_one_clear_mode_and_share_is_a_usage_error(
    params: Path, monkeypatch: pytest.MonkeyPatch, options: list[str], says: str
) -> None:
    fake = _controller(monkeypatch, lambda c: None)
    result = _invoke(params, "rollout", "start", "2", *options)
    assert result.exit_code == 2
    assert says in result.output
    assert fake.commands == []


def test_a_refusal_exits_1_with_the_controllers_reason(
    params: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = "version 2 is already live: nothing to roll out"
    _controller(monkeypatch, lambda c: answer(c, None, status=409, error=reason))
    result = _invoke(params, "rollout", "start", "2", "--shadow")
    assert result.exit_code == rollout_cli.EXIT_REFUSED
    assert f"refused (409): {reason}" in result.stderr


def test_no_answer_exits_3_saying_the_trainer_applies_it(
    params: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _controller(monkeypatch, lambda c: None)
    result = _invoke(params, "rollout", "abort", "--reason", "late night", "--wait", "0.5")
    assert result.exit_code == rollout_cli.EXIT_NO_ANSWER
    assert "irisflow trainer" in result.stderr
    assert "within 0.5s" in result.stderr
    assert fake.commands[0].reason == "late night"


def test_json_output_says_the_result_and_the_state(
    params: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = rollout_state(RolloutStage.PROMOTED)
    _controller(monkeypatch, lambda c: answer(c, state))
    result = _invoke(params, "rollout", "promote", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["result"], body["action"], body["status"]) == ("applied", "promote", 200)
    assert body["state"]["stage"] == "promoted"
    assert body["state"]["last_command"]["command_id"] == body["command_id"]

    _controller(monkeypatch, lambda c: answer(c, None, status=404, error="no such version"))
    refused = json.loads(_invoke(params, "rollout", "abort", "--json").stdout)
    assert (refused["result"], refused["status"], refused["error"]) == (
        "refused",
        404,
        "no such version",
    )
    assert refused["state"] is not None


def test_status_prints_stage_versions_the_readings_table_and_decisions(
    params: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = [
        step(RolloutStage.SHADOW, reason="started by cli"),
        step(RolloutStage.CANARY, reason="agreement 0.969 >= 0.95 on 640 requests"),
    ]
    state = rollout_state(RolloutStage.CANARY, steps=steps, candidate=model_update(2))
    monkeypatch.setattr(rollout_cli, "_read", lambda settings: state)
    result = _invoke(params, "rollout", "status")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "canary (automatic), share 10%" in out
    assert "candidate v2, champion v1" in out
    header, champion, candidate = out.split("\n\n")[1].splitlines()
    assert header.split() == rollout_cli._HEADER
    assert champion.split()[:2] == ["v1", "champion"]
    cells = dict(zip(rollout_cli._HEADER, candidate.split(), strict=True))
    assert (cells["agreement"], cells["err_rate"], cells["p99_ms"]) == ("0.969", "0.005", "5.1")
    assert (cells["accuracy"], cells["est_acc"], cells["labeled"]) == ("0.963", "0.915", "80")
    assert "agreement 0.969 >= 0.95 on 640 requests" in out


def test_status_json_has_no_artifact_and_the_candidate_in_brief(
    params: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = rollout_state(candidate=model_update(2, kind="naive_bayes"))
    monkeypatch.setattr(rollout_cli, "_read", lambda settings: state)
    result = _invoke(params, "rollout", "status", "--json")
    body = json.loads(result.stdout)
    assert (body["stage"], body["active"]) == ("shadow", True)
    assert body["candidate"]["algorithm"] == "naive_bayes"
    assert "artifact" not in result.stdout
    assert [r["role"] for r in body["readings"]] == ["champion", "candidate"]


def test_status_before_any_rollout_says_how_to_start_one(
    params: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollout_cli, "_read", lambda settings: None)
    result = _invoke(params, "rollout", "status")
    assert result.exit_code == 0
    assert "irisflow rollout start VERSION --shadow" in result.stdout
    body = json.loads(_invoke(params, "rollout", "status", "--json").stdout)
    assert (body["stage"], body["steps"]) == (None, [])


def test_models_show_prints_the_registrys_deployment_history(params: Path) -> None:
    settings = load_settings(params, environ={})
    registry = LocalRegistry(settings.registry_dir)
    registry.save(model_update(2))
    registry.append_decision({"version": 2, "outcome": "promoted", "at": 100.0, "reason": "gate"})
    canary = step(RolloutStage.CANARY, at=200.0, share=0.25, reason="shadow agreed")
    registry.append_decision({"kind": "rollout", **canary.model_dump(mode="json")})
    shown = _invoke(params, "models", "show", "2", "--no-kafka")
    assert shown.exit_code == 0, shown.output
    history = shown.stdout.split("deployment history of v2")[1]
    assert "not read (--no-kafka)" in history
    live, rolled = history.strip().splitlines()[1:]
    assert "live" in live
    assert "by trainer: gate" in live
    assert "canary" in rolled
    assert "share 25%" in rolled
    body = json.loads(_invoke(params, "models", "show", "2", "--json", "--no-kafka").stdout)
    assert [d["stage"] for d in body["deployments"]] == ["live", "canary"]
