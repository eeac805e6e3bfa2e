"""Security settings for an existing cluster: incomplete ones fail at start, naming the fix."""

from __future__ import annotations

import pytest

from irisflow.errors import ConfigError
from irisflow.kafka.clients import connection_options
from irisflow.settings import load_settings
from tests.conftest import ROOT


def _load(**env: str) -> object:
    return load_settings(
        ROOT / "params.yaml", environ={"IRISFLOW_KAFKA_BOOTSTRAP": "k:9093", **env}
    )


def test_sasl_without_a_password_is_refused_naming_the_variables() -> None:
    with pytest.raises(ConfigError, match="IRISFLOW_KAFKA_SASL_PASSWORD"):
        _load(IRISFLOW_KAFKA_SECURITY_PROTOCOL="SASL_SSL", IRISFLOW_KAFKA_SASL_USERNAME="u")


def test_a_client_certificate_without_its_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="IRISFLOW_KAFKA_SSL_KEYFILE"):
        _load(IRISFLOW_KAFKA_SECURITY_PROTOCOL="SSL", IRISFLOW_KAFKA_SSL_CERTFILE="/c.pem")


def test_every_client_gets_the_sasl_settings_from_the_environment() -> None:
    settings = load_settings(
        ROOT / "params.yaml",
        environ={
            "IRISFLOW_KAFKA_BOOTSTRAP": "k:9093",
            "IRISFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "IRISFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "IRISFLOW_KAFKA_SASL_USERNAME": "svc",
            "IRISFLOW_KAFKA_SASL_PASSWORD": "pw",
        },
    )
    options = connection_options(settings.kafka)
    assert options["bootstrap_servers"] == "k:9093"
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("svc", "pw")
    assert options["ssl_context"] is not None  # TLS with the system's CAs
    assert "pw" not in repr(settings.kafka)  # the password is a secret in logs and reprs


def test_plain_text_by_default_with_no_security_options() -> None:
    options = connection_options(load_settings(ROOT / "params.yaml", environ={}).kafka)
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
