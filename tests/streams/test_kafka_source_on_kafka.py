"""KafkaPlanSource on the real broker: partitions wait, paused, for ``prepare_assigned`` (a
ledger restoring them), and a preparation longer than the session timeout keeps the member
in its group, since it runs outside the rebalance callback while heartbeats go on."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import structlog
from test_job_on_kafka import publish

from rebalance_stream.operators.flow import InputRecord
from rebalance_stream.streams.kafka_clients import make_consumer
from rebalance_stream.streams.kafka_source import KafkaPlanSource
from rebalance_stream.streams.pipeline import utc_now
from rebalance_stream.streams.settings import Settings
from rebalance_stream.streams.source_options import SourceOptions

pytestmark = pytest.mark.kafka

RECORDS = 10
PARTITIONS = 2
SESSION_TIMEOUT_MS = 6000
PREPARE_S = 9.0  # longer than the session timeout
WAIT_S = 60.0
POLL_S = 0.1


def test_assigned_partitions_stay_paused_until_prepared_and_the_member_stays(
    kafka_broker: str, topic_factory: Any
) -> None:
    topic = topic_factory("in", partitions=PARTITIONS)
    publish(kafka_broker, topic, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(RECORDS)])
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker,
        group_id=f"group-{uuid.uuid4().hex[:8]}",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        topic_input=topic,
    )
    prepared: list[tuple[list[int], float]] = []
    received: list[tuple[InputRecord, float]] = []

    def prepare(partitions: list[Any]) -> None:
        time.sleep(PREPARE_S)
        prepared.append((sorted(tp.partition for tp in partitions), time.monotonic()))

    source = KafkaPlanSource(
        lambda: make_consumer(settings),
        topic,
        utc_now,
        SourceOptions(prepare_assigned=prepare),
    )
    done = threading.Event()
    subscription = source.records().subscribe(
        on_next=lambda record: received.append((record, time.monotonic())),
        on_completed=done.set,
    )
    deadline = time.monotonic() + WAIT_S
    while len(received) < RECORDS and time.monotonic() < deadline:
        time.sleep(POLL_S)
    for record, _ in received:
        source.acknowledge(record.position)
    source.stop()
    assert done.wait(WAIT_S)
    subscription.dispose()

    assert [partitions for partitions, _ in prepared] == [list(range(PARTITIONS))]
    assert sorted(r.value for r, _ in received) == sorted(f"v{i}".encode() for i in range(RECORDS))
    assert min(at for _, at in received) >= prepared[0][1]
    assert source.revocations == 0
    assert sum(source.committed.values()) == RECORDS


def test_the_source_learns_its_topic_before_joining_and_gets_every_partition(
    kafka_broker: str, topic_factory: Any
) -> None:
    """A leader whose metadata lacks the topic would assign nothing, for minutes; and the
    early read must not cost a rebalance."""
    topic = topic_factory("fresh", partitions=3)
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker,
        group_id=f"group-{uuid.uuid4().hex[:8]}",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        topic_input=topic,
    )
    assigned = threading.Event()
    done = threading.Event()
    source = KafkaPlanSource(
        lambda: make_consumer(settings),
        topic,
        utc_now,
        SourceOptions(on_assignment=lambda has: assigned.set() if has else None),
    )

    with structlog.testing.capture_logs() as logs:
        subscription = source.records().subscribe(on_completed=done.set)
        got_partitions = assigned.wait(WAIT_S)
        source.stop()
        assert done.wait(WAIT_S)
    subscription.dispose()

    events = [line["event"] for line in logs]
    [found] = [line for line in logs if line["event"] == "input_topic_found"]
    [first_assignment] = [
        line for line in logs if line["event"] == "partitions_assigned" and line["partitions"]
    ]
    assert got_partitions
    assert source.revocations == 0
    assert found["partitions"] == 3
    assert events.index("input_topic_found") < events.index("partitions_assigned")
    assert first_assignment["partitions"] == [
        f"TopicPartition(topic='{topic}', partition={p})" for p in range(3)
    ]
