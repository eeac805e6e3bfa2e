"""A refusal reaches the caller as the gateway said it: status, code, message, named fields.

The HTTP exchange is scripted with ``httpx.MockTransport`` (the transport layer, not irisflow):
each test says what the server answered and checks what the client raises or returns.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from producers.client import GatewayError, GatewayUnreachable, InferenceClient, IrisflowClient
from producers.errors import FieldProblem

Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler) -> IrisflowClient:
    return IrisflowClient(
        http=httpx.Client(base_url="http://gw", transport=httpx.MockTransport(handler))
    )


def test_a_v1_error_body_becomes_a_gateway_error_with_its_fields() -> None:
    body = {
        "error": {
            "status": 422,
            "code": "invalid_request",
            "message": "features.petal_width: Field required",
            "fields": [{"field": "features.petal_width", "message": "Field required"}],
        }
    }
    client = _client(lambda request: httpx.Response(422, json=body))
    with pytest.raises(GatewayError) as raised:
        client.predict({"sepal_length": 5.1})
    error = raised.value
    assert (error.status, error.code) == (422, "invalid_request")
    assert error.fields == (FieldProblem("features.petal_width", "Field required"),)
    assert str(error) == "HTTP 422 invalid_request: features.petal_width: Field required"


def test_a_413_keeps_the_limit_the_gateway_states() -> None:
    body = {"error": {"status": 413, "code": "too_many_instances", "message": "split", "limit": 5}}
    client = _client(lambda request: httpx.Response(413, json=body))
    with pytest.raises(GatewayError) as raised:
        client.predict_batch([{"a": 1.0}] * 6)
    assert (raised.value.code, raised.value.limit) == ("too_many_instances", 5)


def test_a_protocol_error_body_keeps_its_message() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(400, json={"error": "input 'x': shape holds 8 values"})
    )
    client = InferenceClient(
        model="iris", http=httpx.Client(base_url="http://gw", transport=transport)
    )
    with pytest.raises(GatewayError, match=r"^HTTP 400: input 'x': shape holds 8 values$"):
        client.infer([[1.0, 2.0]])


def test_a_body_that_is_not_an_error_body_is_quoted_in_the_message() -> None:
    client = _client(lambda request: httpx.Response(502, text="<html>Bad Gateway</html>"))
    with pytest.raises(GatewayError, match=r"HTTP 502: <html>Bad Gateway</html>") as raised:
        client.models()
    assert raised.value.code is None


def test_no_answer_at_all_says_what_to_check() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(
        GatewayUnreachable, match=r"no answer from http://gw.*irisflow up"
    ) as raised:
        _client(refuse).models()
    assert raised.value.status == 0


@pytest.mark.parametrize(("status", "ready"), [(200, True), (400, False)])
def test_protocol_health_is_the_status_code(status: int, ready: bool) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status))
    client = InferenceClient(
        model="iris", http=httpx.Client(base_url="http://gw", transport=transport)
    )
    assert client.ready() is ready
    assert client.model_ready() is ready


def test_protocol_health_that_is_neither_true_nor_false_raises() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(404, json={"error": "no model"}))
    client = InferenceClient(
        model="x", http=httpx.Client(base_url="http://gw", transport=transport)
    )
    with pytest.raises(GatewayError, match="no model"):
        client.model_ready()
