"""Fixtures of the gateway's in-process tests: the app with a live model, no broker.

The app's lifespan (which connects to Kafka) is not entered, so the gateway behaves as one whose
broker is unreachable unless a test says otherwise (``kafka=True`` marks it reachable).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from tests.conftest import SettingsFactory
from tests.factories import model_update


@pytest.fixture
def client_for(make_settings: SettingsFactory) -> Callable[..., TestClient]:
    """``client_for(live=True, kafka=False, **settings)``: a client of a fresh app."""

    def factory(*, live: bool = True, kafka: bool = False, **changes: Any) -> TestClient:
        app = create_app(make_settings(**changes))
        if live:
            app.state.history.make_live(model_update(1))
        app.state.kafka.ready = kafka
        return TestClient(app)

    return factory


@pytest.fixture
def client(client_for: Callable[..., TestClient]) -> TestClient:
    return client_for()
