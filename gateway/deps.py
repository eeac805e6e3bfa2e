"""FastAPI dependencies as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.metrics import GatewayMetrics
from gateway.state import GatewayState

__all__ = ["Metrics", "State"]


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.irisflow
    return state


def _metrics(request: Request) -> GatewayMetrics:
    metrics: GatewayMetrics = request.app.state.metrics
    return metrics


State = Annotated[GatewayState, Depends(_state)]
Metrics = Annotated[GatewayMetrics, Depends(_metrics)]
