"""exactly_once on the real local Kafka: records and offsets in one transaction, or neither."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer  # type: ignore[import-untyped]
from plan_factory import Trade, planned
from support import decided_disposition, paper_account
from test_job_delivery_on_kafka import ClaimCountingLedger
from test_job_on_kafka import (
    committed_offsets,
    end_offsets,
    publish,
    read_all,
    run_job_until,
    settings_for,
)

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.ledger.sqlite import SqliteLedger
from rebalance_stream.operators.flow import Disposition, SourcePosition
from rebalance_stream.sinks.transactional_sink import (
    TransactionalOutcomePublisher,
    TransactionHooks,
)
from rebalance_stream.streams.kafka_clients import make_transactional_producer
from rebalance_stream.streams.runner import EXIT_OK, output_topics
from rebalance_stream.streams.settings import Settings

pytestmark = pytest.mark.kafka

PLANS = 30
ACCOUNTS = 5


def exactly_once(kafka_broker: str, topic_factory: Any) -> Settings:
    return settings_for(kafka_broker, topic_factory).model_copy(
        update={
            "processing_guarantee": "exactly_once",
            "transactional_id": f"tx-{uuid.uuid4().hex[:8]}",
            "transaction_timeout_ms": 10_000,
        }
    )


def messages(count: int) -> list[tuple[bytes | None, bytes]]:
    plans = [
        planned(f"plan-{i}", [Trade("VTI", "BUY", "100.00", 1)], account_id=f"acct-{i % ACCOUNTS}")
        for i in range(count)
    ]
    return [(p["rebalance_plan"]["account_id"].encode(), json.dumps(p).encode()) for p in plans]


def test_job_exactly_once_each_outcome_once_and_offsets_committed_by_the_transactions(
    kafka_broker: str, topic_factory: Any
) -> None:
    settings = exactly_once(kafka_broker, topic_factory)
    publish(kafka_broker, settings.topic_input, messages(PLANS))
    broker = PaperBroker(paper_account(cash="100000.00"))
    broker.start()

    code, dispositions, _ = run_job_until(settings, broker, PLANS)

    assert code == EXIT_OK
    assert len(dispositions) == PLANS
    traded = read_all(kafka_broker, settings.topic_trade_executed, PLANS)
    completed = read_all(kafka_broker, settings.topic_workflow_completed, PLANS)
    causes = sorted(json.loads(r.value)["causation_id"] for r in [*traded, *completed])
    assert causes == sorted([f"evt-plan-{i}" for i in range(PLANS)] * 2)
    assert committed_offsets(kafka_broker, settings) == end_offsets(kafka_broker, settings)
    assert len(broker.list_orders("rs1-")) == PLANS
    broker.close()


def test_exactly_once_replay_of_published_inputs_publishes_nothing_and_commits_every_offset(
    kafka_broker: str, topic_factory: Any, tmp_path: Path
) -> None:
    """The replay settles each input before decoding it; its offsets still go into the
    transactions, and the outputs stay as the first run left them."""
    settings = exactly_once(kafka_broker, topic_factory)
    publish(kafka_broker, settings.topic_input, messages(PLANS))
    broker = PaperBroker(paper_account(cash="100000.00"))
    broker.start()
    first = SqliteLedger(tmp_path / "ledger.sqlite")
    first_code, _, _ = run_job_until(settings, broker, PLANS, first)
    first.close()

    replay = settings.model_copy(
        update={
            "group_id": settings.group_id + "-replay",
            "transactional_id": f"tx-{uuid.uuid4().hex[:8]}",
        }
    )
    reopened = ClaimCountingLedger(tmp_path / "ledger.sqlite")
    code, dispositions, job = run_job_until(replay, broker, PLANS, reopened)
    reopened.close()

    assert (first_code, code) == (EXIT_OK, EXIT_OK)
    assert reopened.claims == 0
    assert {d.skipped.reason_code for d in dispositions if d.skipped} == {"DUPLICATE_EVENT"}
    assert [d.outputs for d in dispositions] == [()] * PLANS
    assert job.counts.snapshot() == {"consumed": PLANS, "deduplicated": PLANS}
    read_all(kafka_broker, settings.topic_trade_executed, PLANS)
    read_all(kafka_broker, settings.topic_workflow_completed, PLANS)
    assert committed_offsets(kafka_broker, replay) == end_offsets(kafka_broker, replay)
    assert len(broker.list_orders("rs1-")) == PLANS
    broker.close()


def read_uncommitted(kafka_broker: str, topic: str) -> list[Any]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker,
        auto_offset_reset="earliest",
        isolation_level="read_uncommitted",
        consumer_timeout_ms=3000,
    )
    records = list(consumer)
    consumer.close()
    return records


def test_an_aborted_transaction_is_invisible_to_read_committed_and_stops_the_job(
    kafka_broker: str, topic_factory: Any
) -> None:
    settings = exactly_once(kafka_broker, topic_factory)
    producer = make_transactional_producer(settings)
    fatal: list[tuple[SourcePosition, BaseException]] = []
    committed: list[list[Disposition]] = []

    def fail_before_commit() -> None:
        producer.flush()  # the records are in the log, inside the open transaction
        raise RuntimeError("crash before commit")

    hooks = TransactionHooks(
        committed.append,
        lambda p, e: fatal.append((p, e)),
        lambda: settings.group_id,
        fail_before_commit,
    )
    publisher = TransactionalOutcomePublisher(producer, output_topics(settings), hooks)
    disposition = decided_disposition("plan-x", topic=settings.topic_input)
    publisher.received(disposition.position)
    publisher.publish(disposition)

    publisher.commit_ready()
    producer.close()

    assert committed == []
    assert [str(e) for _, e in fatal] == ["crash before commit"]
    assert read_all(kafka_broker, settings.topic_workflow_failed, 0) == []
    assert len(read_uncommitted(kafka_broker, settings.topic_workflow_failed)) == 1
