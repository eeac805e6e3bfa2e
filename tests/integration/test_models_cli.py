"""``irisflow models list | show | promote``: the registry, and rollback by republishing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from irisflow.cli import app
from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.model_topic import publish_update, read_live_update
from irisflow.registry import LocalRegistry
from irisflow.settings import load_settings
from tests.conftest import unique_params
from tests.factories import model_update

pytestmark = pytest.mark.kafka


def test_list_show_and_promote_roll_back_to_an_older_version(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    params = unique_params(tmp_path, kafka_bootstrap)
    settings = load_settings(params, environ={})
    registry = LocalRegistry(settings.registry_dir)
    for version in (1, 2):
        update = model_update(
            version, kind="naive_bayes" if version == 2 else "logistic_regression"
        )
        registry.save(update)

    async def publish_both() -> None:
        await ensure_topics(settings.kafka)
        await publish_update(settings.kafka, registry.get(1))
        await publish_update(settings.kafka, registry.get(2))

    asyncio.run(publish_both())
    runner = CliRunner()

    listed = runner.invoke(app, ["--params", str(params), "models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["version"], r["live"]) for r in rows] == [(1, False), (2, True)]

    shown = runner.invoke(app, ["--params", str(params), "models", "show", "2", "--json"])
    assert json.loads(shown.stdout)["algorithm"] == "naive_bayes"

    promoted = runner.invoke(app, ["--params", str(params), "models", "promote", "1"])
    assert promoted.exit_code == 0, promoted.output
    live = asyncio.run(read_live_update(settings.kafka, settings.model_name))
    assert live is not None
    assert live.version == 1
    rows = json.loads(
        runner.invoke(app, ["--params", str(params), "models", "list", "--json"]).stdout
    )
    assert [r["live"] for r in rows] == [True, False]


def test_showing_an_unknown_version_is_one_clear_error(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    params = unique_params(tmp_path, kafka_bootstrap)
    result = CliRunner().invoke(app, ["--params", str(params), "models", "show", "9"])
    assert result.exit_code != 0
    assert "version 9 is not in the registry" in str(result.exception)
