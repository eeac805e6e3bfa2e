"""A Kafka client whose every known broker is gone finds the cluster again through its
bootstrap servers (irisflow/kafka/rebootstrap.py), on the real broker."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.metadata import MetadataResponse_v0

from irisflow.kafka import clients  # noqa: F401  (importing the clients installs the recovery)
from irisflow.local.broker.runtime import free_port

pytestmark = [pytest.mark.kafka]


def _brokers(client: AIOKafkaClient) -> list[int]:
    return sorted(broker.nodeId for broker in client.cluster.brokers())


async def _stranded(bootstrap: str) -> AIOKafkaClient:
    """A client whose last metadata names one broker, now gone: what a client keeps when it
    refreshed while only that broker of a restarting cluster was up, and it died next."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    client.cluster.update_metadata(MetadataResponse_v0([(99, "127.0.0.1", free_port())], []))
    assert _brokers(client) == [99]
    return client


def test_a_client_that_knows_only_a_dead_broker_asks_the_bootstrap_servers_again(
    kafka_bootstrap: str,
) -> None:
    async def scenario() -> tuple[bool, list[int]]:
        client = await _stranded(kafka_bootstrap)
        try:
            updated = await client._metadata_update(client.cluster, set())
            return updated, _brokers(client)
        finally:
            await client.close()

    updated, brokers = asyncio.run(scenario())

    assert updated
    assert brokers
    assert 99 not in brokers


def test_rebootstraps_of_one_client_are_at_least_the_interval_apart(
    kafka_bootstrap: str,
) -> None:
    """Its metadata retries come every 100 ms: a cluster that is really down is not asked
    through every bootstrap server that often (REBOOTSTRAP_INTERVAL_SECONDS)."""

    async def scenario() -> tuple[bool, bool]:
        client = await _stranded(kafka_bootstrap)
        try:
            first = await client._metadata_update(client.cluster, set())
            client.cluster.update_metadata(
                MetadataResponse_v0([(99, "127.0.0.1", free_port())], [])
            )
            second = await client._metadata_update(client.cluster, set())
            return first, second
        finally:
            await client.close()

    first, second = asyncio.run(scenario())

    assert first
    assert not second
