"""docker-compose.yml, the Dockerfile and the CI workflow, checked without a Docker engine.

They parse, name the expected services and keys, run only real ``irisflow`` subcommands (each
is asked for ``--help``), and set only real ``IRISFLOW_*`` settings. Whether the images build
and the stack comes up is not tested here: these machines have no Docker engine.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from irisflow.cli import app
from irisflow.settings import ENV_OVERRIDES, GENERIC_PREFIX, Settings, load_settings
from tests.conftest import ROOT

IRISFLOW_SERVICES = ("bootstrap", "worker", "trainer", "gateway")


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _compose()["services"][name]
    return service


def _environment(name: str) -> dict[str, str]:
    return {key: str(value) for key, value in (_service(name).get("environment") or {}).items()}


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "deploy" / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def _json_list(arguments: str) -> list[str]:
    parsed = yaml.safe_load(arguments)
    assert isinstance(parsed, list), f"use the exec form: {arguments}"
    return [str(item) for item in parsed]


def _invocations(service: dict[str, Any], entrypoint: list[str]) -> list[list[str]]:
    """Every ``irisflow …`` a service runs: its command after the image's entrypoint, or
    each ``irisflow …`` inside an ``sh -c`` script."""
    command = service.get("command", [])
    command = [command] if isinstance(command, str) else list(command)
    if service.get("entrypoint") == ["sh", "-c"]:
        script = " ".join(command)
        return [shlex.split(found) for found in re.findall(r"irisflow\s+[^&|;()]+", script)]
    return [[*entrypoint, *command]]


def _is_real_command(argv: list[str]) -> str | None:
    """None when ``irisflow <argv> --help`` succeeds, else its output."""
    assert argv[0] == "irisflow", argv
    result = CliRunner().invoke(app, ["--params", str(ROOT / "params.yaml"), *argv[1:], "--help"])
    return None if result.exit_code == 0 else result.output


def test_compose_runs_kafka_the_irisflow_roles_prometheus_and_grafana() -> None:
    services = set(_compose()["services"])
    assert services >= {"kafka", *IRISFLOW_SERVICES, "prometheus", "grafana"}


def test_kafka_is_a_single_kraft_node_of_apache_kafka_4_1() -> None:
    kafka = _service("kafka")
    assert kafka["image"].startswith("apache/kafka:4.1.")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "healthcheck" in kafka


@pytest.mark.parametrize("name", IRISFLOW_SERVICES)
def test_every_irisflow_service_uses_the_compose_kafka(name: str) -> None:
    assert _environment(name)["IRISFLOW_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert _service(name)["build"]["dockerfile"] == "deploy/Dockerfile"


def test_workers_can_be_scaled_no_fixed_host_port_or_name() -> None:
    worker = _service("worker")
    assert "ports" not in worker
    assert "container_name" not in worker
    assert _environment("worker")["IRISFLOW_WORKER_HOST"] == "0.0.0.0"


@pytest.mark.parametrize(
    ("name", "variable"),
    [
        ("gateway", "IRISFLOW_GATEWAY_HOST"),
        ("trainer", "IRISFLOW_TRAINER_HOST"),
        ("worker", "IRISFLOW_WORKER_HOST"),
    ],
)
def test_scraped_services_listen_on_every_interface(name: str, variable: str) -> None:
    assert _environment(name)[variable] == "0.0.0.0"


def _entrypoint() -> list[str]:
    (entrypoint,) = [_json_list(args) for op, args in _dockerfile() if op == "ENTRYPOINT"]
    return entrypoint


@pytest.mark.parametrize("name", IRISFLOW_SERVICES)
def test_every_compose_command_is_a_real_irisflow_subcommand(name: str) -> None:
    invocations = _invocations(_service(name), _entrypoint())
    assert invocations, f"{name} runs no irisflow command"
    for argv in invocations:
        assert _is_real_command(argv) is None, f"{name}: {shlex.join(argv)}"


def test_the_bootstrap_trains_only_when_no_model_is_live() -> None:
    script = " ".join(_service("bootstrap")["command"])
    assert "irisflow models list --json" in script
    assert "irisflow train" in script
    assert '"live": true' in script  # the key list_models writes


def test_a_made_up_subcommand_would_be_caught() -> None:
    assert _is_real_command(["irisflow", "scorer"]) is not None
    assert _is_real_command(["irisflow", "train", "--triger", "x"]) is not None


def _is_setting(variable: str) -> bool:
    if variable in ENV_OVERRIDES or variable == "IRISFLOW_PARAMS":
        return True
    if not variable.startswith(GENERIC_PREFIX):
        return False
    node: Any = Settings
    for part in variable[len(GENERIC_PREFIX) :].lower().split("__"):
        fields = getattr(node, "model_fields", {})
        if part not in fields:
            return False
        node = fields[part].annotation
    return True


def _dockerfile_env() -> dict[str, str]:
    found: dict[str, str] = {}
    for op, args in _dockerfile():
        if op == "ENV":
            found.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    return found


@pytest.mark.parametrize("name", IRISFLOW_SERVICES)
def test_every_irisflow_variable_in_compose_is_a_real_setting(name: str) -> None:
    env = {**_dockerfile_env(), **_environment(name)}
    ours = {key: value for key, value in env.items() if key.startswith("IRISFLOW")}
    assert [key for key in ours if not _is_setting(key)] == []
    interpolated = {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", v) for k, v in ours.items()}
    settings = load_settings(ROOT / "params.yaml", environ=interpolated)
    assert settings.kafka.bootstrap == "kafka:9092"
    assert settings.home == Path("/data")


def test_a_misspelled_variable_would_be_caught() -> None:
    assert not _is_setting("IRISFLOW_WORKERS_HOST")
    assert not _is_setting("IRISFLOW__SCORING__BATCHSIZE")
    assert _is_setting("IRISFLOW__SCORING__BATCH_SIZE")


def test_the_dockerfile_builds_in_stages_and_runs_irisflow() -> None:
    instructions = _dockerfile()
    stages = [args for op, args in instructions if op == "FROM"]
    assert len(stages) >= 2
    assert any(" AS build" in stage for stage in stages)
    assert any(op == "COPY" and args.startswith("--from=build") for op, args in instructions)
    assert _entrypoint() == ["irisflow"]
    (cmd,) = [_json_list(args) for op, args in instructions if op == "CMD"]
    assert _is_real_command(["irisflow", *cmd]) is None
    assert ("USER", "irisflow") in instructions


def test_the_dockerfile_copies_files_that_exist_and_are_not_ignored() -> None:
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for op, args in _dockerfile():
        if op == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source.rstrip("/") in included, f"{source} is excluded from the context"


def test_the_dashboards_and_rules_mounted_by_compose_exist() -> None:
    for name in ("prometheus", "grafana"):
        for volume in _service(name)["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), volume


def test_grafana_provisioning_points_at_the_compose_prometheus_and_dashboards() -> None:
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    assert source["type"] == "prometheus"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "irisflow.yml").read_text())[
        "providers"
    ]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in _service("grafana")["volumes"]}
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"


def _workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    return loaded


def test_ci_runs_on_pushes_and_pull_requests() -> None:
    workflow = _workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert triggers is not None
    assert {"push", "pull_request"} <= set(triggers)


def test_ci_lints_type_checks_and_tests_with_the_makefile() -> None:
    runs = [
        step["run"]
        for job in _workflow()["jobs"].values()
        for step in job["steps"]
        if "run" in step
    ]
    assert any(run.startswith("make lint") for run in runs)
    assert any(run.startswith("make test") for run in runs)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lint:.*\n(\t.*\n)*\t\$\(BIN\)/mypy", makefile, re.MULTILINE)
    assert re.search(r"^test:", makefile, re.MULTILINE)
