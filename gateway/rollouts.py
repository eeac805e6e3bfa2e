"""The rollout as a gateway sees it: the newest state read from Kafka, and commands sent to it.

A gateway follows the compacted ``irisflow.rollouts`` topic with the core's
:class:`~irisflow.kafka.rollout_topic.RolloutFollower` and only reads it: it never loads the
candidate's artifact (the workers do) and never writes a state (the rollout controller in the
trainer is the only writer, so two gateways cannot race each other into two states). A change is
asked for with a :class:`~irisflow.schemas.RolloutCommand` on ``irisflow.rollout-commands``; the
controller's answer comes back in the next state's ``last_command``, which :func:`ask` waits for
so an HTTP client gets the outcome (200, 404, 409, 422) rather than a promise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any, Literal

from pydantic import ValidationError

from gateway.bodies import DeploymentStep, RolloutPublic, VersionSummary
from gateway.bridge import KafkaBridge
from gateway.model_versions import ModelHistory
from irisflow.deployments import deployment_history
from irisflow.errors import KafkaUnavailable, ModelNotFound
from irisflow.kafka.rollout_topic import RolloutFollower
from irisflow.registry import LocalRegistry
from irisflow.schemas import ModelMetadata, RolloutCommand, RolloutState

__all__ = ["CONSUMER", "ask", "deployments", "new_command", "public_state", "require_caught_up"]

log = logging.getLogger(__name__)

CONSUMER = "gateway.rollout"
"""The follower's name on its dead letters and in the dead-letter metric."""


def summary(meta: ModelMetadata) -> VersionSummary:
    return VersionSummary(
        version=meta.version,
        algorithm=meta.algorithm,
        created_at=meta.created_at,
        trigger=meta.trigger,
        metrics=meta.metrics,
    )


def _known(history: ModelHistory, version: int | None) -> VersionSummary | None:
    if version is None:
        return None
    try:
        return summary(history.version(version).metadata)
    except ModelNotFound:
        return None


def require_caught_up(follower: RolloutFollower) -> None:
    """A gateway that has not yet read the rollouts topic to its end cannot say what the rollout
    is (and must not say "none"): 503 until it has."""
    if not follower.caught_up.is_set():
        raise KafkaUnavailable(
            "this gateway has not read the rollout state from Kafka yet (the broker was "
            "unreachable since it started, or it is still catching up); retry in a few seconds"
        )


def public_state(
    model_name: str, state: RolloutState | None, history: ModelHistory
) -> RolloutPublic:
    """``GET /v1/rollout``: ``state`` without the candidate's bytes, with both versions'
    metadata in brief (from the state's candidate while active, else from the versions this
    gateway knows)."""
    if state is None:
        return RolloutPublic(
            model_name=model_name,
            stage=None,
            active=False,
            rollout_id=None,
            candidate_version=None,
            candidate=None,
            champion_version=None,
            champion=None,
            share=0.0,
            automatic=True,
            started_at=None,
            updated_at=None,
            readings=[],
            steps=[],
            last_command=None,
        )
    candidate = (
        summary(state.candidate)
        if state.candidate is not None and state.candidate.version == state.candidate_version
        else _known(history, state.candidate_version)
    )
    return RolloutPublic(
        model_name=state.model_name,
        stage=state.stage,
        active=state.active,
        rollout_id=state.rollout_id,
        candidate_version=state.candidate_version,
        candidate=candidate,
        champion_version=state.champion_version,
        champion=_known(history, state.champion_version),
        share=state.share,
        automatic=state.automatic,
        started_at=state.started_at,
        updated_at=state.updated_at,
        readings=list(state.readings),
        steps=list(state.steps),
        last_command=state.last_command,
    )


def deployments(
    version: int, state: RolloutState | None, registry: LocalRegistry
) -> list[DeploymentStep]:
    """``version``'s deployment history, oldest first: the rollout steps the topic's newest
    state holds (this rollout's and earlier ones'), merged with the registry's decisions log
    (which also has the retraining that published it live) where that folder is readable."""
    found = []
    for step in deployment_history(version, state, registry):
        try:
            found.append(DeploymentStep.model_validate(step))
        except ValidationError as exc:
            log.warning("skipping an unreadable deployment step of version %d: %s", version, exc)
    return found


def new_command(
    model_name: str, action: Literal["start", "promote", "abort"], **fields: Any
) -> RolloutCommand:
    """A command from the HTTP API, with an id of its own to find its outcome by."""
    return RolloutCommand(
        model_name=model_name,
        command_id=f"api-{uuid.uuid4().hex}",
        action=action,
        requested_by="api",
        **fields,
    )


async def ask(
    bridge: KafkaBridge,
    follower: RolloutFollower,
    command: RolloutCommand,
    *,
    publish_timeout: float,
    wait: float,
) -> RolloutState | None:
    """Send ``command`` and return the first state that answers it, or ``None`` if no
    controller answered within ``wait`` seconds (no trainer running: the command stays on
    Kafka and is applied when one runs).

    The wait starts before the send, so an outcome followed at once by another command's
    cannot slip past."""

    def answers(state: RolloutState) -> bool:
        outcome = state.last_command
        return outcome is not None and outcome.command_id == command.command_id

    waiter = asyncio.create_task(follower.wait_for(answers, timeout=publish_timeout + wait))
    try:
        record = bridge.topics.rollout_commands.record(command)
        await bridge.publish(record, timeout=publish_timeout)
        done, _ = await asyncio.wait({waiter}, timeout=wait)
        return waiter.result() if done else None
    finally:
        if not waiter.done():
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
