"""Configuration: params.yaml plus IRISFLOW_* overrides, validated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from irisflow.errors import ConfigError
from irisflow.settings import load_settings
from tests.conftest import ROOT


def test_the_project_params_file_loads_with_iris_defaults() -> None:
    settings = load_settings(ROOT / "params.yaml", environ={})
    assert settings.data.source == "iris"
    assert settings.kafka.topics.requests == "irisflow.requests"
    assert settings.kafka.embedded
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"


def test_irisflow_kafka_bootstrap_points_everything_at_an_existing_cluster() -> None:
    settings = load_settings(ROOT / "params.yaml", environ={"IRISFLOW_KAFKA_BOOTSTRAP": "k1:9092"})
    assert not settings.kafka.embedded
    assert settings.kafka.bootstrap_servers == "k1:9092"


def test_irisflow_params_selects_another_params_file(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("model_name: wine\nscoring: {batch_size: 7}\n")
    settings = load_settings(environ={"IRISFLOW_PARAMS": str(other)})
    assert settings.model_name == "wine"
    assert settings.scoring.batch_size == 7
    assert settings.params_path == other


def test_generic_double_underscore_variables_override_any_param() -> None:
    env = {
        "IRISFLOW__KAFKA__TOPICS__REQUESTS": "mine.requests",
        "IRISFLOW__SCORING__BATCH_SIZE": "9",
    }
    settings = load_settings(ROOT / "params.yaml", environ=env)
    assert settings.kafka.topics.requests == "mine.requests"
    assert settings.scoring.batch_size == 9


def test_settings_are_frozen() -> None:
    settings = load_settings(ROOT / "params.yaml", environ={})
    with pytest.raises(ValueError, match="frozen"):
        settings.model_name = "other"  # type: ignore[misc]


def test_an_invalid_value_is_one_clear_error_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("scoring: {batch_size: 0}\n")
    with pytest.raises(ConfigError, match=r"scoring\.batch_size"):
        load_settings(bad, environ={})


def test_a_missing_params_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="IRISFLOW_PARAMS"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_an_unknown_key_is_refused_rather_than_ignored(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text("scoring: {batchsize: 10}\n")
    with pytest.raises(ConfigError, match="batchsize"):
        load_settings(bad, environ={})
