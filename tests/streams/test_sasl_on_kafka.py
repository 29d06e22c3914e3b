"""Kafka SASL on a real broker: a second local Kafka with a SASL_PLAINTEXT listener whose PLAIN
users come from a JAAS file (and SCRAM users from the formatted metadata log).

Round trips through client_config for each mechanism, a wrong password refused by the broker,
and the whole job over SASL with every log line of the run captured: no secret in any of them.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest
import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # type: ignore[import-untyped]
from kafka.errors import KafkaError  # type: ignore[import-untyped]
from plan_factory import Trade, planned
from support import paper_account

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.operators.flow import Disposition
from rebalance_stream.streams.kafka_security import REDACTED, SASL_MECHANISMS, client_config
from rebalance_stream.streams.local_kafka import LocalKafka, fetch_jars
from rebalance_stream.streams.logs import configure_logging
from rebalance_stream.streams.runner import EXIT_OK, JobHooks, PlanConsumerJob
from rebalance_stream.streams.settings import Settings, load_settings

pytestmark = pytest.mark.kafka

USER = "rebalance"
PASSWORD = "sasl-secret-4b7e1f"
WRONG_PASSWORD = "not-the-password-93c2"
ALPACA_KEY_ID = "PKCANARY7Q2M4X9Z1B3D"
ALPACA_SECRET = "alpaca-canary-secret-6d0f8a2e"
PLANS = 3
POLL_TIMEOUT_S = 30.0
JOB_TIMEOUT_S = 120.0
FAILED_AUTH = "Failed authentication"


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of this module's own, with a SASL_PLAINTEXT listener beside PLAINTEXT."""
    broker = LocalKafka(
        tmp_path_factory.mktemp("kafka-sasl"),
        jars=fetch_jars(),
        sasl_users={USER: PASSWORD, "someone-else": "other-secret"},
    )
    try:
        broker.start()  # stops the broker itself when it fails to start
        yield broker
    finally:
        broker.stop()


def sasl_settings(
    broker: LocalKafka, mechanism: str = "PLAIN", password: str = PASSWORD, **fields: Any
) -> Settings:
    return Settings(
        kafka_bootstrap_servers=broker.sasl_bootstrap_servers,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username=USER,
        kafka_sasl_password=password,
        **fields,
    )


def new_topic(broker: LocalKafka, prefix: str, partitions: int = 1) -> str:
    """Created over the PLAINTEXT listener, as an operator's tooling would."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    broker.create_topics([name], partitions)
    return name


def read_values(settings: Settings, topic: str, count: int) -> list[bytes]:
    consumer = KafkaConsumer(
        **client_config(settings), isolation_level="read_committed", enable_auto_commit=False
    )
    values: list[bytes] = []
    with closing(consumer):
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while len(values) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(record.value for record in records)
    return values


@pytest.mark.parametrize("mechanism", SASL_MECHANISMS)
def test_sasl_round_trip_through_client_config(sasl_kafka: LocalKafka, mechanism: str) -> None:
    settings = sasl_settings(sasl_kafka, mechanism)
    topic = new_topic(sasl_kafka, f"sasl-{mechanism.lower()}")
    value = f"over {mechanism}".encode()

    producer = KafkaProducer(**client_config(settings), acks="all", enable_idempotence=True)
    with closing(producer):
        producer.send(topic, key=b"k", value=value).get(timeout=POLL_TIMEOUT_S)

    assert read_values(settings, topic, 1) == [value]


def test_wrong_password_is_refused_by_the_broker(sasl_kafka: LocalKafka) -> None:
    """kafka-python 3.0.12 drops the SaslAuthenticate error that arrives together with the
    broker's close, so the client reports only that it could not bootstrap; the broker's log
    has the authentication failure."""
    settings = sasl_settings(sasl_kafka, password=WRONG_PASSWORD)
    log_start = sasl_kafka.log_file.stat().st_size

    with pytest.raises(KafkaError) as caught:
        KafkaConsumer(**client_config(settings), bootstrap_timeout_ms=3000).close()

    assert WRONG_PASSWORD not in str(caught.value)
    assert PASSWORD not in str(caught.value)
    broker_log = sasl_kafka.log_file.read_bytes()[log_start:].decode(errors="replace")
    failures = [line for line in broker_log.splitlines() if FAILED_AUTH in line]
    assert failures
    assert all("Invalid username or password" in line for line in failures)
    assert WRONG_PASSWORD not in broker_log


def test_plaintext_client_cannot_use_the_sasl_listener(sasl_kafka: LocalKafka) -> None:
    with pytest.raises(KafkaError):
        KafkaConsumer(
            bootstrap_servers=sasl_kafka.sasl_bootstrap_servers, bootstrap_timeout_ms=3000
        ).close()


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line of the test, as production would render it: structlog's JSON and the
    standard library's records (kafka-python's) at DEBUG, the most revealing level."""
    out = io.StringIO()
    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_level = root.level
    handler = logging.StreamHandler(out)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    configure_logging(log_format="json", level="debug", stream=out)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        structlog.configure(**saved_structlog)


def run_job_until(settings: Settings, broker: PaperBroker, inputs: int) -> list[Disposition]:
    """Run the job on a thread until ``inputs`` dispositions were published, then stop it."""
    seen: list[Disposition] = []
    holder: dict[str, PlanConsumerJob] = {}

    def on_disposition(disposition: Disposition) -> None:
        seen.append(disposition)
        if len(seen) == inputs:
            holder["job"].stop()

    job = PlanConsumerJob(settings, broker, InMemoryLedger(), JobHooks(on_disposition))
    holder["job"] = job
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", job.run()), daemon=True)
    thread.start()
    thread.join(JOB_TIMEOUT_S)
    if thread.is_alive():
        job.stop()
        thread.join(JOB_TIMEOUT_S)
    assert not thread.is_alive(), "the job did not stop"
    assert result["code"] == EXIT_OK
    return seen


def test_job_processes_plans_over_sasl_and_logs_no_secret(
    sasl_kafka: LocalKafka, captured_logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = {
        "REBALANCE_STREAM_KAFKA_BOOTSTRAP_SERVERS": sasl_kafka.sasl_bootstrap_servers,
        "REBALANCE_STREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "REBALANCE_STREAM_KAFKA_SASL_MECHANISM": "PLAIN",
        "REBALANCE_STREAM_KAFKA_SASL_USERNAME": USER,
        "REBALANCE_STREAM_KAFKA_SASL_PASSWORD": PASSWORD,
        "APCA_API_KEY_ID": ALPACA_KEY_ID,
        "APCA_API_SECRET_KEY": ALPACA_SECRET,
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(
        group_id=f"group-{uuid.uuid4().hex[:8]}",
        session_timeout_ms=6000,
        topic_input=new_topic(sasl_kafka, "in", partitions=3),
        topic_trade_executed=new_topic(sasl_kafka, "te"),
        topic_workflow_completed=new_topic(sasl_kafka, "wc"),
        topic_workflow_failed=new_topic(sasl_kafka, "wf"),
        topic_dead_letter=new_topic(sasl_kafka, "dlq"),
        max_plan_age_s=0,
        ledger=":memory:",
    )
    plans = [
        planned(f"plan-sasl-{i}", [Trade("VTI", "BUY", "100.00", 1)], account_id=f"acct-{i}")
        for i in range(PLANS)
    ]
    producer = KafkaProducer(**client_config(settings), acks="all")
    with closing(producer):
        for plan in plans:
            key = plan["rebalance_plan"]["account_id"].encode()
            producer.send(settings.topic_input, key=key, value=json.dumps(plan).encode())
        producer.flush()
    broker = PaperBroker(paper_account(cash="100000.00"))
    broker.start()
    try:
        dispositions = run_job_until(settings, broker, PLANS)
    finally:
        broker.close()

    assert len(dispositions) == PLANS
    completed = read_values(settings, settings.topic_workflow_completed, PLANS)
    plan_ids = sorted(json.loads(value)["summary"]["plan_id"] for value in completed)
    assert plan_ids == [f"plan-sasl-{i}" for i in range(PLANS)]
    assert read_values(settings, settings.topic_dead_letter, 0) == []
    logs = captured_logs.getvalue()
    assert '"event": "job_stopped"' in logs  # structlog's lines were captured
    assert "SaslAuthenticateRequest" in logs  # and kafka-python's DEBUG requests too
    assert REDACTED in logs
    for secret in (PASSWORD, ALPACA_SECRET, ALPACA_KEY_ID):
        assert secret not in logs
