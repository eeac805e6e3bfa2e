"""Safe rollouts: ``GET /v1/rollout`` (the state), start, promote and abort (API key).

The gateway reads the state the rollout controller (in ``irisflow trainer``) publishes and sends
it commands; it changes nothing itself. A command is answered with the controller's outcome when
it comes within ``gateway.command_wait_seconds`` (200 and the new state, or the controller's
refusal as 404, 409 or 422 saying why), else 202: the command waits on Kafka for the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from gateway.bodies import (
    CommandPending,
    ErrorBody,
    RolloutPublic,
    RolloutReasonBody,
    RolloutStartBody,
)
from gateway.bridge import KafkaBridge
from gateway.deps import Bridge, History, Kafka, Metrics, Rollout, Settings
from gateway.errors import RolloutRefused
from gateway.kafka_health import KafkaHealth
from gateway.metrics import GatewayMetrics
from gateway.model_versions import ModelHistory
from gateway.rollouts import ask, new_command, public_state, require_caught_up
from gateway.security import AdminKey
from irisflow.kafka.rollout_topic import RolloutFollower
from irisflow.settings import Settings as IrisflowSettings

router = APIRouter(prefix="/v1", tags=["rollout"])

_COMMAND_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "model": CommandPending,
        "description": "No rollout controller answered in time (is `irisflow trainer` running?); "
        "the command waits on Kafka and is applied when it runs",
    },
    401: {"model": ErrorBody, "description": "No X-API-Key header"},
    403: {"model": ErrorBody, "description": "Wrong key, or no IRISFLOW_API_KEY configured"},
    404: {"model": ErrorBody, "description": "The controller knows no such version"},
    409: {
        "model": ErrorBody,
        "description": "Refused in the rollout's present state (one already active, none to "
        "promote or abort, the version is live already)",
    },
    422: {"model": ErrorBody, "description": "A bad body, or a request the controller cannot do"},
    503: {"model": ErrorBody, "description": "Kafka unreachable"},
}


@router.get(
    "/rollout",
    response_model=RolloutPublic,
    responses={503: {"model": ErrorBody, "description": "The rollout state is not read yet"}},
)
async def get_rollout(rollout: Rollout, history: History, settings: Settings) -> RolloutPublic:
    """The current (or last) rollout: stage, share, both versions, their live readings and every
    decision so far. ``stage`` is null before the first rollout."""
    require_caught_up(rollout)
    return public_state(settings.model_name, rollout.current, history)


@dataclass(frozen=True)
class _Commands:
    """What sending a command takes: the parts of the gateway every command route uses."""

    bridge: KafkaBridge
    kafka: KafkaHealth
    rollout: RolloutFollower
    history: ModelHistory
    settings: IrisflowSettings
    metrics: GatewayMetrics

    async def send(
        self, action: Literal["start", "promote", "abort"], **fields: Any
    ) -> RolloutPublic | JSONResponse:
        """Send one command and answer with the controller's outcome (or 202 without one)."""
        self.kafka.require()
        command = new_command(self.settings.model_name, action, **fields)
        gateway = self.settings.gateway
        state = await ask(
            self.bridge,
            self.rollout,
            command,
            publish_timeout=gateway.predict_timeout_seconds,
            wait=gateway.command_wait_seconds,
        )
        self.metrics.published.labels(f"rollout-{action}").inc()
        if state is None:
            pending = CommandPending(
                command_id=command.command_id,
                action=action,
                model_name=command.model_name,
                topic=self.bridge.topics.rollout_commands.name,
                message=f"the {action} command is on Kafka, but no rollout controller answered "
                f"within {gateway.command_wait_seconds:g}s: `irisflow trainer` applies it when "
                "it runs; GET /v1/rollout shows the outcome (last_command.command_id)",
            )
            return JSONResponse(status_code=202, content=pending.model_dump(mode="json"))
        outcome = state.last_command
        assert outcome is not None  # ask() returns only a state that answers the command
        if not outcome.accepted or outcome.status >= 300:
            raise RolloutRefused(
                f"the rollout controller refused to {action}: "
                f"{outcome.error or 'no reason given'} (see GET /v1/rollout)",
                outcome.status,
            )
        return public_state(self.settings.model_name, state, self.history)


async def _commands(
    bridge: Bridge,
    kafka: Kafka,
    rollout: Rollout,
    history: History,
    settings: Settings,
    metrics: Metrics,
) -> _Commands:
    return _Commands(bridge, kafka, rollout, history, settings, metrics)


Commands = Annotated[_Commands, Depends(_commands)]


@router.post("/rollout", response_model=RolloutPublic, responses=_COMMAND_RESPONSES)
async def start_rollout(
    body: RolloutStartBody, commands: Commands, _: AdminKey
) -> RolloutPublic | JSONResponse:
    """Start a rollout of ``version``: ``shadow`` (scored beside the champion, answers nobody)
    or ``canary`` (answers ``share`` of requests, chosen by request id). With ``automatic`` the
    policy moves it on (shadow, canary, live) or rolls it back by its numbers."""
    return await commands.send(
        "start",
        version=body.version,
        mode=body.mode,
        share=body.share,
        automatic=body.automatic,
    )


@router.post("/rollout/promote", response_model=RolloutPublic, responses=_COMMAND_RESPONSES)
async def promote_rollout(
    commands: Commands, _: AdminKey, body: RolloutReasonBody | None = None
) -> RolloutPublic | JSONResponse:
    """Make the active rollout's candidate live now (its numbers are recorded with the step)."""
    return await commands.send("promote", reason=body.reason if body is not None else "")


@router.post("/rollout/abort", response_model=RolloutPublic, responses=_COMMAND_RESPONSES)
async def abort_rollout(
    commands: Commands, _: AdminKey, body: RolloutReasonBody | None = None
) -> RolloutPublic | JSONResponse:
    """End the active rollout: the champion answers everything again, the candidate is dropped."""
    return await commands.send("abort", reason=body.reason if body is not None else "")
