"""``demo`` against the session's Kafka: every sample input is decided as SPEC 1 says."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from rich.console import Console

from rebalance_stream.streams.demo import run_demo
from rebalance_stream.streams.report import outcome_label
from rebalance_stream.streams.settings import Settings

pytestmark = pytest.mark.kafka


def test_demo_on_kafka_each_sample_gets_its_outcome(kafka_broker: str, topic_factory: Any) -> None:
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker,
        group_id=f"demo-{uuid.uuid4().hex[:8]}",
        topic_input=topic_factory("in", partitions=2),
        topic_trade_executed=topic_factory("te"),
        topic_workflow_completed=topic_factory("wc"),
        topic_workflow_failed=topic_factory("wf"),
        topic_dead_letter=topic_factory("dlq"),
    )
    console = Console(record=True, width=200)

    decided = run_demo(settings, console)

    outcomes = sorted((d.plan_id or "-", outcome_label(d)) for d in decided)
    assert outcomes == [
        ("-", "dead-lettered"),
        ("-", "failed"),
        ("demo-partial", "failed"),
        ("demo-rotation", "completed"),
        ("demo-rotation", "skipped (duplicate)"),
        ("demo-steady", "completed"),
    ]
    assert "partial execution: 1/2 orders filled; failed: ARKK" in console.export_text()
