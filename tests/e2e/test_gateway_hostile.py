"""Hostile records and models against real processes: broker, `irisflow worker`, `irisflow gateway`.

Issue #10: a bad record on a topic costs one dead letter, never the audit feed; feedback for an
id nobody requested does not block a later request with that id (finding 4); a model update that
does not load is never reported live (the gateway says what the workers serve).
"""

from __future__ import annotations

import asyncio
import io
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sklearn.linear_model import LogisticRegression

from irisflow.kafka.clients import make_producer
from irisflow.kafka.model_topic import publish_update
from irisflow.registry import serialize_model
from irisflow.schemas import DeadLetter, ModelUpdate
from irisflow.settings import KafkaSettings
from tests.e2e.conftest import Stack, eventually, launch_stack, records_on, stop_all
from tests.factories import SETOSA, iris_xy, model_update

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


def _produce(kafka: KafkaSettings, topic: str, key: bytes, value: bytes) -> None:
    async def run() -> None:
        producer = make_producer(kafka)
        await producer.start()
        try:
            await producer.send_and_wait(topic, key=key, value=value)
        finally:
            await producer.stop()

    asyncio.run(run())


def _letters(kafka: KafkaSettings) -> list[DeadLetter]:
    """Every dead letter so far, read from the beginning."""
    return [DeadLetter.from_bytes(r.value) for r in records_on(kafka, kafka.topics.dead_letters)]


def _metric(url: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ------------------------------------------------------------------------- bad records


def test_an_unreadable_feedback_record_is_dead_lettered_and_the_audit_goes_on(
    gateway_stack: Stack,
) -> None:
    """Finding 5: the audit feed used to loop forever on a NaN ``labeled_at``."""
    kafka = gateway_stack.settings.kafka
    url = gateway_stack.gateway_url
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    poison = b'{"request_id":"' + victim.encode() + b'","label":"setosa","labeled_at":NaN}'
    _produce(kafka, kafka.topics.feedback, victim.encode(), poison)
    after = f"after-{uuid.uuid4().hex[:8]}"
    assert httpx.post(
        f"{url}/v1/predict", json={"features": SETOSA, "request_id": after}, timeout=30
    ).is_success
    answered = eventually(
        lambda: httpx.get(f"{url}/v1/predictions/{after}", timeout=10).status_code == 200
    )
    assert answered, "the audit feed stopped after the bad record"

    def lettered() -> list[DeadLetter]:
        return [
            x for x in _letters(kafka) if x.consumer == "gateway.audit" and x.original == poison
        ]

    (letter,) = eventually(lettered)
    assert (letter.source_topic, letter.reason) == (kafka.topics.feedback, "undecodable")
    counted = _metric(
        url,
        "irisflow_dead_letters_total",
        topic=kafka.topics.feedback,
        reason="undecodable",
        consumer="gateway.audit",
    )
    assert counted >= 1
    stats = httpx.get(f"{url}/v1/stats", timeout=30)
    assert stats.status_code == 200


@pytest.mark.parametrize("wait", [True, False])
def test_feedback_for_an_id_never_requested_does_not_block_a_later_request(
    gateway_stack: Stack, wait: bool
) -> None:
    """Finding 4: the audit called such an id pending, so the request was never published."""
    url = gateway_stack.gateway_url
    rid = f"early-{uuid.uuid4().hex[:8]}"
    sent = httpx.post(f"{url}/v1/feedback", json={"request_id": rid, "label": "setosa"})
    assert sent.status_code == 202

    def audited() -> str | None:
        found = httpx.get(f"{url}/v1/predictions/{rid}", timeout=10)
        return found.json()["status"] if found.status_code == 200 else None

    assert eventually(audited) == "unrequested"
    body = {"features": SETOSA, "request_id": rid}
    response = httpx.post(f"{url}/v1/predict?wait={str(wait).lower()}", json=body, timeout=30)
    assert response.status_code == (200 if wait else 202), response.text
    assert eventually(lambda: audited() == "answered")
    record = httpx.get(f"{url}/v1/predictions/{rid}", timeout=10).json()
    assert (record["label"], record["feedback"]["label"]) == ("setosa", "setosa")


# ------------------------------------------------------------------------- bad models


def _bad_checksum() -> ModelUpdate:
    return model_update(2).model_copy(update={"sha256": "0" * 64})


def _zip_bomb() -> ModelUpdate:
    """300 MiB of zeros in a zip of ~300 KB (the limit is 256 MiB uncompressed)."""
    buffer = io.BytesIO()
    block = bytes(1024 * 1024)
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("schema.json", "w") as entry,
    ):
        for _ in range(300):
            entry.write(block)
    return model_update(2, artifact=buffer.getvalue())


def _wrong_features() -> ModelUpdate:
    """A classifier fit on three features, published as if it took the four iris features."""
    x, y = iris_xy()
    return model_update(
        2, artifact=serialize_model(LogisticRegression(max_iter=500).fit(x[:, :3], y))
    )


BAD_MODELS = {
    "bad checksum": _bad_checksum,
    "zip bomb": _zip_bomb,
    "wrong features": _wrong_features,
}


@pytest.fixture(params=list(BAD_MODELS))
def fresh_gateway_after_a_bad_update(
    request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str
) -> Iterator[tuple[Stack, Callable[[], ModelUpdate]]]:
    """A gateway started on a topic holding [v1 good, v2 bad] (no worker, no registry)."""
    stack = launch_stack(tmp_path, kafka_bootstrap, roles=())
    bad = BAD_MODELS[request.param]
    asyncio.run(publish_update(stack.settings.kafka, bad()))
    stack.start("gateway", "gateway")
    try:
        stack.wait_ready()
        yield stack, bad
    finally:
        stop_all(stack)


def test_a_fresh_gateway_reports_the_newest_version_that_loads(
    fresh_gateway_after_a_bad_update: tuple[Stack, Callable[[], ModelUpdate]],
) -> None:
    stack, bad = fresh_gateway_after_a_bad_update
    url = stack.gateway_url
    ready = httpx.get(f"{url}/health/ready", timeout=10).json()
    assert (ready["ready"], ready["model_version"]) == (True, 1)
    models = httpx.get(f"{url}/v1/models", timeout=10).json()
    assert models["live_version"] == 1

    # the same bad bytes arriving live: refused, dead-lettered once by this gateway, v1 stays
    asyncio.run(publish_update(stack.settings.kafka, bad().model_copy(update={"version": 3})))

    def refused() -> list[DeadLetter]:
        return [x for x in _letters(stack.settings.kafka) if x.consumer == "gateway.model-feed"]

    (letter,) = eventually(refused)
    assert letter.source_topic == stack.settings.kafka.topics.model_updates
    assert letter.reason == "refused_model"
    assert "version 3" in letter.error
    assert httpx.get(f"{url}/v1/models", timeout=10).json()["live_version"] == 1
    assert httpx.get(f"{url}/health/ready", timeout=10).json()["model_version"] == 1
    counted = _metric(
        url, "irisflow_dead_letters_total", reason="refused_model", consumer="gateway.model-feed"
    )
    assert counted == 1
