"""The error handlers as HTTP: every failure leaves the app as the one error body, with its headers.

README, "Errors": every error has the body ``{"error": {"status", "code", "message",
"fields"}}``; a missing API key is a 401 that says which scheme to use; an unknown route or method
keeps the headers HTTP gives it (``Allow`` on a 405); a body that does not validate names each
field by its path; and nothing reaches the client as a bare 500 or a stack trace. A minimal app
with only :func:`gateway.errors.install_error_handlers` installed is driven here, so each handler
is seen without the rest of the gateway.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from gateway.bodies import FieldError
from gateway.errors import (
    MOST_FIELDS,
    FeatureMismatch,
    Forbidden,
    PredictionNotFound,
    RequestIdConflict,
    TooManyInstances,
    Unauthorized,
    capped,
    install_error_handlers,
    status_of,
)
from irisflow.errors import IrisflowError, PredictionFailed


class _Body(BaseModel):
    name: str
    sizes: list[int] = Field(default_factory=list)


def _app() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    raised: dict[str, Exception] = {
        "unauthorized": Unauthorized("an API key is needed: send X-API-Key"),
        "forbidden": Forbidden("the API key does not match"),
        "conflict": RequestIdConflict("r-42"),
        "not-found": PredictionNotFound("r-43"),
        "too-many": TooManyInstances(1200, 1000),
        "mismatch": FeatureMismatch(
            [
                FieldError(field="features.x", message="unknown feature"),
                FieldError(field="features.y", message="unknown feature"),
            ]
        ),
    }

    @app.get("/raise/{what}")
    async def raise_(what: str) -> None:
        raise raised[what]

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, detail="short and stout", headers={"X-Brew": "earl-grey"})

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug with a secret in it")

    @app.get("/page")
    async def page(limit: int = Query(ge=1)) -> int:
        return limit

    @app.get("/unplaced")
    async def unplaced() -> None:
        raise RequestValidationError([{"type": "value_error", "msg": "the whole request"}])

    @app.post("/items")
    async def items(body: _Body) -> str:
        return body.name

    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client() -> TestClient:
    return _app()


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert list(body) == ["error"]
    return body["error"]  # type: ignore[no-any-return]


def test_a_401_names_the_api_key_scheme_and_other_refusals_do_not(client: TestClient) -> None:
    unauthorized = client.get("/raise/unauthorized")
    _error(unauthorized, 401)
    assert unauthorized.headers["WWW-Authenticate"] == "ApiKey"
    forbidden = client.get("/raise/forbidden")
    assert _error(forbidden, 403)["code"] == "forbidden"
    assert "WWW-Authenticate" not in forbidden.headers
    assert "WWW-Authenticate" not in client.get("/raise/conflict").headers


def test_an_error_body_leaves_out_what_does_not_apply(client: TestClient) -> None:
    """No ``"limit": null`` and the like: only a 413 carries its limit."""
    conflict = _error(client.get("/raise/conflict"), 409)
    assert set(conflict) == {"status", "code", "message", "fields"}
    too_many = _error(client.get("/raise/too-many"), 413)
    assert too_many["limit"] == 1000
    assert too_many["fields"] == [{"field": "instances", "message": "at most 1000 instances"}]


def test_an_error_message_names_the_id_or_limit_and_says_what_to_do(client: TestClient) -> None:
    conflict = _error(client.get("/raise/conflict"), 409)["message"]
    assert "'r-42'" in conflict
    assert conflict.endswith("; use a new id for new input")
    assert "'r-43'" in _error(client.get("/raise/not-found"), 404)["message"]
    too_many = _error(client.get("/raise/too-many"), 413)["message"]
    assert "1200" in too_many
    assert "1000" in too_many
    assert too_many.endswith(": split the batch")


def test_features_that_do_not_fit_are_each_named_in_the_fields_and_the_message(
    client: TestClient,
) -> None:
    error = _error(client.get("/raise/mismatch"), 422)
    assert error["code"] == "invalid_request"
    assert error["fields"] == [
        {"field": "features.x", "message": "unknown feature"},
        {"field": "features.y", "message": "unknown feature"},
    ]
    assert error["message"] == "features.x: unknown feature; features.y: unknown feature"


def test_a_feature_mismatch_says_every_field_in_its_own_text() -> None:
    """Its text is what logs and non-HTTP callers see."""
    mismatch = FeatureMismatch(
        [FieldError(field="a", message="unknown"), FieldError(field="b", message="missing")]
    )
    assert str(mismatch) == "a: unknown; b: missing"


def test_an_http_error_keeps_its_status_detail_and_headers(client: TestClient) -> None:
    response = client.get("/teapot")
    error = _error(response, 418)
    assert (error["code"], error["message"]) == ("http_error", "short and stout")
    assert response.headers["X-Brew"] == "earl-grey"


def test_a_method_not_allowed_keeps_the_allow_header(client: TestClient) -> None:
    response = client.delete("/teapot")
    assert _error(response, 405)["code"] == "method_not_allowed"
    assert response.headers["Allow"] == "GET"


def test_an_unexpected_exception_is_a_plain_500_body_and_a_logged_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing of the exception reaches the client; the log has it, with the route."""
    with caplog.at_level(logging.ERROR, logger="gateway.errors"):
        response = client.get("/boom")
    error = _error(response, 500)
    assert error == {
        "status": 500,
        "code": "internal",
        "message": "internal error; the gateway log has the details",
        "fields": [],
    }
    assert "secret" not in response.text
    logged = [r for r in caplog.records if r.name == "gateway.errors"]
    assert [r.getMessage() for r in logged] == ["unexpected error serving GET /boom"]
    assert logged[0].exc_info is not None


def test_a_body_that_does_not_validate_names_each_field_by_its_path(client: TestClient) -> None:
    error = _error(client.post("/items", json={"sizes": [1, "big"]}), 422)
    assert error["code"] == "invalid_request"
    fields = {f["field"]: f["message"] for f in error["fields"]}
    assert set(fields) == {"name", "sizes.1"}
    assert fields["name"] == "Field required"
    assert error["message"] == "; ".join(f"{f['field']}: {f['message']}" for f in error["fields"])


def test_a_missing_body_is_named_body(client: TestClient) -> None:
    error = _error(client.post("/items"), 422)
    assert [f["field"] for f in error["fields"]] == ["body"]


def test_a_validation_error_without_a_location_is_put_on_the_body(client: TestClient) -> None:
    error = _error(client.get("/unplaced"), 422)
    assert error["fields"] == [{"field": "body", "message": "the whole request"}]


def test_a_bad_query_parameter_keeps_its_location(client: TestClient) -> None:
    """Only body fields and path parameters are named by themselves; a query parameter is
    ``query.<name>`` so it cannot be mistaken for a body field of the same name."""
    error = _error(client.get("/page", params={"limit": "0"}), 422)
    assert [f["field"] for f in error["fields"]] == ["query.limit"]


def test_a_body_with_more_problems_than_listed_counts_the_rest_in_fields_and_message(
    client: TestClient,
) -> None:
    bad = MOST_FIELDS + 5
    error = _error(client.post("/items", json={"name": "n", "sizes": ["x"] * bad}), 422)
    assert len(error["fields"]) == MOST_FIELDS + 1
    assert error["fields"][-1] == {"field": "body", "message": "and 5 more"}
    assert error["message"].endswith("; body: and 5 more")


def test_capping_a_short_list_adds_no_count() -> None:
    fields = [FieldError(field=f"f{i}", message="bad") for i in range(3)]
    assert capped(list(fields)) == fields


def test_an_error_outside_the_table_is_a_500_internal() -> None:
    assert status_of(IrisflowError("something new")) == (500, "internal")


def test_a_workers_error_code_the_gateway_does_not_know_is_relayed_as_a_422() -> None:
    """A newer worker may send a code this gateway predates: it is the request that failed."""
    assert status_of(PredictionFailed("new", code="brand_new_code")) == (422, "brand_new_code")
