"""Fixtures shared by every test speed.

The broker is session-scoped (a JVM start costs seconds on 2 cores) and every test gets its own
topics and consumer group ids, so tests never see each other's data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from irisflow.settings import Settings, load_settings
from tests.postgres import audit_db, postgresql_server  # noqa: F401  (fixtures for every test)

log = logging.getLogger("tests")

ROOT = Path(__file__).resolve().parents[1]


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def _embedded_broker() -> Iterator[str]:
    from irisflow.local.broker.runtime import EmbeddedKafka, ensure_kafka_jars, free_port

    cache = Path(os.environ.get("IRISFLOW_CACHE_DIR", Path.home() / ".cache" / "irisflow"))
    data_dir = Path(tempfile.mkdtemp(prefix="irisflow-test-kafka-"))
    broker = EmbeddedKafka(
        libs=ensure_kafka_jars(cache),
        data_dir=data_dir,
        port=free_port(),
        controller_port=free_port(),
        heap="768m",
    )
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """IRISFLOW_KAFKA_BOOTSTRAP if set; else a Kafka container if Docker answers; else embedded."""
    external = os.environ.get("IRISFLOW_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    with _embedded_broker() as bootstrap:
        yield bootstrap


def unique_params(tmp_path: Path, bootstrap: str | None = None, **changes: Any) -> Path:
    """A params.yaml like the project's, with unique topics and group ids for one test."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    tag = uuid.uuid4().hex[:10]
    params["kafka"]["topics"] = {
        key: f"t{tag}.{name.removeprefix('irisflow.')}"
        for key, name in params["kafka"]["topics"].items()
    }
    params["kafka"]["app_id"] = f"irisflow-test-{tag}"
    params["kafka"]["partitions"] = 2
    if bootstrap:
        params["kafka"]["bootstrap"] = bootstrap
    params["home"] = str(tmp_path / "home")
    for dotted, value in changes.items():
        node = params
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path = tmp_path / f"params-{tag}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Settings with unique topics, no broker (for unit and functional tests)."""

    def factory(**changes: Any) -> Settings:
        return load_settings(unique_params(tmp_path, **changes), environ={})

    return factory


@pytest.fixture
def kafka_settings(tmp_path: Path, kafka_bootstrap: str) -> SettingsFactory:
    """Settings pointing at the session broker, with unique topics and group ids."""

    def factory(**changes: Any) -> Settings:
        return load_settings(unique_params(tmp_path, kafka_bootstrap, **changes), environ={})

    return factory
