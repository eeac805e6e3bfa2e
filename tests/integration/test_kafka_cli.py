"""``irisflow kafka``: a user's broker lifecycle (install, start, status, a crash drill, start
again, stop) on a real embedded broker of its own, and the same commands against an existing
cluster, where they report it and refuse to touch what is not theirs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from irisflow.cli import app
from irisflow.local.broker.runtime import free_port
from tests.conftest import unique_params

pytestmark = pytest.mark.kafka


def _run(params: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--params", str(params), "kafka", *args])


@pytest.fixture
def own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No IRISFLOW_* variable of the developer's shell (an external bootstrap, a broker count)
    changes which broker these commands manage; the jar cache stays shared."""
    for name in list(os.environ):
        if name.startswith("IRISFLOW_") and name != "IRISFLOW_CACHE_DIR":
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("own_environment")
def test_the_embedded_broker_is_started_inspected_crashed_brought_back_and_stopped(
    tmp_path: Path,
) -> None:
    port, controller = free_port(), free_port()
    params = unique_params(
        tmp_path,
        **{
            "kafka.embedded_port": port,
            "kafka.embedded_controller_port": controller,
            "kafka.embedded_heap": "384m",
        },
    )
    assert "jars ready in" in _run(params, "install").stdout

    before = _run(params, "status")
    assert before.exit_code == 1, before.output
    assert "not running" in before.stdout
    assert "start it with `irisflow kafka start`" in before.stdout

    started = _run(params, "start")
    try:
        assert started.exit_code == 0, started.output
        assert f"Kafka broker 1 running at 127.0.0.1:{port}" in started.stdout
        assert str(tmp_path / "home" / "kafka") in started.stdout

        status = _run(params, "status", "--json")
        assert status.exit_code == 0, status.output
        document = json.loads(status.stdout)
        [broker] = document["brokers"]
        assert broker["running"] is True
        assert broker["address"] == f"127.0.0.1:{port}"
        topics = {p["topic"] for p in document["partitions"]}
        requests = next(t for t in topics if t.endswith(".requests"))
        assert {p["partition"] for p in document["partitions"] if p["topic"] == requests} == {
            0,
            1,
        }
        assert {p["leader"] for p in document["partitions"]} == {1}

        killed = _run(params, "stop-broker", "1", "--kill")
        assert killed.stdout.strip() == "broker 1 killed"
        down = _run(params, "status", "--json")
        assert down.exit_code == 1, down.output
        assert json.loads(down.stdout)["brokers"][0]["running"] is False
        assert _run(params, "stop-broker", "1").stdout.strip() == "broker 1 was not running"

        back = _run(params, "start-broker", "1")
        assert back.exit_code == 0, back.output
        assert f"broker 1 running at 127.0.0.1:{port}" in back.stdout
        assert _run(params, "topics").stdout.strip() == "all topics exist"
        table = _run(params, "status")
        assert table.exit_code == 0, table.output
        assert f"{requests:40}    0      1  1         1" in table.stdout
    finally:
        stopped = _run(params, "stop")
    assert stopped.stdout.strip() == "Kafka stopped"
    assert _run(params, "stop").stdout.strip() == "Kafka was not running"


@pytest.mark.usefixtures("own_environment")
def test_an_existing_cluster_is_reported_and_never_stopped_or_started(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    params = unique_params(tmp_path, kafka_bootstrap)

    created = _run(params, "topics")
    assert created.exit_code == 0, created.output
    assert created.stdout.startswith("created: ")
    assert _run(params, "topics").stdout.strip() == "all topics exist"

    status = _run(params, "status", "--json")
    assert status.exit_code == 0, status.output
    document = json.loads(status.stdout)
    assert document["external"] == kafka_bootstrap
    names = set(created.stdout.removeprefix("created: ").strip().split(", "))
    assert len(names) == 11
    mine = [p for p in document["partitions"] if p["topic"] in names]
    assert {p["topic"] for p in mine} == names
    assert all(p["leader"] >= 0 for p in mine)
    assert all(p["isr"] for p in mine)

    for command in (("stop-broker", "1"), ("start-broker", "1")):
        refused = _run(params, *command)
        assert refused.exit_code == 2, refused.output
        assert f"using an external cluster at {kafka_bootstrap}" in refused.stderr
        assert "not used" in refused.stderr

    started = _run(params, "start")
    assert started.exit_code != 0
    assert "unset it to use the embedded broker" in str(started.exception)
