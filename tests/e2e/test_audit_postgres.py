"""Two gateway processes sharing one PostgreSQL audit database, on the real broker.

README, "Audit trail": PostgreSQL works by changing the URL; gateways sharing a database share
one consumer group (derived from the database) and so split the partitions between them, each
writing its share, and the upserts leave one row per request id. Here both gateways start at
the same moment on an empty database (both create the tables), serve clients concurrently, and
the test pins: every request answered with its label, the audit holding exactly one row per
request with that answer (read through either gateway and in the database itself), and each
gateway's feed having written the requests of its own partition: one partition each, together
every request record once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import psycopg
import pytest
import yaml

from irisflow.local.broker.runtime import free_port
from irisflow.settings import load_settings
from tests.e2e.conftest import Stack, eventually, launch_stack, records_on, stop_all
from tests.factories import SETOSA, VIRGINICA
from tests.postgres import RunningServer

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

WRITTEN = "irisflow_gateway_audit_records_total"


@dataclass
class Shared:
    """A worker and two gateways whose audits are one PostgreSQL database at ``url``."""

    url: str
    first: Stack
    second: Stack

    @property
    def gateways(self) -> list[Stack]:
        return [self.first, self.second]


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_bootstrap: str,
    postgresql_server: RunningServer,
) -> Iterator[Shared]:
    url = postgresql_server.create_database()
    folder = tmp_path_factory.mktemp("audit-postgres")
    first = launch_stack(
        folder / "first", kafka_bootstrap, roles=("worker",), **{"gateway.audit_url": url}
    )
    params = yaml.safe_load(first.params.read_text())
    params["gateway"]["port"] = free_port()
    path = folder / "second-params.yaml"
    path.write_text(yaml.safe_dump(params))
    (folder / "second").mkdir()
    second = Stack(params=path, settings=load_settings(path, environ={}), logs=folder / "second")
    try:
        first.start("gateway", "gateway")  # both at once, on a database with no tables yet
        second.start("gateway", "gateway")
        first.wait_ready()
        second.wait_ready()
        yield Shared(url, first, second)
    finally:
        stop_all(second)
        stop_all(first)


def _written(stack: Stack) -> float:
    """Request records this gateway's audit feed has written so far."""
    for line in httpx.get(f"{stack.gateway_url}/metrics", timeout=10).text.splitlines():
        if line.startswith(f'{WRITTEN}{{stream="requests"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _predict(job: tuple[Stack, str, dict[str, float]]) -> httpx.Response:
    stack, rid, features = job
    return httpx.post(
        f"{stack.gateway_url}/v1/predict",
        json={"features": features, "request_id": rid},
        timeout=30,
    )


def _both_feeds_consume(shared: Shared) -> None:
    """Warm up until each gateway's feed has written requests (so both are in the audit's group
    with partitions of their own), then until every warm-up request is written: the counting
    that follows starts on a settled group, with nothing of the warm-up still to come."""
    sent = 0
    deadline = time.monotonic() + 60
    while not all(_written(g) > 0 for g in shared.gateways) and time.monotonic() < deadline:
        gateway = shared.gateways[sent % 2]
        assert _predict((gateway, f"warm-{sent}-{uuid.uuid4().hex[:6]}", SETOSA)).status_code == 200
        sent += 1
        time.sleep(0.2)  # paces the warm-up traffic (about 5 requests/s); not a wait
    assert all(_written(g) > 0 for g in shared.gateways), "a gateway's audit feed never wrote"
    assert eventually(lambda: sum(_written(g) for g in shared.gateways) >= sent)


def _rows(url: str, prefix: str) -> list[tuple[str, str | None, int | None]]:
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT request_id, label, model_version FROM audit_records"
            " WHERE request_id LIKE %s ORDER BY request_id",
            (f"{prefix}%",),
        ).fetchall()
    return [(str(r[0]), r[1], r[2]) for r in rows]


def test_gateways_sharing_a_postgresql_audit_split_its_partitions_and_keep_one_row_a_request(
    shared: Shared,
) -> None:
    _both_feeds_consume(shared)
    before = [_written(g) for g in shared.gateways]
    since = time.time() - 1
    prefix = f"pg-{uuid.uuid4().hex[:6]}-"
    jobs = [
        (shared.gateways[i % 2], f"{prefix}{i:02d}", SETOSA if i % 3 else VIRGINICA)
        for i in range(40)
    ]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(_predict, jobs))

    answers = {}
    for (_, rid, features), response in zip(jobs, responses, strict=True):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["request_id"] == rid
        assert body["label"] == ("setosa" if features is SETOSA else "virginica")
        answers[rid] = (body["label"], body["model_version"])

    def all_audited() -> bool:
        return [r[0] for r in _rows(shared.url, prefix)] == sorted(answers) and all(
            (label, version) == answers[rid] for rid, label, version in _rows(shared.url, prefix)
        )

    assert eventually(all_audited), f"the audit holds {_rows(shared.url, prefix)}"
    page = httpx.get(
        f"{shared.second.gateway_url}/v1/audit",
        params={"since": since, "limit": 1000, "order": "asc"},
        timeout=10,
    ).json()
    ours = [r for r in page["records"] if r["request_id"].startswith(prefix)]
    assert sorted(r["request_id"] for r in ours) == sorted(answers)
    assert {r["request_id"]: (r["label"], r["model_version"]) for r in ours} == answers
    assert {r["status"] for r in ours} == {"answered"}
    for gateway in shared.gateways:  # either gateway reads what the other's clients were told
        rid = jobs[1 if gateway is shared.first else 0][1]
        record = httpx.get(f"{gateway.gateway_url}/v1/predictions/{rid}", timeout=10).json()
        assert (record["label"], record["model_version"]) == answers[rid]

    # each feed wrote the request records of its own partition, and nothing else of this run
    kafka = shared.first.settings.kafka
    per_partition = [0, 0]
    for record in records_on(kafka, kafka.topics.requests):
        if record.key is not None and record.key.decode().startswith(prefix):
            per_partition[record.partition] += 1
    assert min(per_partition) > 0, "every request went to one partition: nothing to split"

    def shares() -> list[float]:
        return [_written(g) - b for g, b in zip(shared.gateways, before, strict=True)]

    eventually(lambda: sum(shares()) >= sum(per_partition))
    assert sorted(shares()) == sorted(per_partition)
