"""The local KRaft broker serves idempotent and transactional producers and committed offsets."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from uuid import uuid4

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from rebalance_stream.streams.local_kafka import LocalKafka, LocalKafkaError, fetch_jars

pytestmark = pytest.mark.kafka

POLL_TIMEOUT_S = 30.0


def poll_records(consumer: KafkaConsumer, count: int) -> dict[int, list[bytes]]:
    """Poll until ``count`` records arrived; their values by partition, in offset order."""
    values: dict[int, list[bytes]] = {}
    received = 0
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while received < count and time.monotonic() < deadline:
        for partition, records in consumer.poll(timeout_ms=500).items():
            values.setdefault(partition.partition, []).extend(r.value for r in records)
            received += len(records)
    return values


def read_partition(bootstrap: str, topic: str, isolation_level: str, count: int) -> list[bytes]:
    """Partition 0 from the beginning, without a group, as ``isolation_level`` shows it."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation_level,
        enable_auto_commit=False,
    )
    with closing(consumer):
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        return poll_records(consumer, count).get(0, [])


def test_local_kafka_idempotent_records_consumed_and_committed(
    kafka_broker: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("produce", partitions=3)
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks="all", enable_idempotence=True)
    with closing(producer):
        for partition in range(3):
            producer.send(topic, value=f"v{partition}".encode(), partition=partition).get(10)
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker,
        group_id=uuid4().hex,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )

    with closing(consumer):
        values = poll_records(consumer, 3)
        consumer.commit()
        committed = [consumer.committed(TopicPartition(topic, p)) for p in range(3)]

    assert values == {0: [b"v0"], 1: [b"v1"], 2: [b"v2"]}
    assert committed == [1, 1, 1]


def test_local_kafka_aborted_transaction_hidden_from_read_committed(
    kafka_broker: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("txn")
    producer = KafkaProducer(bootstrap_servers=kafka_broker, transactional_id=f"tx-{uuid4().hex}")
    with closing(producer):
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(topic, value=b"aborted", partition=0)
        producer.flush()
        producer.abort_transaction()
        producer.begin_transaction()
        producer.send(topic, value=b"committed", partition=0)
        producer.commit_transaction()

    uncommitted = read_partition(kafka_broker, topic, "read_uncommitted", 2)
    committed = read_partition(kafka_broker, topic, "read_committed", 1)

    assert uncommitted == [b"aborted", b"committed"]
    assert committed == [b"committed"]


def test_local_kafka_stop_process_gone(tmp_path: Path) -> None:
    broker = LocalKafka(tmp_path, jars=fetch_jars())
    broker.start()
    pid = int(broker.pid_file.read_text())

    broker.stop()

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not broker.pid_file.exists()


def test_local_kafka_start_broker_exits_error_has_log_tail(tmp_path: Path) -> None:
    # Empty jars, and storage that looks formatted: the JVM starts, finds no kafka.Kafka, exits.
    (tmp_path / "data" / "logs").mkdir(parents=True)
    (tmp_path / "data" / "logs" / "meta.properties").write_text("")
    (tmp_path / "jars").mkdir()
    broker = LocalKafka(tmp_path / "data", jars=tmp_path / "jars")

    with pytest.raises(LocalKafkaError, match="exited with 1") as raised:
        broker.start(timeout_s=30)

    assert "kafka.Kafka" in str(raised.value)
    assert not broker.pid_file.exists()
