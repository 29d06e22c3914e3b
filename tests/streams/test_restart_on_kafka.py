"""SIGTERM in the middle of a batch, then a restart: each plan decided once, no order twice."""

from __future__ import annotations

import json
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from job_process import JobProcess, OutputReader, job_environment
from portfolio_scenario import (
    ORDERS_PER_PLAN,
    SYMBOLS,
    expected_positions,
    plan_messages,
    write_account,
)
from test_job_on_kafka import committed_offsets, end_offsets, publish

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.brokers.paper_account import PaperAccount
from rebalance_stream.streams.settings import Settings

pytestmark = pytest.mark.kafka

PLANS = 16
STOP_TIMEOUT_S = 60
RUN_TIMEOUT_S = 120


def job_settings(
    kafka_broker: str, topic_factory: Any, tmp_path: Path, latency_ms: int
) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka_broker,
        group_id=f"group-{uuid.uuid4().hex[:8]}",
        group_instance_id="rebalance-stream-test-0",
        session_timeout_ms=6000,
        topic_input=topic_factory("in", partitions=3),
        topic_trade_executed=topic_factory("te"),
        topic_workflow_completed=topic_factory("wc"),
        topic_workflow_failed=topic_factory("wf"),
        topic_dead_letter=topic_factory("dlq"),
        max_plan_age_s=0,
        paper_account=write_account(tmp_path / "account.json", latency_ms),
        paper_state=tmp_path / "paper.sqlite",
        ledger=str(tmp_path / "ledger.sqlite"),
    )


def test_sigterm_mid_batch_then_restart_decides_every_plan_once_and_orders_once(
    kafka_broker: str, topic_factory: Any, tmp_path: Path
) -> None:
    settings = job_settings(kafka_broker, topic_factory, tmp_path, latency_ms=60)
    publish(kafka_broker, settings.topic_input, list(plan_messages(PLANS)))
    outputs = [settings.topic_trade_executed, settings.topic_workflow_completed]
    reader = OutputReader(kafka_broker, [*outputs, settings.topic_workflow_failed])
    done = settings.topic_workflow_completed
    env = job_environment(settings)

    first = JobProcess(env, tmp_path / "job.log")
    assert reader.wait_until(lambda r: len(r.records[done]) >= 2, RUN_TIMEOUT_S)
    first.signal(signal.SIGTERM)
    first_code = first.wait(STOP_TIMEOUT_S)
    first.close()
    reader.poll()
    decided_before_restart = len(reader.records[done])

    second = JobProcess(env, tmp_path / "job.log")
    assert second.wait_for_log("partitions_assigned", RUN_TIMEOUT_S)
    all_done = reader.wait_until(lambda r: len(r.records[done]) >= PLANS, RUN_TIMEOUT_S)
    second.signal(signal.SIGTERM)
    second_code = second.wait(STOP_TIMEOUT_S)
    second.close()
    reader.wait_until(lambda r: False, 1.0)
    reader.close()

    assert (first_code, second_code, all_done) == (0, 0, True)
    assert 2 <= decided_before_restart < PLANS
    for topic in outputs:
        causes = Counter(json.loads(r.value)["causation_id"] for r in reader.records[topic])
        assert causes == Counter(f"evt-plan-{i:03d}" for i in range(PLANS)), topic
    assert reader.records[settings.topic_workflow_failed] == []
    with PaperBroker(
        PaperAccount.from_file(settings.paper_account or ""), state_path=settings.paper_state
    ) as broker:
        orders = broker.list_orders("rs1-")
        positions = {s: broker.get_position_qty(s) for s in SYMBOLS}
    assert len(orders) == PLANS * ORDERS_PER_PLAN
    assert len({o.client_order_id for o in orders}) == len(orders)
    assert positions == expected_positions(PLANS)
    assert committed_offsets(kafka_broker, settings) == end_offsets(kafka_broker, settings)
