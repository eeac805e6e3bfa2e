"""Batches as matrices: the plain body's parse, the /v1 answer's bytes, the batch digest."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from gateway.answer_book import batch_digest, input_digest
from gateway.batches import BatchAnswer, parse_instances, v1_json
from gateway.bodies import BatchPredictionPublic, InstancePublic
from gateway.bridge import KafkaBridge
from irisflow.features import FeatureSchema
from irisflow.schemas import FeatureStats
from irisflow.settings import KafkaSettings
from tests.factories import SETOSA, VIRGINICA

NAMES = list(SETOSA)
SCHEMA = FeatureSchema(
    NAMES,
    {n: FeatureStats(mean=3.0, std=1.0, min=0.0, max=8.0) for n in NAMES},
    max_reference_std=100.0,
)


def _parse(body: object, limit: int = 10) -> object:
    return parse_instances(orjson.dumps(body), SCHEMA, limit=limit)


def test_a_plain_body_becomes_a_matrix_in_the_models_column_order() -> None:
    shuffled = dict(reversed(list(VIRGINICA.items())))
    batch = parse_instances(
        orjson.dumps({"instances": [SETOSA, shuffled], "request_id": "b-1"}), SCHEMA, limit=2
    )
    assert batch is not None
    assert batch.names == NAMES
    assert batch.matrix.dtype == np.float64
    assert batch.matrix.tolist() == [list(SETOSA.values()), list(VIRGINICA.values())]
    assert (batch.request_id, len(batch)) == ("b-1", 2)


def test_integers_are_numbers_too() -> None:
    batch = _parse({"instances": [dict.fromkeys(NAMES, 3)]})
    assert batch is not None
    assert batch.matrix.tolist() == [[3.0] * 4]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [SETOSA] * 11},
        {"instances": [SETOSA], "wait": False},
        {"instances": [{**SETOSA, "petal_width": False}]},
        {"instances": [{**SETOSA, "petal_width": 500.0}]},
        {"instances": [SETOSA], "request_id": "a/b"},
        {"instances": [SETOSA, {**SETOSA, "x": 1.0}]},
    ],
    ids=["over the limit", "another key", "a boolean", "out of domain", "bad id", "unknown name"],
)
def test_anything_but_a_plain_body_is_left_to_the_declared_route(body: object) -> None:
    assert _parse(body) is None


def test_the_v1_answer_is_what_the_declared_response_model_writes() -> None:
    answer = BatchAnswer(
        request_id="b-1",
        model_version=3,
        classes=["setosa", "virginica"],
        labels=["setosa", "virginica"],
        probabilities=[[0.75, 0.25], [0.125, 0.875]],
        latency_seconds=0.5,
        worker_seconds=0.25,
    )
    expected = BatchPredictionPublic(
        request_id="b-1",
        model_version=3,
        predictions=[
            InstancePublic(label="setosa", probabilities={"setosa": 0.75, "virginica": 0.25}),
            InstancePublic(label="virginica", probabilities={"setosa": 0.125, "virginica": 0.875}),
        ],
        latency_seconds=0.5,
        worker_seconds=0.25,
    )
    assert v1_json(answer) == expected.model_dump_json().encode()


def test_a_batch_digest_is_the_same_whichever_form_and_column_order_carried_it() -> None:
    rows = [SETOSA, VIRGINICA]
    matrix = np.array([list(r.values()) for r in rows])
    reversed_names = NAMES[::-1]
    assert batch_digest(NAMES, matrix) == batch_digest(reversed_names, matrix[:, ::-1])
    assert batch_digest(NAMES, matrix) == input_digest("batch", rows)
    assert batch_digest(NAMES, matrix) != batch_digest(NAMES, matrix[::-1])
    assert batch_digest(NAMES, matrix) != input_digest("single", rows)


async def test_the_gateways_producer_gathers_many_batch_requests_per_partition_and_request() -> (
    None
):
    """aiokafka sends one produce request per broker at a time, one batch per partition in it;
    at its default batch size (16 KB) every 60 KB matrix went alone, one per round trip, and
    50 calls/s of 1,000 rows timed out waiting to be published."""
    producer = KafkaBridge(KafkaSettings()).new_producer()
    try:
        assert producer._message_accumulator._batch_size >= 1024 * 1024
    finally:
        await producer.stop()
