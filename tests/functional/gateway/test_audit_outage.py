"""The audit database down: its readers answer 503 (a condition that passes), not 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

UNREACHABLE_DATABASE = "postgresql+psycopg://irisflow:s3cret@127.0.0.1:1/audit"


@pytest.mark.parametrize(
    "path", ["/v1/predictions/some-id", "/v1/audit", "/v1/stats?window_seconds=60"]
)
def test_audit_readers_answer_503_naming_the_database_without_its_password(
    client: TestClient, path: str
) -> None:
    audit = client.app.state.audit  # type: ignore[attr-defined]
    audit.engine = create_engine(UNREACHABLE_DATABASE)
    audit.url = create_engine(UNREACHABLE_DATABASE).url.render_as_string(hide_password=True)

    response = client.get(path)

    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "audit_unavailable"
    assert "127.0.0.1:1/audit" in error["message"]
    assert "s3cret" not in response.text
