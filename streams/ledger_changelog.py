"""The Kafka side of the KafkaLedger: its changelog topic, writer and reader (kafka-python).

    REBALANCE_STREAM_LEDGER=kafka
    REBALANCE_STREAM_TOPIC_LEDGER_CHANGELOG=rebalance-stream.ledger-changelog

The changelog topic is compacted and has as many partitions as the input topic: a plan is
stored in the partition its input came from, and restored by whoever owns that partition.
``open_kafka_ledger`` creates the topic when it is missing and refuses one whose partition
count differs from the input's.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import structlog
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from kafka.errors import TopicAlreadyExistsError  # type: ignore[import-untyped]

from rebalance_stream.ledger.changelog import ChangelogRecord
from rebalance_stream.ledger.kafka_ledger import KafkaLedger
from rebalance_stream.ledger.sqlite_schema import LedgerError
from rebalance_stream.streams.kafka_clients import make_producer
from rebalance_stream.streams.kafka_security import client_config
from rebalance_stream.streams.settings import Settings

log = structlog.get_logger(__name__)

KAFKA_LEDGER = "kafka"
COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
POLL_TIMEOUT_MS = 200
READ_TIMEOUT_MS = 30_000
KEPT_FAILURES = 10
METADATA_WAIT_S = 10.0
METADATA_POLL_S = 0.1


class KafkaChangelogWriter:
    """Sends records keyed by entity to an explicit partition; ``wait`` and ``flush`` raise
    LedgerError when a record they cover was not written."""

    def __init__(self, producer: Any, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._lock = threading.Lock()
        self._failures: list[BaseException] = []  # since the last flush; the first few only

    def send(self, partition: int, record: ChangelogRecord) -> object:
        future = self._producer.send(
            self._topic, key=record.key, value=record.value, partition=partition
        )
        future.add_errback(self._failed)
        return future

    def wait(self, tokens: Sequence[object]) -> None:
        """Send what is buffered now and wait for it; raise if any of ``tokens`` failed."""
        self._producer.flush()
        futures: list[Any] = list(tokens)
        _raise_if_lost([future.exception for future in futures if future.failed()])

    def flush(self) -> None:
        """Wait for everything sent; raise if any record failed since the last flush."""
        self._producer.flush()
        with self._lock:
            failures, self._failures = self._failures, []
        _raise_if_lost(failures)

    def close(self) -> None:
        self._producer.close()

    def _failed(self, error: BaseException) -> None:
        with self._lock:
            if len(self._failures) < KEPT_FAILURES:
                self._failures.append(error)


def _raise_if_lost(errors: Sequence[BaseException]) -> None:
    if errors:
        raise LedgerError(f"ledger changelog records not written: {errors[0]!r}")


class KafkaChangelogReader:
    """Reads a changelog partition from its beginning to its end offset as of the call."""

    def __init__(self, consumer: Any, topic: str) -> None:
        self._consumer = consumer
        self._topic = topic

    def read(self, partition: int) -> Iterator[ChangelogRecord]:
        tp = TopicPartition(self._topic, partition)
        consumer = self._consumer
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        while consumer.position(tp) < end:
            for records in consumer.poll(timeout_ms=POLL_TIMEOUT_MS).values():
                for record in records:
                    if record.offset < end:
                        yield ChangelogRecord(bytes(record.key), record.value)
        consumer.assign([])

    def close(self) -> None:
        self._consumer.close()


def open_kafka_ledger(settings: Settings) -> KafkaLedger:
    """A KafkaLedger on ``settings.topic_ledger_changelog``, created compacted if missing."""
    ensure_changelog_topic(settings)
    consumer = KafkaConsumer(
        **client_config(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=READ_TIMEOUT_MS,
    )
    topic = settings.topic_ledger_changelog
    return KafkaLedger(
        KafkaChangelogWriter(make_producer(settings), topic),
        KafkaChangelogReader(consumer, topic),
    )


def ensure_changelog_topic(settings: Settings) -> int:
    """Create the changelog with the input's partition count, or check an existing one has it.

    Returns the partition count; raises LedgerError when the counts differ (a plan would then
    be restored by an instance that does not own its input partition).
    """
    admin = KafkaAdminClient(**client_config(settings))
    try:
        wanted = _partition_count(admin, settings.topic_input)
        topic = settings.topic_ledger_changelog
        if topic not in set(admin.list_topics()):
            # The broker's default replication factor: 1 on the local broker, more on a cluster.
            spec = {topic: {"num_partitions": wanted, "configs": COMPACTED}}
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(spec, wait_for_metadata=True)
            log.info("ledger_changelog_created", topic=topic, partitions=wanted)
        found = _partition_count(admin, topic)
    finally:
        admin.close()
    if found != wanted:
        raise LedgerError(
            f"ledger changelog {topic} has {found} partitions, the input "
            f"{settings.topic_input} has {wanted}: they must match"
        )
    return found


def _partition_count(admin: Any, topic: str) -> int:
    """The topic's partition count, once every partition has a leader (a topic just created
    may not yet: reading it then would wait for a whole request timeout)."""
    deadline = time.monotonic() + METADATA_WAIT_S
    while True:
        described = admin.describe_topics([topic])
        partitions = described[0].get("partitions") if described else None
        if partitions and all(p.get("leader_id", -1) >= 0 for p in partitions):
            return len(partitions)
        if time.monotonic() >= deadline:
            raise LedgerError(f"topic {topic} does not exist or has a partition without leader")
        time.sleep(METADATA_POLL_S)
