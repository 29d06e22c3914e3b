"""The whole job on the real local Apache Kafka: exact records per topic, committed offsets."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # type: ignore[import-untyped]
from plan_factory import Trade, planned
from support import paper_account

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.ledger.protocol import Ledger
from rebalance_stream.operators.flow import Disposition, InputRecord
from rebalance_stream.streams.kafka_clients import make_producer, make_transactional_producer
from rebalance_stream.streams.runner import EXIT_OK, ORDER_THREADS, JobHooks, PlanConsumerJob
from rebalance_stream.streams.settings import Settings

pytestmark = pytest.mark.kafka

PLANS = 50
ACCOUNTS = 10
JOB_TIMEOUT_S = 120


def settings_for(kafka_broker: str, topic_factory: Any) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka_broker,
        group_id=f"group-{uuid.uuid4().hex[:8]}",
        session_timeout_ms=6000,
        topic_input=topic_factory("in", partitions=3),
        topic_trade_executed=topic_factory("te"),
        topic_workflow_completed=topic_factory("wc"),
        topic_workflow_failed=topic_factory("wf"),
        topic_dead_letter=topic_factory("dlq"),
        max_plan_age_s=0,
    )


def publish(kafka_broker: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks="all")
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def read_all(kafka_broker: str, topic: str, expected: int) -> list[Any]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        consumer_timeout_ms=3000,
    )
    records = list(consumer)
    consumer.close()
    assert len(records) == expected, topic
    return records


def order_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(ORDER_THREADS)]


def wait_order_threads_ended(timeout_s: float) -> list[str]:
    """The job's order threads still alive after ``timeout_s``; [] once they ended."""
    deadline = time.monotonic() + timeout_s
    while order_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    return order_threads()


def run_job_until(
    settings: Settings,
    broker: PaperBroker,
    inputs: int,
    ledger: Ledger | None = None,
    at_last: Callable[[], object] = lambda: None,
) -> tuple[int, list[Disposition], PlanConsumerJob]:
    """Run the job on a thread until ``inputs`` inputs were decided: dispositions published,
    or duplicates that the source settled (then call ``at_last``), then stop it."""
    seen: list[Disposition] = []
    settled: list[InputRecord] = []
    holder: dict[str, PlanConsumerJob] = {}
    lock = threading.Lock()

    def decided(disposition: Disposition | None, records: Sequence[InputRecord] = ()) -> None:
        with lock:
            if disposition is not None:
                seen.append(disposition)
            settled.extend(records)
            done = len(seen) + len(settled) == inputs
        if done:
            at_last()
            holder["job"].stop()

    hooks = JobHooks(decided, on_settled=lambda records: decided(None, records))
    job = PlanConsumerJob(settings, broker, ledger or InMemoryLedger(), hooks)
    holder["job"] = job
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", job.run()), daemon=True)
    thread.start()
    thread.join(JOB_TIMEOUT_S)
    assert not thread.is_alive(), "the job did not stop"
    return result["code"], seen, job


def test_job_on_kafka_fifty_plans_ten_accounts_exact_outputs_and_commits(
    kafka_broker: str, topic_factory: Any
) -> None:
    settings = settings_for(kafka_broker, topic_factory)
    plans = [
        planned(f"plan-{i}", [Trade("VTI", "BUY", "100.00", 1)], account_id=f"acct-{i % ACCOUNTS}")
        for i in range(PLANS)
    ]
    duplicate = {**plans[0], "event_id": "evt-plan-0-again"}
    invalid = planned("plan-bad", [Trade("VTI", "BUY", "-5.00", 1)], account_id="acct-0")
    mis_keyed = planned("plan-mis", [Trade("VTI", "BUY", "100.00", 1)], account_id="acct-1")
    messages = [(p["rebalance_plan"]["account_id"].encode(), json.dumps(p).encode()) for p in plans]
    messages += [
        (b"acct-0", json.dumps(duplicate).encode()),
        (b"acct-0", b"{not json"),
        (b"acct-0", json.dumps(invalid).encode()),
        (b"acct-9", json.dumps(mis_keyed).encode()),
    ]
    publish(kafka_broker, settings.topic_input, messages)
    broker = PaperBroker(paper_account(cash="100000.00"))
    broker.start()

    while_running: list[str] = []

    def note_order_threads() -> None:
        while_running.extend(order_threads())

    code, dispositions, job = run_job_until(
        settings, broker, len(messages), at_last=note_order_threads
    )

    assert code == EXIT_OK
    assert len(dispositions) == len(messages)
    assert sum(1 for d in dispositions if d.mis_keyed) == 1
    metric = job.metrics.registry.get_sample_value
    assert metric("rebalance_stream_inputs_mis_keyed_total") == 1
    assert metric("rebalance_stream_inputs_consumed_total") == len(messages)
    assert job.readiness.snapshot() == {
        "partitions_assigned": False,
        "broker_reachable": True,
        "reconciled": True,
    }
    assert job.counts.snapshot() == {
        "consumed": len(messages),
        "deduplicated": 1,
        "mis_keyed": 1,
        "dead_lettered": 2,
        "workflow_completed": PLANS + 1,
        "workflow_failed": 1,
    }
    traded = read_all(kafka_broker, settings.topic_trade_executed, PLANS + 1)
    completed = read_all(kafka_broker, settings.topic_workflow_completed, PLANS + 1)
    failed = read_all(kafka_broker, settings.topic_workflow_failed, 1)
    dead = read_all(kafka_broker, settings.topic_dead_letter, 2)
    for record in [*traded, *completed, *failed]:
        body = json.loads(record.value)
        assert record.key == body["correlation_id"].encode()
        headers = dict(record.headers)
        assert headers["event_id"] == body["event_id"].encode()
        assert headers["causation_id"] == body["causation_id"].encode()
        assert headers["event_type"] == body["event_type"].encode()
    causations = Counter(json.loads(r.value)["causation_id"] for r in completed)
    assert causations == Counter([f"evt-plan-{i}" for i in range(PLANS)] + ["evt-plan-mis"])
    assert json.loads(failed[0].value)["error_details"]["reason_code"] == "SCHEMA_INVALID"
    assert sorted(r.value for r in dead) == sorted([b"{not json", json.dumps(invalid).encode()])
    dead_headers = {r.value: dict(r.headers) for r in dead}
    assert_dead_letter_headers(
        dead_headers[b"{not json"], "MALFORMED_JSON", "decode", settings.topic_input
    )
    assert_dead_letter_headers(
        dead_headers[json.dumps(invalid).encode()],
        "SCHEMA_INVALID",
        "validation",
        settings.topic_input,
    )
    assert len(broker.list_orders("rs1-")) == PLANS + 1
    assert committed_offsets(kafka_broker, settings) == end_offsets(kafka_broker, settings)
    # The job's order threads ran its plans, and ended with it.
    assert while_running
    assert wait_order_threads_ended(JOB_TIMEOUT_S) == []
    broker.close()


def assert_dead_letter_headers(
    headers: dict[str, bytes], reason_code: str, step: str, input_topic: str
) -> None:
    assert headers["dlq.error.reason_code"] == reason_code.encode()
    assert headers["dlq.failure_step"] == step.encode()
    assert headers["dlq.source.topic"] == input_topic.encode()
    assert int(headers["dlq.source.partition"]) in range(3)
    assert int(headers["dlq.source.offset"]) >= 0
    assert headers["dlq.error.type"]
    assert headers["dlq.error.message"]


def committed_offsets(kafka_broker: str, settings: Settings) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker, group_id=settings.group_id)
    partitions = [TopicPartition(settings.topic_input, p) for p in range(3)]
    offsets = {tp.partition: consumer.committed(tp) or 0 for tp in partitions}
    consumer.close()
    return offsets


def end_offsets(kafka_broker: str, settings: Settings) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker)
    partitions = [TopicPartition(settings.topic_input, p) for p in range(3)]
    ends = consumer.end_offsets(partitions)
    consumer.close()
    return {tp.partition: offset for tp, offset in ends.items()}


def test_output_producers_take_their_linger_from_the_settings(
    kafka_broker: str, topic_factory: Any
) -> None:
    settings = settings_for(kafka_broker, topic_factory)
    tuned = settings.model_copy(
        update={"producer_linger_ms": 7, "transactional_id": settings.group_id + ".linger"}
    )
    producers = [make_producer(settings), make_producer(tuned), make_transactional_producer(tuned)]

    lingers = [producer.config["linger_ms"] for producer in producers]
    for producer in producers:
        producer.close()

    assert lingers == [0, 7, 7]
