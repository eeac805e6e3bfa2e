"""Every gateway endpoint against real processes: broker, `irisflow worker`, `irisflow gateway`."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from irisflow.kafka.clients import make_producer, send
from irisflow.schemas import BatchPredictionRequest, PredictionRequest
from irisflow.settings import KafkaSettings
from irisflow.topics import Topics
from tests.e2e.conftest import (
    GATEWAY_API_KEY,
    Stack,
    eventually,
    records_on,
    requests_published,
)
from tests.factories import SETOSA, VIRGINICA

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

VERSICOLOR = {"sepal_length": 5.9, "sepal_width": 2.8, "petal_length": 4.3, "petal_width": 1.3}
ADMIN = {"X-API-Key": GATEWAY_API_KEY}


def _post(stack: Stack, path: str, body: object = None, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{stack.gateway_url}{path}", json=body, timeout=30, **kwargs)


def _get(stack: Stack, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(f"{stack.gateway_url}{path}", timeout=30, **kwargs)


def _records_on(kafka: KafkaSettings, topic: str, key: str | None = None) -> list[bytes]:
    """Every value on ``topic`` (optionally only under ``key``), read from the beginning."""
    return [r.value for r in records_on(kafka, topic) if key is None or r.key == key.encode()]


def _metric(stack: Stack, name: str, labels: str = "") -> float:
    text = _get(stack, "/metrics").text
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}}" if labels else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    return error


def test_predict_answers_with_label_probabilities_and_version(gateway_stack: Stack) -> None:
    response = _post(gateway_stack, "/v1/predict", {"features": SETOSA})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] == "setosa"
    assert body["probabilities"]["setosa"] > 0.9
    assert body["model_version"] == 1
    assert body["latency_seconds"] > 0


def test_wait_false_answers_202_and_the_result_is_fetched_later(gateway_stack: Stack) -> None:
    response = _post(gateway_stack, "/v1/predict?wait=false", {"features": VIRGINICA})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "accepted"
    assert response.headers["location"] == body["result_url"]
    assert body["result_url"] == f"/v1/predictions/{body['request_id']}"

    def answered() -> dict[str, Any] | None:
        result = _get(gateway_stack, body["result_url"])
        return result.json() if result.status_code == 200 and result.json()["label"] else None

    record = eventually(answered)
    assert record is not None
    assert (record["status"], record["label"], record["features"]) == (
        "answered",
        "virginica",
        VIRGINICA,
    )


def test_wait_false_answers_202_once_on_the_broker_and_publishes_an_id_once(
    gateway_stack: Stack,
) -> None:
    """README: ``?wait=false`` answers 202 only once the record is on the broker, and an id is
    published once per gateway, with or without ``?wait=false``."""
    kafka = gateway_stack.settings.kafka
    rid = f"nowait-{uuid.uuid4().hex[:8]}"
    body = {"features": VERSICOLOR, "request_id": rid}
    assert _post(gateway_stack, "/v1/predict?wait=false", body).status_code == 202
    assert len(requests_published(kafka, rid)) == 1  # read at once: no waiting for it
    assert _post(gateway_stack, "/v1/predict?wait=false", body).status_code == 202
    waited = _post(gateway_stack, "/v1/predict", body)
    assert waited.status_code == 200, waited.text
    assert (waited.json()["request_id"], waited.json()["label"]) == (rid, "versicolor")
    assert len(requests_published(kafka, rid)) == 1


def test_a_batch_is_answered_in_request_order(gateway_stack: Stack) -> None:
    response = _post(
        gateway_stack, "/v1/predict/batch", {"instances": [SETOSA, VIRGINICA, SETOSA, VERSICOLOR]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    labels = [p["label"] for p in body["predictions"]]
    assert labels == ["setosa", "virginica", "setosa", "versicolor"]
    assert body["model_version"] == 1
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-6 for p in body["predictions"])


def test_a_batch_over_the_limit_is_413_with_the_limit(gateway_stack: Stack) -> None:
    response = _post(gateway_stack, "/v1/predict/batch", {"instances": [SETOSA] * 6})
    assert _error(response, 413, "too_many_instances")["limit"] == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"features": {**SETOSA, "petal_width": "wide"}}, "features.petal_width"),
        (
            {"features": {k: v for k, v in SETOSA.items() if k != "sepal_width"}},
            "features.sepal_width",
        ),
        ({"features": {**SETOSA, "colour": 1.0}}, "features.colour"),
        ({"features": SETOSA, "extra": 1}, "extra"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    gateway_stack: Stack, body: dict[str, Any], field: str
) -> None:
    error = _error(_post(gateway_stack, "/v1/predict", body), 422, "invalid_request")
    assert field in [f["field"] for f in error["fields"]]


def test_a_non_finite_feature_is_a_422(gateway_stack: Stack) -> None:
    raw = b'{"features": {"sepal_length": NaN, "sepal_width": 1, "petal_length": 1, '
    raw += b'"petal_width": 2}}'
    response = httpx.post(
        f"{gateway_stack.gateway_url}/v1/predict",
        content=raw,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert _error(response, 422, "invalid_request")["fields"][0]["field"] == "features.sepal_length"


def test_a_repeated_request_id_returns_the_same_answer_and_is_scored_once(
    gateway_stack: Stack,
) -> None:
    rid = f"client-{uuid.uuid4().hex[:8]}"
    first = _post(gateway_stack, "/v1/predict", {"features": SETOSA, "request_id": rid})
    second = _post(gateway_stack, "/v1/predict", {"features": SETOSA, "request_id": rid})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["request_id"] == rid
    assert len(requests_published(gateway_stack.settings.kafka, rid)) == 1


def test_concurrent_duplicates_share_one_request(gateway_stack: Stack) -> None:
    rid = f"burst-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(
                lambda _: _post(
                    gateway_stack, "/v1/predict", {"features": VIRGINICA, "request_id": rid}
                ),
                range(8),
            )
        )
    assert {r.status_code for r in responses} == {200}
    assert len({r.text for r in responses}) == 1
    assert len(requests_published(gateway_stack.settings.kafka, rid)) == 1


def test_a_request_id_reused_for_other_features_is_a_409(gateway_stack: Stack) -> None:
    rid = f"reuse-{uuid.uuid4().hex[:8]}"
    assert _post(gateway_stack, "/v1/predict", {"features": SETOSA, "request_id": rid}).is_success
    again = _post(gateway_stack, "/v1/predict", {"features": VIRGINICA, "request_id": rid})
    _error(again, 409, "request_id_conflict")


def test_feedback_is_published_and_joined_to_its_prediction(gateway_stack: Stack) -> None:
    rid = f"fb-{uuid.uuid4().hex[:8]}"
    assert _post(gateway_stack, "/v1/predict", {"features": SETOSA, "request_id": rid}).is_success
    response = _post(gateway_stack, "/v1/feedback", {"request_id": rid, "label": "setosa"})
    assert response.status_code == 202, response.text
    assert response.json()["topic"] == gateway_stack.settings.kafka.topics.feedback

    def with_feedback() -> dict[str, Any] | None:
        record = _get(gateway_stack, f"/v1/predictions/{rid}").json()
        return record if record.get("feedback") else None

    record = eventually(with_feedback)
    assert record is not None
    assert record["label"] == "setosa"
    assert record["feedback"]["label"] == "setosa"
    assert record["feedback"]["correct"] is True
    assert record["reply_to"] == _get(gateway_stack, "/health/ready").json()["instance_id"]


def test_feedback_with_a_label_outside_the_models_classes_is_a_422(gateway_stack: Stack) -> None:
    response = _post(gateway_stack, "/v1/feedback", {"request_id": "any", "label": "tulip"})
    assert _error(response, 422, "invalid_request")["fields"][0]["field"] == "label"


def test_an_unknown_request_id_is_a_404(gateway_stack: Stack) -> None:
    _error(_get(gateway_stack, "/v1/predictions/no-such-request"), 404, "not_found")


def test_the_audit_is_queryable_by_time(gateway_stack: Stack) -> None:
    since = time.time()
    rids = [f"audit-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    for rid in rids:
        assert _post(
            gateway_stack, "/v1/predict", {"features": SETOSA, "request_id": rid}
        ).is_success
    until = time.time()

    def listed() -> list[str]:
        page = _get(
            gateway_stack, "/v1/audit", params={"since": since, "until": until, "order": "asc"}
        )
        found = [r["request_id"] for r in page.json()["records"] if r["status"] == "answered"]
        return found if set(rids) <= set(found) else []

    assert eventually(listed) == rids
    later = _get(gateway_stack, "/v1/audit", params={"since": until + 1}).json()
    assert not set(rids) & {r["request_id"] for r in later["records"]}
    one = _get(gateway_stack, "/v1/audit", params={"since": since, "limit": 1}).json()
    assert one["count"] == 1


def _answered(stack: Stack, rid: str) -> dict[str, Any] | None:
    """The audit's record of ``rid`` once it holds the answer (and feedback, if sent)."""
    found = _get(stack, f"/v1/predictions/{rid}")
    if found.status_code != 200 or found.json()["status"] != "answered":
        return None
    record: dict[str, Any] = found.json()
    return record


def _bucket(stats: dict[str, Any], at: float) -> int:
    """The index of the stats bucket that holds the moment ``at``."""
    index = int((at - stats["buckets"][0]) // stats["bucket_seconds"])
    assert 0 <= index < len(stats["buckets"]), (at, stats["buckets"][0])
    return index


def test_stats_count_this_tests_own_predictions_latency_accuracy_and_drift(
    gateway_stack: Stack,
) -> None:
    """Asserted on the buckets holding this test's own records (one-second buckets, found by
    their audit times), so other tests' traffic cannot make it pass: if these predictions
    never reached the audit, their buckets hold nothing of theirs and the audit has no record."""
    batch_id, single_id = f"stats-b-{uuid.uuid4().hex[:8]}", f"stats-s-{uuid.uuid4().hex[:8]}"
    batch = _post(
        gateway_stack,
        "/v1/predict/batch",
        {"instances": [SETOSA, VIRGINICA, SETOSA, VERSICOLOR, SETOSA], "request_id": batch_id},
    )
    assert batch.status_code == 200, batch.text
    assert _post(
        gateway_stack, "/v1/predict", {"features": VIRGINICA, "request_id": single_id}
    ).is_success
    labeled = _post(gateway_stack, "/v1/feedback", {"request_id": single_id, "label": "virginica"})
    assert labeled.status_code == 202, labeled.text
    batch_record = eventually(lambda: _answered(gateway_stack, batch_id))
    assert batch_record is not None, "the batch never reached the audit"
    single_record = eventually(
        lambda: (r := _answered(gateway_stack, single_id)) and r["feedback"] and r
    )
    assert single_record is not None, "the prediction or its feedback never reached the audit"

    stats = _get(gateway_stack, "/v1/stats", params={"window": 120, "buckets": 120}).json()
    assert len(stats["buckets"]) == len(stats["throughput"]) == 120
    assert stats["bucket_seconds"] == 1.0
    scored = _bucket(stats, batch_record["scored_at"])
    assert round(stats["throughput"][scored]) >= 5  # instances per second in its own second
    assert stats["latency_p50"][scored] is not None
    assert stats["latency_p95"][scored] is not None
    judged = _bucket(stats, single_record["feedback"]["labeled_at"])
    assert stats["accuracy"][judged] is not None
    sent = _bucket(stats, batch_record["at"])
    assert {name: series[sent] is not None for name, series in stats["drift"].items()} == {
        name: True for name in SETOSA
    }
    assert stats["totals"]["predictions"] >= 6
    assert stats["totals"]["feedback"] >= 1
    assert stats["live_version"] == _get(gateway_stack, "/v1/models").json()["live_version"]


def test_requests_produced_straight_to_kafka_are_audited_with_their_answers(
    gateway_stack: Stack,
) -> None:
    """README, "Audit trail": the audit is fed from the topics, not by the request path, so
    traffic from the producers (here the core's producer and the requests topic's codec, with
    no gateway involved) is audited too, with the workers' answers."""
    kafka = gateway_stack.settings.kafka
    single_id, batch_id = f"direct-s-{uuid.uuid4().hex[:8]}", f"direct-b-{uuid.uuid4().hex[:8]}"
    since = time.time()
    single = PredictionRequest(request_id=single_id, features=VIRGINICA, reply_to="producer-e2e")
    batch = BatchPredictionRequest(
        request_id=batch_id, instances=[SETOSA, VERSICOLOR], reply_to="producer-e2e"
    )

    async def produce() -> None:
        topics = Topics.of(kafka)
        producer = make_producer(kafka)
        await producer.start()
        try:
            for message in (single, batch):
                await send(producer, topics.requests.record(message))
        finally:
            await producer.stop()

    asyncio.run(produce())
    record = eventually(lambda: _answered(gateway_stack, single_id))
    assert record is not None, "a request produced straight to Kafka never reached the audit"
    assert (record["kind"], record["label"], record["features"]) == (
        "single",
        "virginica",
        VIRGINICA,
    )
    assert record["reply_to"] == "producer-e2e"
    assert record["model_version"] is not None
    batch_record = eventually(lambda: _answered(gateway_stack, batch_id))
    assert batch_record is not None
    assert [p["label"] for p in batch_record["predictions"]] == ["setosa", "versicolor"]
    page = _get(gateway_stack, "/v1/audit", params={"since": since, "limit": 1000}).json()
    assert {single_id, batch_id} <= {r["request_id"] for r in page["records"]}


def test_models_list_the_versions_read_from_kafka(gateway_stack: Stack) -> None:
    body = _get(gateway_stack, "/v1/models").json()
    assert body["live_version"] is not None
    assert "kafka" in body["versions"][0]["sources"]
    detail = _get(gateway_stack, "/v1/models/1")
    assert detail.status_code == 200
    assert detail.json()["class_labels"] == ["setosa", "versicolor", "virginica"]
    _error(_get(gateway_stack, "/v1/models/999"), 404, "not_found")


def test_admin_endpoints_need_the_api_key(gateway_stack: Stack) -> None:
    for path in ("/v1/retrain", "/v1/models/1/promote"):
        _error(_post(gateway_stack, path), 401, "unauthorized")
        _error(_post(gateway_stack, path, headers={"X-API-Key": "guess"}), 403, "forbidden")


def test_retrain_publishes_a_retrain_request(gateway_stack: Stack) -> None:
    response = _post(gateway_stack, "/v1/retrain", {"reason": "e2e says so"}, headers=ADMIN)
    assert response.status_code == 202, response.text
    kafka = gateway_stack.settings.kafka
    values = [v.decode() for v in _records_on(kafka, kafka.topics.retrain_requests)]
    assert any('"reason":"e2e says so"' in v and '"requested_by":"gateway"' in v for v in values)


def test_promote_republishes_an_older_version_and_it_goes_live(gateway_stack: Stack) -> None:
    gateway_stack.publish(2, kind="naive_bayes")

    def live() -> int | None:
        version: int | None = _get(gateway_stack, "/v1/models").json()["live_version"]
        return version

    assert eventually(lambda: live() == 2)
    _error(_post(gateway_stack, "/v1/models/42/promote", headers=ADMIN), 404, "not_found")
    response = _post(gateway_stack, "/v1/models/1/promote", headers=ADMIN)
    assert response.status_code == 202, response.text
    assert response.json()["source"] == "kafka"
    assert eventually(lambda: live() == 1)

    def served_by_v1() -> bool:
        answer = _post(gateway_stack, "/v1/predict", {"features": SETOSA})
        return answer.is_success and answer.json()["model_version"] == 1

    assert eventually(served_by_v1)


def test_metrics_expose_latency_by_route_round_trips_and_publishes(gateway_stack: Stack) -> None:
    rid = f"metrics-{uuid.uuid4().hex[:8]}"
    audited = _metric(gateway_stack, "irisflow_gateway_audit_records_total", 'stream="predictions"')
    for _ in range(2):
        assert _post(
            gateway_stack, "/v1/predict", {"features": SETOSA, "request_id": rid}
        ).is_success
    text = _get(gateway_stack, "/metrics").text
    assert (
        'irisflow_http_request_duration_seconds_count{method="POST",route="/v1/predict",status="200"}'
        in text
    )
    assert 'irisflow_gateway_kafka_round_trip_seconds_count{kind="single"}' in text
    assert _metric(gateway_stack, "irisflow_gateway_kafka_up") == 1.0
    assert _metric(gateway_stack, "irisflow_gateway_published_total", 'kind="request"') >= 1
    assert _metric(gateway_stack, "irisflow_gateway_replayed_answers_total", 'source="memory"') >= 1
    assert eventually(lambda: _answered(gateway_stack, rid))
    assert eventually(
        lambda: (
            _metric(gateway_stack, "irisflow_gateway_audit_records_total", 'stream="predictions"')
            > audited
        )
    )
    assert "irisflow_http_requests_in_flight" in text
    assert "irisflow_gateway_timeouts_total" in text
