"""Kafka client security from Settings: PLAINTEXT, SSL (mutual TLS too), SASL/PLAIN and SCRAM.

    client_config(settings) -> {"bootstrap_servers", "security_protocol", "sasl_*", "ssl_*"}

Settings that do not fit together raise KafkaSecurityError naming the environment variables,
never a secret's value. Every secret handed to kafka-python is registered with a log filter on
the ``kafka.*`` loggers, so its request logs cannot carry it.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import SecretStr

from rebalance_stream.streams.settings import Settings

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
_ENV = "REBALANCE_STREAM_"
REDACTED = "**********"
# kafka-python 3.0 logs every request at DEBUG, SASL/PLAIN's token (with the password) included.
_KAFKA_REQUEST_LOGGERS = ("kafka.net.connection", "kafka.protocol.parser")


class KafkaSecurityError(ValueError):
    """The Kafka security settings do not fit together.

    The message names the settings (as environment variables) and never a secret's value.
    """


class SecretRedactingFilter(logging.Filter):
    """Replaces registered secrets in a log record's message, as written and as Python would
    print them inside bytes or a str (``b'user\\x00user\\x00secret'``)."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()  # replaced whole, never mutated: thread-safe reads

    def register(self, secret: str) -> None:
        # repr quotes with ' unless the text has ' and no "; with both, it escapes the '.
        both = "'\""
        encoded = secret.encode()
        forms = {
            secret,
            repr(secret)[1:-1],
            repr(secret + both)[1:-4],
            repr(encoded)[2:-1],
            repr(encoded + both.encode())[2:-4],
        } - {""}
        self._secrets = tuple(sorted({*self._secrets, *forms}, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = redacted = record.getMessage()
            for secret in self._secrets:
                redacted = redacted.replace(secret, REDACTED)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


SECRET_FILTER = SecretRedactingFilter()


def redact_in_kafka_logs(secret: str) -> None:
    """Keep ``secret`` out of kafka-python's log lines: SECRET_FILTER on each ``kafka.*`` logger
    (a logger's filters see only its own records, not its children's)."""
    SECRET_FILTER.register(secret)
    names = {name for name in logging.root.manager.loggerDict if name.startswith("kafka.")}
    for name in sorted(names | {"kafka", *_KAFKA_REQUEST_LOGGERS}):
        logger = logging.getLogger(name)
        if SECRET_FILTER not in logger.filters:
            logger.addFilter(SECRET_FILTER)


def client_config(settings: Settings) -> dict[str, Any]:
    """Bootstrap servers and security, shared by every client (kafka-python's names).

    ``REBALANCE_STREAM_KAFKA_SECURITY_PROTOCOL`` is PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    A SASL protocol needs a mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), a username and a
    password; SSL settings need a TLS protocol. Raises KafkaSecurityError when they disagree,
    rather than connect with credentials or certificates silently left unused.
    """
    if not settings.kafka_bootstrap_servers:
        raise ValueError("REBALANCE_STREAM_KAFKA_BOOTSTRAP_SERVERS is not set")
    protocol = settings.kafka_security_protocol.strip().upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise KafkaSecurityError(
            f"{_ENV}KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}, "
            f"not {settings.kafka_security_protocol!r}"
        )
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "security_protocol": protocol,
    }
    config.update(_sasl_config(settings, protocol))
    config.update(_ssl_config(settings, protocol))
    return config


def _sasl_config(settings: Settings, protocol: str) -> dict[str, Any]:
    given: dict[str, object] = {
        "KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
        "KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
        "KAFKA_SASL_PASSWORD": settings.kafka_sasl_password,
    }
    if protocol not in _SASL_PROTOCOLS:
        _reject_unused(given, protocol, "SASL_PLAINTEXT or SASL_SSL")
        return {}
    password = settings.kafka_sasl_password
    missing = [name for name, value in given.items() if not _is_set(value)]
    if missing or password is None:
        names = ", ".join(_ENV + name for name in missing)
        raise KafkaSecurityError(f"security protocol {protocol} needs {names}")
    mechanism = str(settings.kafka_sasl_mechanism).strip().upper()
    if mechanism not in SASL_MECHANISMS:
        raise KafkaSecurityError(
            f"{_ENV}KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}, "
            f"not {settings.kafka_sasl_mechanism!r}"
        )
    redact_in_kafka_logs(password.get_secret_value())
    return {
        "sasl_mechanism": mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": password.get_secret_value(),
    }


def _ssl_config(settings: Settings, protocol: str) -> dict[str, Any]:
    files = {
        "KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
        "KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile,
        "KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile,
    }
    given: dict[str, object] = {**files, "KAFKA_SSL_PASSWORD": settings.kafka_ssl_password}
    if protocol not in _TLS_PROTOCOLS:
        _reject_unused(given, protocol, "SSL or SASL_SSL")
        return {}
    if settings.kafka_ssl_certfile is None:
        key_settings = ("KAFKA_SSL_KEYFILE", "KAFKA_SSL_PASSWORD")
        needless = [name for name in key_settings if _is_set(given[name])]
        if needless:
            names = ", ".join(_ENV + name for name in needless)
            raise KafkaSecurityError(f"{names} need {_ENV}KAFKA_SSL_CERTFILE (the client cert)")
    for name, path in files.items():
        if path is not None and not path.is_file():
            raise KafkaSecurityError(f"{_ENV}{name} names no file: {path}")
    config: dict[str, Any] = {}
    if settings.kafka_ssl_cafile is not None:  # else the system's trusted CAs
        config["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    if settings.kafka_ssl_certfile is not None:
        config["ssl_certfile"] = str(settings.kafka_ssl_certfile)
    if settings.kafka_ssl_keyfile is not None:
        config["ssl_keyfile"] = str(settings.kafka_ssl_keyfile)
    if settings.kafka_ssl_password is not None:
        redact_in_kafka_logs(settings.kafka_ssl_password.get_secret_value())
        config["ssl_password"] = settings.kafka_ssl_password.get_secret_value()
    return config


def _is_set(value: object) -> bool:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value is not None and (not isinstance(value, str) or bool(value.strip()))


def _reject_unused(given: dict[str, object], protocol: str, needs: str) -> None:
    """Settings that the protocol would ignore are a mistake: say so instead of ignoring them."""
    unused = [_ENV + name for name, value in given.items() if _is_set(value)]
    if unused:
        raise KafkaSecurityError(
            f"{', '.join(unused)} set, but security protocol {protocol} does not use them; "
            f"set {_ENV}KAFKA_SECURITY_PROTOCOL to {needs}"
        )
