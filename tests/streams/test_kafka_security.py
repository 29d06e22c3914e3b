"""client_config: Kafka security settings to kafka-python's arguments (SPEC 4), no broker needed.

Every error is a KafkaSecurityError that names the settings, and no secret ever appears in a
repr, an error message or kafka-python's log lines.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from rebalance_stream.streams.kafka_clients import create_topics
from rebalance_stream.streams.kafka_security import (
    REDACTED,
    SASL_MECHANISMS,
    KafkaSecurityError,
    client_config,
    redact_in_kafka_logs,
)
from rebalance_stream.streams.settings import Settings, load_settings

SASL_SECRET = "sasl-pw-7f3a9c"
SSL_SECRET = "key-pw-51e0d2"
SECRETS = (SASL_SECRET, SSL_SECRET)
BOOTSTRAP = "broker-1:9093,broker-2:9093"


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, Path]:
    """Stand-ins for the CA, client certificate and key files (client_config only checks that
    they exist; kafka-python reads them when it connects)."""
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    return files


def settings(**fields: Any) -> Settings:
    return Settings(kafka_bootstrap_servers=BOOTSTRAP, **fields)


def sasl(protocol: str = "SASL_PLAINTEXT", mechanism: str = "PLAIN", **fields: Any) -> Settings:
    return settings(
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="svc-rebalance",
        kafka_sasl_password=SASL_SECRET,
        **fields,
    )


def config_error(configured: Settings) -> str:
    """client_config's error message; asserts it is a KafkaSecurityError and keeps secrets out."""
    with pytest.raises(KafkaSecurityError) as caught:
        client_config(configured)
    message = str(caught.value)
    for secret in SECRETS:
        assert secret not in message
        assert secret not in repr(caught.value)
    return message


def test_plaintext_by_default_has_no_security_arguments() -> None:
    assert client_config(settings()) == {
        "bootstrap_servers": ["broker-1:9093", "broker-2:9093"],
        "security_protocol": "PLAINTEXT",
    }


@pytest.mark.parametrize("mechanism", SASL_MECHANISMS)
def test_sasl_plaintext_maps_mechanism_username_and_password(mechanism: str) -> None:
    config = client_config(sasl(mechanism=mechanism))

    assert config == {
        "bootstrap_servers": ["broker-1:9093", "broker-2:9093"],
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "svc-rebalance",
        "sasl_plain_password": SASL_SECRET,
    }


@pytest.mark.parametrize("mechanism", SASL_MECHANISMS)
def test_sasl_ssl_adds_the_ca_file(mechanism: str, pem_files: dict[str, Path]) -> None:
    config = client_config(sasl("SASL_SSL", mechanism, kafka_ssl_cafile=pem_files["ca"]))

    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == mechanism
    assert config["sasl_plain_password"] == SASL_SECRET
    assert config["ssl_cafile"] == str(pem_files["ca"])


def test_protocol_and_mechanism_are_case_insensitive() -> None:
    config = client_config(sasl(" sasl_ssl ", "scram-sha-512"))

    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert "ssl_cafile" not in config  # the system's trusted CAs


def test_ssl_with_client_certificate_key_and_key_password(pem_files: dict[str, Path]) -> None:
    config = client_config(
        settings(
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=pem_files["ca"],
            kafka_ssl_certfile=pem_files["cert"],
            kafka_ssl_keyfile=pem_files["key"],
            kafka_ssl_password=SSL_SECRET,
        )
    )

    assert config == {
        "bootstrap_servers": ["broker-1:9093", "broker-2:9093"],
        "security_protocol": "SSL",
        "ssl_cafile": str(pem_files["ca"]),
        "ssl_certfile": str(pem_files["cert"]),
        "ssl_keyfile": str(pem_files["key"]),
        "ssl_password": SSL_SECRET,
    }


def test_ssl_without_files_uses_the_system_trust_store() -> None:
    config = client_config(settings(kafka_security_protocol="SSL"))

    assert config == {
        "bootstrap_servers": ["broker-1:9093", "broker-2:9093"],
        "security_protocol": "SSL",
    }


def test_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, pem_files: dict[str, Path]
) -> None:
    environment = {
        "REBALANCE_STREAM_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "REBALANCE_STREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "REBALANCE_STREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "REBALANCE_STREAM_KAFKA_SASL_USERNAME": "svc-rebalance",
        "REBALANCE_STREAM_KAFKA_SASL_PASSWORD": SASL_SECRET,
        "REBALANCE_STREAM_KAFKA_SSL_CAFILE": str(pem_files["ca"]),
        "REBALANCE_STREAM_KAFKA_SSL_CERTFILE": str(pem_files["cert"]),
        "REBALANCE_STREAM_KAFKA_SSL_KEYFILE": str(pem_files["key"]),
        "REBALANCE_STREAM_KAFKA_SSL_PASSWORD": SSL_SECRET,
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    loaded = load_settings()
    config = client_config(loaded)

    assert config["sasl_mechanism"] == "SCRAM-SHA-256"
    assert config["sasl_plain_password"] == SASL_SECRET
    assert config["ssl_password"] == SSL_SECRET
    assert config["ssl_keyfile"] == str(pem_files["key"])
    for text in (repr(loaded), str(loaded), loaded.model_dump_json()):
        assert SASL_SECRET not in text
        assert SSL_SECRET not in text


def test_repr_of_settings_hides_both_passwords(pem_files: dict[str, Path]) -> None:
    configured = sasl(
        "SASL_SSL",
        kafka_ssl_certfile=pem_files["cert"],
        kafka_ssl_password=SSL_SECRET,
    )

    assert SASL_SECRET not in repr(configured)
    assert SSL_SECRET not in repr(configured)
    assert "**********" in repr(configured)


def test_unknown_protocol_is_named() -> None:
    message = config_error(settings(kafka_security_protocol="SASL_TLS"))

    assert "REBALANCE_STREAM_KAFKA_SECURITY_PROTOCOL" in message
    assert "'SASL_TLS'" in message


def test_unknown_mechanism_is_named() -> None:
    message = config_error(sasl(mechanism="GSSAPI"))

    assert "REBALANCE_STREAM_KAFKA_SASL_MECHANISM" in message
    assert "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512" in message


@pytest.mark.parametrize(
    ("missing", "variable"),
    [
        ("kafka_sasl_mechanism", "REBALANCE_STREAM_KAFKA_SASL_MECHANISM"),
        ("kafka_sasl_username", "REBALANCE_STREAM_KAFKA_SASL_USERNAME"),
        ("kafka_sasl_password", "REBALANCE_STREAM_KAFKA_SASL_PASSWORD"),
    ],
)
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_protocol_without_a_credential_names_it(
    missing: str, variable: str, protocol: str
) -> None:
    fields = {
        "kafka_security_protocol": protocol,
        "kafka_sasl_mechanism": "PLAIN",
        "kafka_sasl_username": "svc-rebalance",
        "kafka_sasl_password": SASL_SECRET,
    }
    del fields[missing]

    message = config_error(settings(**fields))

    assert variable in message
    assert protocol in message


def test_blank_password_counts_as_missing() -> None:
    message = config_error(
        settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="svc-rebalance",
            kafka_sasl_password="  ",
        )
    )

    assert message.endswith("needs REBALANCE_STREAM_KAFKA_SASL_PASSWORD")


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_sasl_credentials_without_a_sasl_protocol_are_an_error(protocol: str) -> None:
    configured = settings(
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="svc-rebalance",
        kafka_sasl_password=SASL_SECRET,
    )

    message = config_error(configured)

    assert "REBALANCE_STREAM_KAFKA_SASL_PASSWORD" in message
    assert "SASL_PLAINTEXT or SASL_SSL" in message


def test_a_lone_password_with_plaintext_is_an_error_and_stays_secret() -> None:
    message = config_error(settings(kafka_sasl_password=SASL_SECRET))

    assert message.startswith("REBALANCE_STREAM_KAFKA_SASL_PASSWORD set")


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_ssl_files_without_tls_are_an_error(protocol: str, pem_files: dict[str, Path]) -> None:
    extra: dict[str, Any] = {"kafka_ssl_cafile": pem_files["ca"]}
    configured = (
        sasl(protocol, **extra)
        if protocol.startswith("SASL")
        else settings(kafka_security_protocol=protocol, **extra)
    )

    message = config_error(configured)

    assert "REBALANCE_STREAM_KAFKA_SSL_CAFILE" in message
    assert "SSL or SASL_SSL" in message


def test_ssl_key_password_without_tls_is_an_error_and_stays_secret() -> None:
    message = config_error(settings(kafka_ssl_password=SSL_SECRET))

    assert "REBALANCE_STREAM_KAFKA_SSL_PASSWORD" in message


def test_key_and_key_password_need_a_client_certificate(pem_files: dict[str, Path]) -> None:
    message = config_error(
        settings(
            kafka_security_protocol="SSL",
            kafka_ssl_keyfile=pem_files["key"],
            kafka_ssl_password=SSL_SECRET,
        )
    )

    assert "REBALANCE_STREAM_KAFKA_SSL_KEYFILE" in message
    assert "REBALANCE_STREAM_KAFKA_SSL_PASSWORD" in message
    assert "REBALANCE_STREAM_KAFKA_SSL_CERTFILE" in message


@pytest.mark.parametrize(
    ("field", "variable"),
    [
        ("kafka_ssl_cafile", "REBALANCE_STREAM_KAFKA_SSL_CAFILE"),
        ("kafka_ssl_certfile", "REBALANCE_STREAM_KAFKA_SSL_CERTFILE"),
    ],
)
def test_a_missing_file_is_named(field: str, variable: str, tmp_path: Path) -> None:
    absent = tmp_path / "absent.pem"

    message = config_error(settings(kafka_security_protocol="SSL", **{field: absent}))

    assert message == f"{variable} names no file: {absent}"


def test_clients_refuse_a_bad_combination_before_connecting() -> None:
    with pytest.raises(KafkaSecurityError):
        create_topics(settings(kafka_security_protocol="SASL_SSL"))


def test_security_error_is_a_value_error() -> None:
    assert issubclass(KafkaSecurityError, ValueError)


def test_sasl_password_is_redacted_from_kafka_python_request_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client_config(sasl())  # registers the password
    token = b"svc-rebalance\x00svc-rebalance\x00" + SASL_SECRET.encode()

    with caplog.at_level(logging.DEBUG):
        logging.getLogger("kafka.net.connection").debug("Request 3: auth_bytes=%s", token)
        logging.getLogger("kafka.protocol.parser").debug("Sending %r", SASL_SECRET)

    assert len(caplog.records) == 2
    assert SASL_SECRET not in caplog.text
    assert caplog.text.count(REDACTED) == 2
    assert "svc-rebalance" in caplog.text


def test_redaction_covers_the_escaped_forms_of_a_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "p\u00e4ss'w\u00f6rd"
    redact_in_kafka_logs(secret)

    with caplog.at_level(logging.DEBUG):
        connection = logging.getLogger("kafka.net.connection")
        connection.debug("bytes %s", secret.encode())
        connection.debug("text %r", secret)
        connection.debug("token %s", b'"\x00' + secret.encode())  # repr escapes the '

    assert caplog.messages == [
        f'bytes b"{REDACTED}"',
        f'text "{REDACTED}"',
        f"token b'\"\\x00{REDACTED}'",
    ]
