"""A stack started before any model exists: real broker, `irisflow worker`, `irisflow gateway`.

README, "One answer per request": with no model live yet a prediction is answered 503
``no_model`` (the worker says so, the gateway relays it), never a timeout; readiness is false
while no model is live; and the error does not stick to the request id: once a version is
published, the same id is scored.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack, eventually, launch_stack, stop_all
from tests.factories import SETOSA

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


@pytest.fixture
def modelless(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Stack]:
    """A worker and a gateway on fresh topics where no model version was ever published."""
    stack = launch_stack(tmp_path, kafka_bootstrap, version=None)
    try:
        yield stack
    finally:
        stop_all(stack)


def test_with_no_model_live_predict_is_a_503_no_model_until_one_is_published(
    modelless: Stack,
) -> None:
    url = modelless.gateway_url
    rid = f"early-{uuid.uuid4().hex[:8]}"
    body = {"features": SETOSA, "request_id": rid}

    response = httpx.post(f"{url}/v1/predict", json=body, timeout=30)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (503, "no_model")

    ready = httpx.get(f"{url}/health/ready", timeout=10)
    assert ready.status_code == 503
    assert (ready.json()["ready"], ready.json()["kafka"]) == (False, True)
    labeled = httpx.post(f"{url}/v1/feedback", json={"request_id": rid, "label": "setosa"})
    assert (labeled.status_code, labeled.json()["error"]["code"]) == (503, "no_model")

    modelless.publish(1)
    assert eventually(lambda: httpx.get(f"{url}/health/ready", timeout=10).status_code == 200)

    def scored() -> dict[str, Any] | None:
        again = httpx.post(f"{url}/v1/predict", json=body, timeout=30)
        assert again.status_code in (200, 503), again.text  # 503 until the worker has v1 too
        return again.json() if again.status_code == 200 else None

    answer = eventually(scored)
    assert answer is not None, "the no_model answer stuck to the request id"
    assert (answer["request_id"], answer["label"], answer["model_version"]) == (rid, "setosa", 1)
