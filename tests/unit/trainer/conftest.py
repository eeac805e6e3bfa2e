"""The trainer's unit tests run the service with Kafka stood in for; its rollout controller's
own Kafka loop is tested on the real broker (tests/integration/test_rollout_controller.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def idle_rollout_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run(self: Any) -> None:
        self.ready.set()
        await asyncio.Event().wait()

    monkeypatch.setattr("trainer.service.RolloutController.run", run)
