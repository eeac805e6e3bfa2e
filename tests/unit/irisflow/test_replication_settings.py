"""Replication: how many brokers, replicas and in-sync replicas, checked before anything runs."""

from __future__ import annotations

import pytest

from irisflow.errors import ConfigError
from irisflow.kafka.admin import Replication, replication_for, topic_specs
from irisflow.settings import KafkaSettings, load_settings
from tests.conftest import ROOT


def test_irisflow_kafka_brokers_makes_every_process_know_every_embedded_broker() -> None:
    settings = load_settings(ROOT / "params.yaml", environ={"IRISFLOW_KAFKA_BROKERS": "3"})
    assert settings.kafka.embedded_brokers == 3
    assert settings.kafka.bootstrap_servers == ("127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096")


def test_by_default_one_embedded_broker_as_before() -> None:
    settings = load_settings(ROOT / "params.yaml", environ={})
    assert settings.kafka.embedded_brokers == 1
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"


def test_more_replicas_than_embedded_brokers_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="IRISFLOW_KAFKA_BROKERS"):
        load_settings(
            ROOT / "params.yaml",
            environ={"IRISFLOW__KAFKA__REPLICATION_FACTOR": "3"},
        )


def test_more_in_sync_replicas_than_replicas_is_refused() -> None:
    with pytest.raises(ConfigError, match="min_insync_replicas"):
        load_settings(
            ROOT / "params.yaml",
            environ={
                "IRISFLOW_KAFKA_BROKERS": "3",
                "IRISFLOW__KAFKA__REPLICATION_FACTOR": "2",
                "IRISFLOW__KAFKA__MIN_INSYNC_REPLICAS": "3",
            },
        )


@pytest.mark.parametrize(
    ("brokers", "expected"),
    [
        (1, Replication(1, 1)),
        (2, Replication(2, 1)),
        (3, Replication(3, 2)),
        (5, Replication(3, 2)),
    ],
)
def test_unset_replication_follows_the_cluster_size_up_to_three(
    brokers: int, expected: Replication
) -> None:
    assert replication_for(KafkaSettings(bootstrap="kafka:9092"), brokers) == expected


def test_explicit_replication_is_kept_when_the_cluster_can_hold_it() -> None:
    kafka = KafkaSettings(bootstrap="kafka:9092", replication_factor=2, min_insync_replicas=2)
    assert replication_for(kafka, 5) == Replication(2, 2)


def test_an_external_cluster_too_small_for_the_replication_says_what_to_change() -> None:
    kafka = KafkaSettings(bootstrap="kafka:9092", replication_factor=3)
    with pytest.raises(ConfigError, match="at most 1") as refused:
        replication_for(kafka, 1)
    assert "kafka:9092" in str(refused.value)


def test_every_topic_is_created_with_the_replication_and_its_min_insync() -> None:
    specs = topic_specs(KafkaSettings(), Replication(3, 2))
    assert len(specs) == 11
    for spec in specs:
        assert spec.replication_factor == 3
        assert spec.topic_configs["min.insync.replicas"] == "2"
