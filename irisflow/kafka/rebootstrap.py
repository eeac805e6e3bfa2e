"""Rebootstrap: a Kafka client that lost every broker it knew asks the bootstrap servers again.

aiokafka refreshes cluster metadata only from the brokers named by its last metadata, never from
``bootstrap_servers`` again (aio-libs/aiokafka#459). A client that refreshed while only one
broker of a restarting cluster was back knows that one broker alone, until its next refresh
(``metadata_max_age_ms``, five minutes); if that broker fails first, the client asks it, and
only it, every 100 ms for ever. The fault drill found exactly that: the whole cluster restarted,
then the leader of ``model-updates`` killed, and neither worker ever saw the next version
("Unable to update metadata from [1]" until the test gave up). Kafka's Java client closed the
same hole with KIP-899 (``metadata.recovery.strategy=rebootstrap``, the default since 4.0).

:func:`install` gives every aiokafka client in the process (irisflow's and Faust's) the same
recovery: when no known broker answered a metadata request, the bootstrap servers are asked,
at most once a second per client, and whatever broker answers brings the whole cluster layout
back. Nothing changes while any known broker answers.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

__all__ = ["REBOOTSTRAP_INTERVAL_SECONDS", "install", "rebootstrap"]

log = logging.getLogger(__name__)

REBOOTSTRAP_INTERVAL_SECONDS = 1.0
"""Least time between two rebootstraps of one client (its metadata retries come every 100 ms)."""

_LAST = "_irisflow_rebootstrapped_at"


def install() -> None:
    """Make every :class:`AIOKafkaClient` rebootstrap when no known broker answers (once per
    process; later calls do nothing)."""
    if getattr(AIOKafkaClient, "_irisflow_rebootstrap", False):
        return
    known_brokers_only = AIOKafkaClient._metadata_update

    async def metadata_update(self: AIOKafkaClient, cluster_metadata: Any, topics: Any) -> bool:
        if await known_brokers_only(self, cluster_metadata, topics):
            return True
        return await rebootstrap(self, cluster_metadata, topics)

    AIOKafkaClient._metadata_update = metadata_update
    AIOKafkaClient._irisflow_rebootstrap = True


async def rebootstrap(client: AIOKafkaClient, cluster_metadata: Any, topics: Any) -> bool:
    """Ask the bootstrap servers for the cluster's metadata; ``True`` once one answered with
    brokers (and ``cluster_metadata`` holds them)."""
    now = time.monotonic()
    if now - getattr(client, _LAST, float("-inf")) < REBOOTSTRAP_INTERVAL_SECONDS:
        return False
    setattr(client, _LAST, now)
    request = MetadataRequest(list(topics) if topics else None)
    for host, port, _ in client.hosts:
        try:
            conn = await create_conn(
                host,
                port,
                client_id=client._client_id,
                request_timeout_ms=client._request_timeout_ms,
                ssl_context=client._ssl_context,
                security_protocol=client._security_protocol,
                max_idle_ms=client._connections_max_idle_ms,
                sasl_mechanism=client._sasl_mechanism,
                sasl_plain_username=client._sasl_plain_username,
                sasl_plain_password=client._sasl_plain_password,
                sasl_kerberos_service_name=client._sasl_kerberos_service_name,
                sasl_kerberos_domain_name=client._sasl_kerberos_domain_name,
                sasl_oauth_token_provider=client._sasl_oauth_token_provider,
            )
        except (TimeoutError, OSError, KafkaError):
            continue
        try:
            metadata = await conn.send(request)
        except (TimeoutError, KafkaError):
            continue
        finally:
            conn.close()
        if not metadata.brokers:
            continue
        cluster_metadata.update_metadata(metadata)
        log.warning(
            "no broker of the last cluster metadata answered; bootstrapped again from %s:%s "
            "(brokers now %s)",
            host,
            port,
            sorted(broker.nodeId for broker in cluster_metadata.brokers()),
        )
        return True
    return False
