"""Backpressure under load: 10,000 queued plans and a slow broker. Over a fixed window the
inputs in flight never exceed max_in_flight, the partitions pause, and the member is never
rebalanced (it keeps polling while paused)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from kafka import KafkaProducer  # type: ignore[import-untyped]
from plan_factory import Trade, planned
from support import paper_account
from test_job_on_kafka import settings_for

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.operators.flow import Disposition
from rebalance_stream.streams.runner import EXIT_OK, JobHooks, PlanConsumerJob

pytestmark = pytest.mark.kafka

PLANS = 10_000
ACCOUNTS = 50
MAX_IN_FLIGHT = 100
WINDOW_S = 10.0
STOP_TIMEOUT_S = 60


def publish_backlog(kafka_broker: str, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks="all", linger_ms=20)
    for i in range(PLANS):
        account = f"acct-{i % ACCOUNTS}"
        document = planned(f"plan-{i:05d}", [Trade("VTI", "BUY", "100.00", 1)], account_id=account)
        producer.send(topic, key=account.encode(), value=json.dumps(document).encode())
    producer.flush()
    producer.close()


def test_backlog_of_ten_thousand_stays_within_the_bound_without_a_rebalance(
    kafka_broker: str, topic_factory: Any
) -> None:
    settings = settings_for(kafka_broker, topic_factory).model_copy(
        update={"max_in_flight": MAX_IN_FLIGHT}
    )
    publish_backlog(kafka_broker, settings.topic_input)
    broker = PaperBroker(paper_account(cash="100000000.00", latency_ms=5))
    broker.start()
    decided: list[Disposition] = []
    job = PlanConsumerJob(settings, broker, InMemoryLedger(), JobHooks(decided.append))
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(job.run()), daemon=True)

    thread.start()
    time.sleep(WINDOW_S)
    job.stop()
    thread.join(STOP_TIMEOUT_S)

    assert codes == [EXIT_OK]
    assert 0 < len(decided) < PLANS
    assert job.source.most_in_flight <= MAX_IN_FLIGHT
    assert job.source.pauses >= 1
    assert job.source.revocations == 0
    lag = job.metrics.registry.get_sample_value
    partitions = range(3)
    backlog = [
        lag("rebalance_stream_consumer_lag", {"topic": settings.topic_input, "partition": str(p)})
        for p in partitions
    ]
    assert all(value is not None for value in backlog)
    assert sum(value or 0 for value in backlog) > PLANS / 2
    broker.close()
