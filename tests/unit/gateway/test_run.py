"""``irisflow gateway`` serves the app with the configured connection settings."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import run as gateway_run
from irisflow.settings import Settings
from tests.conftest import SettingsFactory


def test_idle_client_connections_stay_open_as_long_as_configured(
    monkeypatch: pytest.MonkeyPatch, make_settings: SettingsFactory
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(gateway_run.uvicorn, "run", lambda app, **options: seen.update(options))
    configured = make_settings(**{"gateway.keep_alive_seconds": 93})

    gateway_run.run_gateway(configured)

    assert seen["timeout_keep_alive"] == 93
    assert seen["port"] == configured.gateway.port


def test_idle_connections_outlive_common_client_pools_by_default() -> None:
    """Go's and nginx's pools keep idle connections 60-90 s; closing first races their reuse."""
    assert Settings().gateway.keep_alive_seconds >= 75
