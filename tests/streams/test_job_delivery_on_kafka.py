"""Delivery guarantees of the job on the real local Kafka: replay, backpressure, fatal publish."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog
from plan_factory import Trade, planned
from support import paper_account
from test_job_on_kafka import (
    committed_offsets,
    end_offsets,
    publish,
    read_all,
    run_job_until,
    settings_for,
)

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.contracts.outcomes import WorkflowFailed
from rebalance_stream.ledger.protocol import Claim, PlanClaim
from rebalance_stream.ledger.sqlite import SqliteLedger
from rebalance_stream.streams.runner import EXIT_OK, EXIT_PUBLISH_FAILED

pytestmark = pytest.mark.kafka

PLANS = 12
NEW_PLANS = 4


def plan_messages(count: int, accounts: int = 3) -> list[tuple[bytes | None, bytes]]:
    plans = [
        planned(f"plan-{i}", [Trade("VTI", "BUY", "250.00", 1)], account_id=f"acct-{i % accounts}")
        for i in range(count)
    ]
    return [(p["rebalance_plan"]["account_id"].encode(), json.dumps(p).encode()) for p in plans]


class ClaimCountingLedger(SqliteLedger):
    """The SQLite ledger, counting the claims dedupe makes."""

    claims = 0

    def claim(self, request: PlanClaim) -> Claim:
        self.claims += 1
        return super().claim(request)


def test_replay_from_offset_zero_with_the_ledger_places_no_order_and_publishes_nothing(
    kafka_broker: str, topic_factory: Any, tmp_path: Path
) -> None:
    """The replay's published inputs are settled by the source, a poll at a time: never
    decoded, claimed or emitted, but counted, logged and committed. Plans added after the
    first run still run, between them."""
    settings = settings_for(kafka_broker, topic_factory)
    publish(kafka_broker, settings.topic_input, plan_messages(PLANS))
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    broker = PaperBroker(paper_account(cash="100000.00"))
    broker.start()
    first_code, _, _ = run_job_until(settings, broker, PLANS, ledger)
    first_writes = ledger.transactions
    ledger.close()
    orders_after_first = broker.list_orders("rs1-")
    later = plan_messages(PLANS + NEW_PLANS)[PLANS:]
    publish(kafka_broker, settings.topic_input, later)

    replay = settings.model_copy(update={"group_id": settings.group_id + "-replay"})
    reopened = ClaimCountingLedger(tmp_path / "ledger.sqlite")
    with structlog.testing.capture_logs() as logs:
        code, dispositions, job = run_job_until(replay, broker, PLANS + NEW_PLANS, reopened)
    reopened.close()

    assert (first_code, code) == (EXIT_OK, EXIT_OK)
    # One order per plan: its intent, then a share of the group commit that writes the
    # outcomes with the terminal states; plans whose intents wait for a write share one too.
    assert 2 <= first_writes <= 2 * PLANS
    # Only the new plans were claimed, executed and emitted.
    assert reopened.claims == NEW_PLANS
    assert len(orders_after_first) == PLANS
    assert len(broker.list_orders("rs1-")) == PLANS + NEW_PLANS
    assert sorted(d.plan_id or "" for d in dispositions) == sorted(
        f"plan-{i}" for i in range(PLANS, PLANS + NEW_PLANS)
    )
    assert job.counts.snapshot() == {
        "consumed": PLANS + NEW_PLANS,
        "deduplicated": PLANS,
        "workflow_completed": NEW_PLANS,
    }
    registry = job.metrics.registry
    assert registry.get_sample_value("rebalance_stream_inputs_consumed_total") == PLANS + NEW_PLANS
    assert registry.get_sample_value("rebalance_stream_inputs_deduplicated_total") == PLANS
    skipped = [e for e in logs if e["event"] == "published_inputs_skipped"]
    assert sum(e["count"] for e in skipped) == PLANS
    assert [e["event"] for e in logs].count("input_decided") == NEW_PLANS
    read_all(kafka_broker, settings.topic_trade_executed, PLANS + NEW_PLANS)
    read_all(kafka_broker, settings.topic_workflow_completed, PLANS + NEW_PLANS)
    assert committed_offsets(kafka_broker, replay) == end_offsets(kafka_broker, replay)
    broker.close()


def test_backpressure_pauses_the_partitions_and_every_plan_still_completes(
    kafka_broker: str, topic_factory: Any
) -> None:
    settings = settings_for(kafka_broker, topic_factory).model_copy(update={"max_in_flight": 2})
    publish(kafka_broker, settings.topic_input, plan_messages(PLANS, accounts=1))
    broker = PaperBroker(paper_account(cash="100000.00", latency_ms=25))
    broker.start()

    code, dispositions, job = run_job_until(settings, broker, PLANS)

    assert code == EXIT_OK
    assert job.source.pauses >= 1
    assert sorted(d.position.offset for d in dispositions) == list(range(PLANS))
    read_all(kafka_broker, settings.topic_workflow_completed, PLANS)
    assert committed_offsets(kafka_broker, settings) == end_offsets(kafka_broker, settings)
    broker.close()


def test_an_output_that_cannot_be_published_stops_the_job_non_zero_and_commits_nothing_past_it(
    kafka_broker: str, topic_factory: Any
) -> None:
    settings = settings_for(kafka_broker, topic_factory).model_copy(
        update={
            "topic_workflow_completed": "missing-topic-never-created",
            "producer_max_block_ms": 1500,
        }
    )
    publish(kafka_broker, settings.topic_input, plan_messages(1))
    broker = PaperBroker(paper_account(cash="100000.00"))
    broker.start()

    code, dispositions, _ = run_job_until(settings, broker, 1)

    assert code == EXIT_PUBLISH_FAILED
    assert len(dispositions) == 1
    assert committed_offsets(kafka_broker, settings) == {0: 0, 1: 0, 2: 0}
    broker.close()


def test_daily_notional_limit_holds_across_a_restart(
    kafka_broker: str, topic_factory: Any, tmp_path: Path
) -> None:
    settings = settings_for(kafka_broker, topic_factory).model_copy(
        update={"max_daily_notional": Decimal(1000)}
    )
    buy_400 = [Trade("VTI", "BUY", "400.00", 1)]
    first_two = [planned(f"plan-{i}", buy_400, account_id="acct-7") for i in range(2)]
    third = planned("plan-2", buy_400, account_id="acct-7")
    publish(
        kafka_broker, settings.topic_input, [(b"acct-7", json.dumps(p).encode()) for p in first_two]
    )
    broker = PaperBroker(paper_account(cash="100000.00"))
    broker.start()
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    run_job_until(settings, broker, 2, ledger)
    ledger.close()

    publish(kafka_broker, settings.topic_input, [(b"acct-7", json.dumps(third).encode())])
    reopened = SqliteLedger(tmp_path / "ledger.sqlite")
    code, dispositions, _ = run_job_until(settings, broker, 1, reopened)
    reopened.close()

    assert code == EXIT_OK
    [failed] = [o for o in dispositions[0].outputs if isinstance(o, WorkflowFailed)]
    assert failed.error_details.reason_code == "DAILY_NOTIONAL_EXCEEDED"
    assert failed.failure_reason == (
        "account acct-7 traded 800.00 today; plan notional 400.00 would exceed "
        "max_daily_notional 1000"
    )
    assert len(broker.list_orders("rs1-")) == 2
    broker.close()
