"""The floors that kafka-python sets on this machine: bare loops, no Rx, no pydantic, no ledger.

* ``bare_pipeline``: consume, ``json.loads``, ``json.dumps`` of two output records, produce
  (acks=all, idempotent, as the job's producer), and commit once per poll batch, after that
  batch's records are acknowledged (the at-least-once order the job keeps too).
* ``bare_consume``: consume and ``json.loads`` only; the floor for a replay.
* ``TailReader`` and ``SteadyPublisher``: the parts of the broker's own round trip, which
  ``bench.latency_probe`` measures in a process of its own.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # type: ignore[import-untyped]
from kafka.structs import OffsetAndMetadata  # type: ignore[import-untyped]

from bench.common import MS_PER_S, SESSION_TIMEOUT_MS, rate
from rebalance_stream.streams.settings import DEFAULT_PRODUCER_LINGER_MS

POLL_TIMEOUT_MS = 200
READ_POLL_MS = 20
IDLE_LIMIT_S = 60.0


def bare_consumer(bootstrap: str, group_id: str | None, topic: str | None = None) -> Any:
    """The job's consumer settings (no auto-commit, earliest, read_committed)."""
    topics = [topic] if topic else []
    return KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=max(1000, SESSION_TIMEOUT_MS // 3),
        isolation_level="read_committed",
    )


def bare_producer(bootstrap: str, linger_ms: int = DEFAULT_PRODUCER_LINGER_MS) -> Any:
    """The job's producer settings: acks=all, idempotent."""
    return KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=linger_ms
    )


@dataclass(frozen=True, slots=True)
class Drained:
    """How long a loop took from its first record to its last commit."""

    records: int
    seconds: float
    cpu_s: float
    """This process's CPU time over the same span, every thread."""

    @property
    def per_s(self) -> float:
        return rate(self.records, self.seconds)

    @property
    def cpu_ms_per_record(self) -> float:
        return round(self.cpu_s * MS_PER_S / self.records, 3) if self.records else math.nan


def _outputs(document: dict[str, Any]) -> tuple[bytes, bytes]:
    """Two records about the size of the job's TradeExecuted and WorkflowCompleted."""
    plan = document["rebalance_plan"]
    trade = {
        "event_type": "TradeExecuted",
        "event_id": document["event_id"] + ":te",
        "correlation_id": document["correlation_id"],
        "causation_id": document["event_id"],
        "plan_id": plan["plan_id"],
        "account_id": plan["account_id"],
        "orders": [
            {**item, "status": "filled", "filled_qty": "0.2", "filled_avg_price": "500"}
            for item in plan["items"]
        ],
    }
    completed = {
        "event_type": "WorkflowCompleted",
        "event_id": document["event_id"] + ":wc",
        "correlation_id": document["correlation_id"],
        "causation_id": document["event_id"],
        "summary": {"orders_placed": len(plan["items"]), "orders_filled": len(plan["items"])},
    }
    return json.dumps(trade).encode(), json.dumps(completed).encode()


def _headers(document: dict[str, Any], event_type: bytes) -> list[tuple[str, bytes]]:
    return [
        ("event_type", event_type),
        ("correlation_id", document["correlation_id"].encode()),
        ("causation_id", document["event_id"].encode()),
    ]


def bare_pipeline(
    bootstrap: str, topic: str, outputs: tuple[str, str], expected: int, group_id: str
) -> Drained:
    """Consume ``expected`` plans and produce two records for each; commit per poll batch."""
    consumer = bare_consumer(bootstrap, group_id, topic)
    producer = bare_producer(bootstrap)
    trade_topic, completed_topic = outputs
    done = 0
    started: float | None = None
    cpu_started_s = 0.0
    idle_deadline = time.monotonic() + IDLE_LIMIT_S
    try:
        while done < expected:
            batch = consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
            if not batch:
                if time.monotonic() > idle_deadline:
                    raise TimeoutError(f"bare pipeline idle with {done}/{expected} records")
                continue
            if started is None:
                started, cpu_started_s = time.time(), time.process_time()
            offsets = {}
            for partition, records in batch.items():
                for record in records:
                    document = json.loads(record.value)
                    trade, completed = _outputs(document)
                    trade_headers = _headers(document, b"TradeExecuted")
                    completed_headers = _headers(document, b"WorkflowCompleted")
                    producer.send(trade_topic, key=record.key, value=trade, headers=trade_headers)
                    producer.send(
                        completed_topic, key=record.key, value=completed, headers=completed_headers
                    )
                offsets[partition] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
                done += len(records)
            producer.flush()
            consumer.commit(offsets=offsets)
            idle_deadline = time.monotonic() + IDLE_LIMIT_S
        cpu_s = time.process_time() - cpu_started_s
        return Drained(done, time.time() - (started or time.time()), cpu_s)
    finally:
        producer.close()
        consumer.close(autocommit=False)


def bare_consume(bootstrap: str, topic: str, expected: int, group_id: str) -> Drained:
    """Consume ``expected`` records and ``json.loads`` each; nothing else."""
    consumer = bare_consumer(bootstrap, group_id, topic)
    done = 0
    started: float | None = None
    cpu_started_s = 0.0
    idle_deadline = time.monotonic() + IDLE_LIMIT_S
    try:
        while done < expected:
            batch = consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
            if not batch:
                if time.monotonic() > idle_deadline:
                    raise TimeoutError(f"bare consume idle with {done}/{expected} records")
                continue
            if started is None:
                started, cpu_started_s = time.time(), time.process_time()
            for records in batch.values():
                for record in records:
                    json.loads(record.value)
                done += len(records)
            idle_deadline = time.monotonic() + IDLE_LIMIT_S
        cpu_s = time.process_time() - cpu_started_s
        return Drained(done, time.time() - (started or time.time()), cpu_s)
    finally:
        consumer.close(autocommit=False)


class TailReader:
    """A read_committed consumer at the end of one partition; records when each record shows."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = bare_consumer(bootstrap, None)
        partition = TopicPartition(topic, 0)
        self._consumer.assign([partition])
        self._consumer.seek_to_end(partition)
        self._consumer.position(partition)  # resolve the end now, before anything is sent

    def poll(self) -> list[tuple[Any, float]]:
        """The records that became visible, each with the wall time (time.time()) it showed."""
        batch = self._consumer.poll(timeout_ms=READ_POLL_MS)
        seen_s = time.time()
        return [(record, seen_s) for records in batch.values() for record in records]

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class SteadyPublisher:
    """Sends ``count`` records at ``per_s`` on a thread; remembers when each was sent."""

    def __init__(self, producer: Any, topic: str, records: list[tuple[bytes, bytes, str]]) -> None:
        self._producer = producer
        self._topic = topic
        self._records = records
        self.sent_s: dict[str, float] = {}
        self._thread: threading.Thread | None = None

    def start(self, per_s: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(per_s,), daemon=True)
        self._thread.start()

    def _run(self, per_s: float) -> None:
        begin = time.monotonic()
        for index, (key, value, name) in enumerate(self._records):
            delay_s = begin + index / per_s - time.monotonic()
            if delay_s > 0:
                time.sleep(delay_s)
            self.sent_s[name] = time.time()
            self._producer.send(self._topic, key=key, value=value)
        self._producer.flush()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
