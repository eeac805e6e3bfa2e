"""The admin key check: no configured key never opens up; a wrong key is refused."""

from __future__ import annotations

import pytest

from gateway.errors import AdminDisabled, Forbidden, Unauthorized
from gateway.security import check_api_key


@pytest.mark.parametrize("given", [None, "", "anything"])
def test_without_a_configured_key_everyone_is_refused(given: str | None) -> None:
    with pytest.raises(AdminDisabled, match="IRISFLOW_API_KEY"):
        check_api_key(None, given)
    with pytest.raises(AdminDisabled):
        check_api_key("", given)


def test_a_missing_key_is_unauthorized() -> None:
    with pytest.raises(Unauthorized):
        check_api_key("s3cret", None)


@pytest.mark.parametrize("given", ["s3cre", "s3cret ", "S3CRET", "s3cret\x00"])
def test_a_wrong_key_is_forbidden(given: str) -> None:
    with pytest.raises(Forbidden) as caught:
        check_api_key("s3cret", given)
    assert not isinstance(caught.value, AdminDisabled)


def test_the_right_key_passes() -> None:
    check_api_key("s3cret", "s3cret")
