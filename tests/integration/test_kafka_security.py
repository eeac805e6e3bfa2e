"""Clusters that demand authentication: irisflow's clients pass the configured SASL settings.

A real broker with a SASL/PLAIN listener (the mechanism most managed clusters offer beside
SCRAM): topics are created, records go through and come back, with the configured user; a
wrong password is one clear error instead of a hang.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from irisflow.errors import KafkaUnavailable
from irisflow.kafka.admin import describe_partitions, ensure_topics, wait_for_kafka
from irisflow.kafka.clients import make_consumer, make_producer
from irisflow.local.broker.runtime import EmbeddedKafka, ensure_kafka_jars, free_port
from irisflow.settings import KafkaSettings
from streams.faust_app import broker_credentials

pytestmark = pytest.mark.kafka

CACHE = Path(os.environ.get("IRISFLOW_CACHE_DIR", Path.home() / ".cache" / "irisflow"))
PASSWORD = "s3cret-" + uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def sasl_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port, sasl_port, controller = free_port(), free_port(), free_port()
    listener = (
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller},"
        f"SASL_PLAINTEXT://127.0.0.1:{sasl_port}\n"
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},"
        f"SASL_PLAINTEXT://127.0.0.1:{sasl_port}\n"
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
        "SASL_PLAINTEXT:SASL_PLAINTEXT\n"
        "sasl.enabled.mechanisms=PLAIN\n"
        "listener.name.sasl_plaintext.plain.sasl.jaas.config="
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'user_irisflow="{PASSWORD}";\n'
    )
    broker = EmbeddedKafka(
        libs=ensure_kafka_jars(CACHE),
        data_dir=tmp_path_factory.mktemp("sasl") / "kafka",
        port=port,
        controller_port=controller,
        heap="256m",
        extra_properties=listener,
    )
    broker.start()
    try:
        yield f"127.0.0.1:{sasl_port}"
    finally:
        broker.stop()


def _kafka(bootstrap: str, password: str = PASSWORD) -> KafkaSettings:
    tag = uuid.uuid4().hex[:8]
    names = {k: f"sasl{tag}.{k}" for k in KafkaSettings().topics.model_dump()}
    return KafkaSettings.model_validate(
        {
            "bootstrap": bootstrap,
            "partitions": 2,
            "topics": names,
            "security": {
                "protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "irisflow",
                "sasl_password": password,
            },
        }
    )


async def _round_trip(kafka: KafkaSettings) -> list[bytes]:
    producer = make_producer(kafka)
    await producer.start()
    try:
        await producer.send_and_wait(kafka.topics.requests, b"hello", key=b"k")
    finally:
        await producer.stop()
    consumer = make_consumer(kafka, kafka.topics.requests, group_id=f"sasl-{uuid.uuid4().hex}")
    await consumer.start()
    try:
        fetched = await consumer.getmany(timeout_ms=15000)
    finally:
        await consumer.stop()
    return [record.value for batch in fetched.values() for record in batch]


def test_topics_and_records_go_through_a_sasl_listener_as_the_configured_user(
    sasl_bootstrap: str,
) -> None:
    kafka = _kafka(sasl_bootstrap)

    created = asyncio.run(ensure_topics(kafka))

    assert kafka.topics.requests in created
    assert asyncio.run(_round_trip(kafka)) == [b"hello"]
    leaders = asyncio.run(describe_partitions(kafka))
    assert {p.topic for p in leaders} == set(kafka.topics.model_dump().values())


def test_a_wrong_password_is_a_clear_error_not_a_hang(sasl_bootstrap: str) -> None:
    kafka = _kafka(sasl_bootstrap, password="not-the-password")
    with pytest.raises(KafkaUnavailable, match=sasl_bootstrap):
        asyncio.run(wait_for_kafka(kafka, timeout=3.0))


def test_the_workers_faust_app_gets_the_same_credentials() -> None:
    credentials = broker_credentials(_kafka("kafka:9093"))
    assert credentials is not None
    assert credentials.protocol.name == "SASL_PLAINTEXT"
    assert credentials.username == "irisflow"
    assert credentials.password == PASSWORD
    assert credentials.mechanism.value == "PLAIN"
    assert broker_credentials(KafkaSettings(bootstrap="kafka:9092")) is None
