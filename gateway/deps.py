"""FastAPI dependencies as ``Annotated`` aliases: each names one part of the gateway.

The parts are built once by :func:`gateway.app.create_app` and kept on ``app.state``; a
dependency only reads its part (``async``, so FastAPI calls it on the event loop rather than in
a worker thread). A route asks for exactly the parts it uses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar, cast

from fastapi import Depends, Request

from gateway.audit.store import AuditStore
from gateway.bridge import KafkaBridge
from gateway.input_checks import InputChecks
from gateway.kafka_health import KafkaHealth
from gateway.metrics import GatewayMetrics
from gateway.model_versions import ModelHistory
from gateway.predicting import Scoring as ScoringParts
from gateway.trips import Trip, trip_of
from irisflow.kafka.rollout_topic import RolloutFollower
from irisflow.schemas import ModelMetadata
from irisflow.settings import Settings as IrisflowSettings

__all__ = [
    "Audit",
    "Bridge",
    "Checks",
    "History",
    "Kafka",
    "Live",
    "Metrics",
    "Rollout",
    "Scoring",
    "Settings",
    "TripOf",
]

T = TypeVar("T")


def _part(name: str, kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency returning ``app.state.<name>`` (``kind`` is for the type checker)."""

    async def part(request: Request) -> T:
        return cast(T, getattr(request.app.state, name))

    part.__name__ = f"{name}_of"
    return part


async def _trip(request: Request) -> Trip:
    return trip_of(request.scope)


async def _live(request: Request) -> ModelMetadata | None:
    history: ModelHistory = request.app.state.history
    return history.live


Audit = Annotated[AuditStore, Depends(_part("audit", AuditStore))]
Bridge = Annotated[KafkaBridge, Depends(_part("bridge", KafkaBridge))]
Checks = Annotated[InputChecks, Depends(_part("checks", InputChecks))]
History = Annotated[ModelHistory, Depends(_part("history", ModelHistory))]
Kafka = Annotated[KafkaHealth, Depends(_part("kafka", KafkaHealth))]
Live = Annotated[ModelMetadata | None, Depends(_live)]
"""The live model's metadata now (``None`` before one is live)."""
Metrics = Annotated[GatewayMetrics, Depends(_part("metrics", GatewayMetrics))]
Rollout = Annotated[RolloutFollower, Depends(_part("rollout", RolloutFollower))]
"""The follower of the rollouts topic (its ``current`` is the newest state read)."""
Scoring = Annotated[ScoringParts, Depends(_part("scoring", ScoringParts))]
"""What the predict path takes (:class:`gateway.predicting.Scoring`)."""
Settings = Annotated[IrisflowSettings, Depends(_part("settings", IrisflowSettings))]
TripOf = Annotated[Trip, Depends(_trip)]
"""This HTTP request's trace and hop stamps (:mod:`gateway.trips`), started as it arrived."""
