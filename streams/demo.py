"""``rebalance-stream demo``: sample plans through real Kafka and the paper broker, end to end.

Starts a local Apache Kafka when no bootstrap server is set, creates the topics, publishes the
samples (a rotation, a no-trade plan, a partial fill, a duplicate, malformed bytes and a
schema-invalid plan), runs the job until every input is decided, prints what happened, and
stops what it started.
"""

from __future__ import annotations

import json
import tempfile
import threading
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from kafka import KafkaProducer  # type: ignore[import-untyped]
from rich.console import Console

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.brokers.paper_account import PaperAccount
from rebalance_stream.contracts.wire import format_timestamp
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.operators.flow import Disposition
from rebalance_stream.streams import report
from rebalance_stream.streams.kafka_clients import client_config, create_topics
from rebalance_stream.streams.local_kafka import LocalKafka, fetch_jars
from rebalance_stream.streams.pipeline import utc_now
from rebalance_stream.streams.runner import JobHooks, PlanConsumerJob, output_topics
from rebalance_stream.streams.settings import Settings

DEMO_TIMEOUT_S = 120.0


def _item(symbol: str, action: str, amount: str, priority: int, target: str) -> dict[str, Any]:
    return {
        "symbol": symbol, "current_weight": "0.1", "target_weight": target, "weight_diff": "0",
        "target_value": "0" if target == "0" else "1000.00", "current_value": "1000.00",
        "trade_amount": amount, "action": action, "priority": priority,
    }  # fmt: skip


def _plan(plan_id: str, account: str, items: list[dict[str, Any]], now: str) -> dict[str, Any]:
    correlation_id = f"corr-{plan_id}"
    trades = any(item["action"] != "HOLD" for item in items)
    return {
        "event_id": f"evt-{plan_id}", "correlation_id": correlation_id,
        "causation_id": f"cause-{plan_id}", "event_type": "RebalancePlanned", "timestamp": now,
        "source_module": "portfolio_v2", "schema_version": "1.0", "metadata": None,
        "trades_required": trades,
        "allocation_comparison": {"target_values": {}, "current_values": {}, "deltas": {}},
        "rebalance_plan": {
            "plan_id": plan_id, "correlation_id": correlation_id,
            "causation_id": f"cause-{plan_id}", "timestamp": now, "items": items,
            "total_portfolio_value": "87900.00", "total_trade_value": "0", "metadata": None,
            "account_id": account,
        },
    }  # fmt: skip


def demo_messages(now: datetime) -> list[tuple[str, bytes, bytes]]:
    """(label, key, value) of every sample input, in publishing order."""
    stamp = format_timestamp(now)
    rotation = _plan(
        "demo-rotation", "acct-001",
        [_item("TQQQ", "SELL", "-24000.00", 1, "0"), _item("VTI", "BUY", "12000.00", 2, "0.14"),
         _item("GLD", "BUY", "9500.00", 3, "0.11")],
        stamp,
    )  # fmt: skip
    hold = _plan("demo-steady", "acct-002", [_item("SPY", "HOLD", "0", 5, "0.23")], stamp)
    partial = _plan(
        "demo-partial", "acct-003",
        [_item("ARKK", "BUY", "900.00", 1, "0.01"), _item("QQQ", "BUY", "840.00", 2, "0.11")],
        stamp,
    )  # fmt: skip
    duplicate = {**rotation, "event_id": "evt-demo-rotation-resent"}
    invalid = _plan("demo-invalid", "acct-004", [_item("SPY", "BUY", "-5.00", 1, "0.2")], stamp)

    def encoded(document: dict[str, Any]) -> bytes:
        return json.dumps(document).encode()

    return [
        ("rotation", b"acct-001", encoded(rotation)),
        ("no trades", b"acct-002", encoded(hold)),
        ("partial fill", b"acct-003", encoded(partial)),
        ("duplicate plan", b"acct-001", encoded(duplicate)),
        ("malformed bytes", b"acct-004", b'{"event_id": "evt-broken", '),
        ("schema-invalid", b"acct-004", encoded(invalid)),
    ]


def _publish(settings: Settings, messages: list[tuple[str, bytes, bytes]]) -> None:
    producer = KafkaProducer(**client_config(settings), acks="all")
    for _label, key, value in messages:
        producer.send(settings.topic_input, key=key, value=value)
    producer.flush()
    producer.close()


def _run_until_decided(settings: Settings, broker: PaperBroker, inputs: int) -> list[Disposition]:
    decided: list[Disposition] = []
    job_ref: list[PlanConsumerJob] = []

    def on_disposition(disposition: Disposition) -> None:
        decided.append(disposition)
        if len(decided) >= inputs:
            job_ref[0].stop()

    job = PlanConsumerJob(settings, broker, InMemoryLedger(), JobHooks(on_disposition))
    job_ref.append(job)
    runner = threading.Thread(target=job.run, name="demo-job")
    runner.start()
    runner.join(DEMO_TIMEOUT_S)
    if runner.is_alive():
        job.stop()
        runner.join()
    return decided


def run_demo(settings: Settings, console: Console) -> list[Disposition]:
    """Run the demo end to end and print its tables; return the dispositions."""
    local: LocalKafka | None = None
    if not settings.kafka_bootstrap_servers:
        console.print("starting a local Apache Kafka (first run fetches its jars with mvn)...")
        local = LocalKafka(Path(tempfile.mkdtemp(prefix="rebalance-demo-")), jars=fetch_jars())
        local.start()
        settings = settings.model_copy(update={"kafka_bootstrap_servers": local.bootstrap_servers})
    demo_group = f"{settings.group_id}-demo-{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(update={"group_id": demo_group})
    try:
        create_topics(settings)
        messages = demo_messages(utc_now())
        _publish(settings, messages)
        account = PaperAccount.sample()
        with PaperBroker(account, state_path=settings.paper_state) as broker:
            decided = _run_until_decided(settings, broker, len(messages))
            by_offset = sorted(decided, key=lambda d: (d.position.partition, d.position.offset))
            labels = {value: label for label, _key, value in messages}
            sources = [labels.get(d.record.value, "?") for d in by_offset]
            report.print_report(
                console,
                report.outcomes_table(by_offset, sources, output_topics(settings)),
                report.orders_table(by_offset),
            )
        return by_offset
    finally:
        if local is not None:
            local.stop()
