"""A second instance joins the group in the middle of the stream. The first one lets its
revoked partitions' executing plans finish (bounded by half the session timeout), holds back
the plans not started, and commits before it lets go; a partition that comes straight back is
rewound to its first unfinished offset. Every plan is decided and no order is placed twice.

Each instance has its own ledger here, so under at_least_once a plan whose commit had not
reached the broker before its partition moved can be decided again by the new owner (its
orders adopted, not placed again): a shared ledger is what removes such repeats (issue 12)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest
from job_process import OutputReader
from plan_factory import Trade, planned
from support import paper_account
from test_job_on_kafka import committed_offsets, end_offsets, publish, settings_for

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.streams.runner import EXIT_OK, PlanConsumerJob

pytestmark = pytest.mark.kafka

PLANS = 72
ACCOUNTS = 9
WAIT_S = 120


def plan_messages() -> list[tuple[bytes | None, bytes]]:
    trades = [Trade("VTI", "BUY", "250.00", 1), Trade("GLD", "BUY", "190.00", 2)]
    plans = [
        planned(f"plan-{i:02d}", trades, account_id=f"acct-{i % ACCOUNTS}") for i in range(PLANS)
    ]
    return [(p["rebalance_plan"]["account_id"].encode(), json.dumps(p).encode()) for p in plans]


class RunningJob:
    def __init__(self, job: PlanConsumerJob) -> None:
        self.job = job
        self.code: list[int] = []
        self.thread = threading.Thread(target=lambda: self.code.append(job.run()), daemon=True)
        self.thread.start()

    def stop(self) -> int:
        self.job.stop()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "the job did not stop"
        return self.code[0]


def test_second_instance_joining_mid_stream_every_plan_decided_no_order_twice(
    kafka_broker: str, topic_factory: Any
) -> None:
    settings = settings_for(kafka_broker, topic_factory)
    publish(kafka_broker, settings.topic_input, plan_messages())
    broker = PaperBroker(paper_account(cash="1000000.00", latency_ms=100))
    broker.start()
    done = settings.topic_workflow_completed
    reader = OutputReader(kafka_broker, [settings.topic_trade_executed, done])

    first = RunningJob(PlanConsumerJob(settings, broker, InMemoryLedger()))
    assert reader.wait_until(lambda r: len(r.records[done]) >= 3, WAIT_S)
    second = RunningJob(PlanConsumerJob(settings, broker, InMemoryLedger()))
    expected = {f"evt-plan-{i:02d}" for i in range(PLANS)}
    all_done = reader.wait_until(lambda r: r.causes(done) >= expected, WAIT_S)
    codes = (first.stop(), second.stop())
    reader.wait_until(lambda r: False, 1.0)
    reader.close()

    assert (all_done, codes) == (True, (EXIT_OK, EXIT_OK))
    consumed = (first.job.counts.snapshot(), second.job.counts.snapshot())
    assert all(counts.get("consumed", 0) > 0 for counts in consumed), consumed
    for topic in (settings.topic_trade_executed, done):
        causes = Counter(json.loads(r.value)["causation_id"] for r in reader.records[topic])
        assert set(causes) == expected, topic
        print(f"{topic}: {sum(causes.values()) - PLANS} outcomes repeated after the rebalance")
    orders = broker.list_orders("rs1-")
    assert len(orders) == len({o.client_order_id for o in orders}) == 2 * PLANS
    assert committed_offsets(kafka_broker, settings) == end_offsets(kafka_broker, settings)
    broker.close()
