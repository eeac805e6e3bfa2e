"""Rollout states as the rollout controller publishes them, for the interfaces' tests.

The gateway, the CLI and the dashboard only read states and send commands; these tests play the
controller (the one writer) with states built here: readings of both versions, decisions with
their numbers, and the outcome of a command.
"""

from __future__ import annotations

import time

from irisflow.schemas import (
    CommandOutcome,
    ModelUpdate,
    RolloutCommand,
    RolloutStage,
    RolloutState,
    RolloutStep,
    VersionReading,
)

__all__ = ["ROLLOUT_ID", "answer", "readings", "rollout_state", "step"]

ROLLOUT_ID = "rollout-2-1a2b3c"


def step(
    stage: RolloutStage,
    *,
    version: int = 2,
    champion: int = 1,
    share: float = 0.1,
    at: float | None = None,
    decided_by: str = "policy",
    reason: str = "",
    rollout_id: str = ROLLOUT_ID,
) -> RolloutStep:
    return RolloutStep(
        at=time.time() if at is None else at,
        rollout_id=rollout_id,
        version=version,
        champion_version=champion,
        stage=stage,
        share=share,
        decided_by=decided_by,
        reason=reason or f"moved to {stage.value}",
        numbers={"agreement": 0.97, "scored": 640.0},
    )


def readings(candidate: int = 2, champion: int = 1) -> list[VersionReading]:
    """Both versions' numbers on 640 paired requests, 80 of them labeled."""
    return [
        VersionReading(
            version=champion,
            role="champion",
            scored=640,
            served=640,
            agreement=1.0,
            class_mix={"setosa": 0.34, "versicolor": 0.33, "virginica": 0.33},
            class_psi=0.004,
            confidence_mean=0.91,
            confidence_histogram=[0, 0, 0, 0, 2, 8, 30, 100, 200, 300],
            latency_p50_seconds=0.0011,
            latency_p99_seconds=0.0042,
            labeled=80,
            accuracy=0.95,
            macro_f1=0.949,
            estimated_accuracy=0.93,
            estimated_samples=640,
        ),
        VersionReading(
            version=candidate,
            role="candidate",
            scored=640,
            served=0,
            errors=3,
            agreement=0.9688,
            class_mix={"setosa": 0.33, "versicolor": 0.35, "virginica": 0.32},
            class_psi=0.012,
            confidence_mean=0.88,
            confidence_histogram=[0, 0, 0, 1, 5, 12, 40, 110, 210, 262],
            latency_p50_seconds=0.0013,
            latency_p99_seconds=0.0051,
            labeled=80,
            accuracy=0.9625,
            macro_f1=0.961,
            estimated_accuracy=0.915,
            estimated_samples=640,
        ),
    ]


def rollout_state(
    stage: RolloutStage = RolloutStage.SHADOW,
    *,
    model_name: str = "iris",
    candidate: ModelUpdate | None = None,
    candidate_version: int = 2,
    champion_version: int = 1,
    share: float = 0.1,
    steps: list[RolloutStep] | None = None,
    history: list[RolloutStep] | None = None,
    last_command: CommandOutcome | None = None,
) -> RolloutState:
    """A state the controller would publish; ``candidate`` (with its bytes) only while active."""
    return RolloutState(
        model_name=model_name,
        rollout_id=ROLLOUT_ID,
        stage=stage,
        candidate_version=candidate_version,
        champion_version=champion_version,
        share=share,
        started_at=time.time() - 120,
        steps=steps if steps is not None else [step(RolloutStage.SHADOW, reason="started by api")],
        readings=readings(candidate_version, champion_version),
        candidate=candidate,
        last_command=last_command,
        history=history or [],
    )


def answer(
    command: RolloutCommand, state: RolloutState | None, *, status: int = 200, error: str = ""
) -> RolloutState:
    """``state`` (or an empty one) carrying the controller's outcome of ``command``."""
    outcome = CommandOutcome(
        command_id=command.command_id,
        action=command.action,
        accepted=status == 200,
        status=status,
        error=error or None,
    )
    base = state or RolloutState(model_name=command.model_name)
    return base.model_copy(update={"last_command": outcome, "updated_at": time.time()})
