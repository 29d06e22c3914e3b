"""The files that configure the local broker of ``local_kafka``: server.properties and JAAS.

The broker always has a PLAINTEXT listener. With SASL users it also has a SASL_PLAINTEXT listener
that accepts PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; the PLAIN users are in a JAAS file (a
``KafkaServer`` section with ``user_<name>="<password>"`` entries) that the JVM reads through
``-Djava.security.auth.login.config``, and the SCRAM credentials are written into the metadata
log when the storage is formatted. Test-only: the passwords are in these files in clear text.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path

HOST = "127.0.0.1"
SASL_LISTENER = "SASL_PLAINTEXT"
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
JAAS_FILE = "kafka_server_jaas.conf"
JAAS_OPTION = "-Djava.security.auth.login.config"
# Quoted in JAAS and inside --add-scram's "[name=...,password=...]": keep to characters that
# need no escaping in either.
_CREDENTIAL = re.compile(r"[A-Za-z0-9._~+-]+")
_CREDENTIAL_RULE = "may only have letters, digits and ._~+-"
_SECRET_FILE_MODE = 0o600


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports on 127.0.0.1 that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def random_cluster_id() -> str:
    """A cluster id as Kafka wants it: a uuid4's 16 bytes in base64url without padding.

    Like Kafka's Uuid.randomUuid(), skip ids that begin with "-" (a CLI takes them for options).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def broker_properties(
    data_dir: Path, port: int, controller_port: int, sasl_port: int | None = None
) -> dict[str, str]:
    """server.properties for one node that is both broker and controller, on 127.0.0.1 only.

    With ``sasl_port``, a SASL_PLAINTEXT listener too; brokers and controller keep talking
    PLAINTEXT among themselves.
    """
    listeners = [f"PLAINTEXT://{HOST}:{port}", f"CONTROLLER://{HOST}:{controller_port}"]
    advertised = [f"PLAINTEXT://{HOST}:{port}"]
    protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
    if sasl_port is not None:
        listeners.append(f"{SASL_LISTENER}://{HOST}:{sasl_port}")
        advertised.append(f"{SASL_LISTENER}://{HOST}:{sasl_port}")
        protocols.append(f"{SASL_LISTENER}:{SASL_LISTENER}")
    properties = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": ",".join(listeners),
        "advertised.listeners": ",".join(advertised),
        "listener.security.protocol.map": ",".join(protocols),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir / "logs"),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }
    if sasl_port is not None:
        properties["sasl.enabled.mechanisms"] = ",".join(SASL_MECHANISMS)
    return properties


def check_sasl_users(users: Mapping[str, str]) -> None:
    """Raise ValueError unless there is a user and every name and password is plain text
    (letters, digits, ``._~+-``). The message never contains a password."""
    if not users:
        raise ValueError("sasl_users needs at least one user")
    for name, password in users.items():
        if not _CREDENTIAL.fullmatch(name):
            raise ValueError(f"SASL user name {name!r} {_CREDENTIAL_RULE}")
        if not _CREDENTIAL.fullmatch(password):
            raise ValueError(
                f"the password of SASL user {name!r} may only have letters, digits and ._~+-"
            )


def jaas_config(users: Mapping[str, str]) -> str:
    """A JAAS file with the broker's ``KafkaServer`` section: PLAIN's users, and SCRAM's module
    (whose credentials live in the metadata log, see ``scram_format_arguments``)."""
    entries = "".join(f'\n    user_{name}="{password}"' for name, password in users.items())
    return (
        "KafkaServer {\n"
        f"  org.apache.kafka.common.security.plain.PlainLoginModule required{entries};\n"
        "  org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
        "};\n"
    )


def scram_format_arguments(users: Mapping[str, str]) -> list[str]:
    """``kafka-storage format`` arguments that create every user for both SCRAM mechanisms."""
    arguments = []
    for name, password in users.items():
        for mechanism in SCRAM_MECHANISMS:
            arguments += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
    return arguments


def write_properties(path: Path, properties: Mapping[str, str]) -> Path:
    """Write ``key=value`` lines to path; return path."""
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
    return path


def write_jaas(data_dir: Path, users: Mapping[str, str]) -> Path:
    """Write the JAAS file into data_dir, readable by its owner only; return its path."""
    path = data_dir / JAAS_FILE
    path.touch(mode=_SECRET_FILE_MODE)
    path.chmod(_SECRET_FILE_MODE)
    path.write_text(jaas_config(users))
    return path
