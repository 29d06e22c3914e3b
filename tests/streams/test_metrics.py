"""JobMetrics: exact counts from real dispositions, latency buckets, lag, broker calls, and
registries that do not collide."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from kafka import TopicPartition  # type: ignore[import-untyped]
from plan_factory import Trade, liquidate, planned
from prometheus_client import REGISTRY, CollectorRegistry
from reactivex.scheduler import ThreadPoolScheduler
from support import T0, FixedClock, record

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.operators.flow import Disposition, InputRecord
from rebalance_stream.operators.risk import KillSwitch
from rebalance_stream.streams.job_counts import JobCounts
from rebalance_stream.streams.metrics import (
    BROKER_OUTCOMES,
    JobMetrics,
    http_outcome,
    order_status_label,
)
from rebalance_stream.streams.pipeline import PipelineConfig, PipelineDependencies
from rebalance_stream.streams.simulate import run_in_process

ROTATION = planned(
    "plan-rot",
    [
        liquidate("TQQQ", "-8000.00", 1),
        Trade("VTI", "BUY", "5000.00", 2, "0.10", "5000.00", "0"),
        Trade("GLD", "BUY", "1900.00", 3, "0.05", "1900.00", "0"),
    ],
)
PARTIAL = planned(
    "plan-part",
    [
        Trade("ARKK", "BUY", "800.00", 1, "0.01", "800.00", "0"),
        Trade("VTI", "BUY", "500.00", 2, "0.05", "500.00", "0"),
    ],
)
HOLD = planned("plan-hold", [Trade("SPY", "HOLD", "0", 5)], trades_required=False)
INVALID = planned("plan-bad", [Trade("SPY", "BUY", "-500.00", 1)])
BROKEN = b'{"event_id": "evt-broken", "rebalance_plan": [1,'


def run(records: list[InputRecord], broker: PaperBroker, clock: FixedClock) -> list[Disposition]:
    deps = PipelineDependencies(
        broker=broker,
        ledger=InMemoryLedger(),
        kill_switch=lambda: KillSwitch.ACTIVE,
        clock=clock,
        sleep=clock.advance,
        scheduler=ThreadPoolScheduler(4),
    )
    config = PipelineConfig(treat_partial_execution_as_failure=True)
    return run_in_process(records, config, deps)


def every_kind(paper: PaperBroker, clock: FixedClock) -> list[Disposition]:
    """Completed (3 fills), failed (1 fill, 1 cancel), duplicate, undecodable bytes,
    schema-invalid, and a mis-keyed plan that completes without orders."""
    return run(
        [
            record(ROTATION, 0),
            record(PARTIAL, 1),
            record(ROTATION, 2),
            record(BROKEN, 3),
            record(INVALID, 4),
            record(HOLD, 5, key=b"not-the-account"),
        ],
        paper,
        clock,
    )


def value(metrics: JobMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(f"rebalance_stream_{name}", labels)


def observed(dispositions: list[Disposition], metrics: JobMetrics | None = None) -> JobMetrics:
    metrics = metrics or JobMetrics()
    for disposition in dispositions:
        metrics.received()
        metrics.observe(disposition)
    return metrics


def test_observe_pipeline_dispositions_counts_each_kind_exactly(
    paper: PaperBroker, clock: FixedClock
) -> None:
    dispositions = every_kind(paper, clock)

    metrics = observed(dispositions)

    assert value(metrics, "inputs_consumed_total") == 6
    assert value(metrics, "inputs_deduplicated_total") == 1
    assert value(metrics, "inputs_dead_lettered_total") == 2
    assert value(metrics, "inputs_mis_keyed_total") == 1
    assert value(metrics, "outcomes_total", status="workflow_completed") == 2
    assert value(metrics, "outcomes_total", status="workflow_failed") == 2
    assert value(metrics, "outcomes_total", status="skipped") == 1
    assert value(metrics, "outcomes_total", status="dead_lettered") == 1
    assert value(metrics, "orders_total", status="filled") == 4
    assert value(metrics, "orders_total", status="canceled") == 1
    assert value(metrics, "orders_total", status="rejected") == 0
    assert value(metrics, "orders_total", status="other") is None
    assert value(metrics, "plan_latency_seconds_count", outcome="workflow_completed") == 2
    assert value(metrics, "plan_latency_seconds_count", outcome="skipped") == 1
    assert value(metrics, "inputs_in_flight") == 0


def test_observe_counts_agree_with_job_counts(paper: PaperBroker, clock: FixedClock) -> None:
    dispositions = every_kind(paper, clock)
    counts = JobCounts()
    for disposition in dispositions:
        counts.count(disposition)

    metrics = observed(dispositions)

    snapshot = counts.snapshot()
    assert value(metrics, "inputs_consumed_total") == snapshot["consumed"]
    assert value(metrics, "inputs_deduplicated_total") == snapshot["deduplicated"]
    assert value(metrics, "inputs_dead_lettered_total") == snapshot["dead_lettered"]
    assert value(metrics, "inputs_mis_keyed_total") == snapshot["mis_keyed"]
    for status in ("workflow_completed", "workflow_failed"):
        assert value(metrics, "outcomes_total", status=status) == snapshot[status]


def test_observe_latency_from_receipt_to_decision_lands_in_its_buckets(
    paper: PaperBroker, clock: FixedClock
) -> None:
    [completed] = run([record(ROTATION)], paper, clock)
    received_at = completed.record.received_at
    latencies_s = [0.03, 2.0, 90.0, -1.0]  # a clock step back counts as zero
    dispositions = [
        replace(completed, decided_at=received_at + timedelta(seconds=s)) for s in latencies_s
    ]

    metrics = observed(dispositions)

    def bucket(le: str) -> float | None:
        return value(metrics, "plan_latency_seconds_bucket", outcome="workflow_completed", le=le)

    assert bucket("0.01") == 1
    assert bucket("0.05") == 2
    assert bucket("1.0") == 2
    assert bucket("2.5") == 3
    assert bucket("60.0") == 3
    assert bucket("+Inf") == 4
    assert value(metrics, "plan_latency_seconds_sum", outcome="workflow_completed") == 92.03
    assert value(metrics, "plan_latency_seconds_count", outcome="workflow_failed") == 0


def test_observe_not_started_input_only_leaves_in_flight(
    paper: PaperBroker, clock: FixedClock
) -> None:
    [completed] = run([record(ROTATION)], paper, clock)
    metrics = JobMetrics()
    metrics.received()
    metrics.received()

    metrics.observe(replace(completed, outputs=(), not_started=True))

    assert value(metrics, "inputs_in_flight") == 1
    assert value(metrics, "inputs_consumed_total") == 0
    assert value(metrics, "plan_latency_seconds_count", outcome="workflow_completed") == 0
    assert value(metrics, "orders_total", status="filled") == 0


def test_received_without_decision_stays_in_flight(paper: PaperBroker, clock: FixedClock) -> None:
    first, second = run([record(ROTATION, 0), record(HOLD, 1)], paper, clock)
    metrics = JobMetrics()
    for _ in range(3):
        metrics.received()

    metrics.observe(first)
    metrics.observe(second)

    assert value(metrics, "inputs_in_flight") == 1


def test_duplicates_settled_by_the_source_count_as_skipped_inputs_never_in_flight() -> None:
    """As ``observe`` counts a skipped Disposition, without the in-flight gauge moving."""
    records = [record(ROTATION, offset, received_at=T0) for offset in range(3)]
    metrics = JobMetrics()
    counts = JobCounts()

    metrics.observe_settled_duplicates(records, T0 + timedelta(milliseconds=4))
    counts.add({"consumed": 3, "deduplicated": 3})

    assert value(metrics, "inputs_consumed_total") == 3
    assert value(metrics, "inputs_deduplicated_total") == 3
    assert value(metrics, "outcomes_total", status="skipped") == 3
    assert value(metrics, "plan_latency_seconds_count", outcome="skipped") == 3
    assert value(metrics, "plan_latency_seconds_sum", outcome="skipped") == pytest.approx(0.012)
    assert value(metrics, "inputs_in_flight") == 0
    assert counts.snapshot() == {"consumed": 3, "deduplicated": 3}


@pytest.mark.parametrize(
    ("status", "label"),
    [("filled", "filled"), ("error", "error"), ("skipped", "skipped"), ("pending_new", "other")],
)
def test_order_status_label_bounds_unknown_statuses(status: str, label: str) -> None:
    assert order_status_label(status) == label


def test_set_consumer_lag_sets_clamps_keeps_and_removes_partitions() -> None:
    metrics = JobMetrics()
    p0, p1 = TopicPartition("rebalance.planned", 0), TopicPartition("rebalance.planned", 1)

    metrics.set_consumer_lag({p0: 120, p1: 50}, {p0: 100, p1: 60})
    first = (
        value(metrics, "consumer_lag", topic="rebalance.planned", partition="0"),
        value(metrics, "consumer_lag", topic="rebalance.planned", partition="1"),
    )
    metrics.set_consumer_lag({p0: None}, {})
    second = (
        value(metrics, "consumer_lag", topic="rebalance.planned", partition="0"),
        value(metrics, "consumer_lag", topic="rebalance.planned", partition="1"),
    )
    metrics.set_consumer_lag({}, {})
    third = value(metrics, "consumer_lag", topic="rebalance.planned", partition="0")

    assert first == (20, 0)
    assert second == (20, None)
    assert third is None


def test_broker_calls_count_requests_by_outcome_and_retries() -> None:
    metrics = JobMetrics()
    calls = metrics.broker_calls("alpaca")

    calls.request("ok")
    calls.request("ok")
    calls.request("rate_limited")
    calls.request("teapot")
    calls.retry()

    assert value(metrics, "broker_requests_total", broker="alpaca", outcome="ok") == 2
    assert value(metrics, "broker_requests_total", broker="alpaca", outcome="rate_limited") == 1
    assert value(metrics, "broker_requests_total", broker="alpaca", outcome="other") == 1
    assert value(metrics, "broker_requests_total", broker="alpaca", outcome="server_error") == 0
    assert value(metrics, "broker_retries_total", broker="alpaca") == 1
    assert value(metrics, "broker_requests_total", broker="paper", outcome="ok") is None


@pytest.mark.parametrize(
    ("status_code", "outcome"),
    [(200, "ok"), (204, "ok"), (404, "client_error"), (429, "rate_limited"), (503, "server_error")],
)
def test_http_outcome_maps_status_codes(status_code: int, outcome: str) -> None:
    assert http_outcome(status_code) == outcome
    assert outcome in BROKER_OUTCOMES


def test_two_job_metrics_in_one_process_do_not_collide(
    paper: PaperBroker, clock: FixedClock
) -> None:
    [completed] = run([record(ROTATION)], paper, clock)

    first = observed([completed, completed])
    second = observed([completed])

    assert value(first, "inputs_consumed_total") == 2
    assert value(second, "inputs_consumed_total") == 1
    assert first.registry is not second.registry
    assert REGISTRY.get_sample_value("rebalance_stream_inputs_consumed_total") is None


def test_job_metrics_uses_the_registry_given_and_refuses_to_register_twice() -> None:
    registry = CollectorRegistry()
    metrics = JobMetrics(registry)
    metrics.received()

    assert metrics.registry is registry
    assert registry.get_sample_value("rebalance_stream_inputs_in_flight") == 1
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        JobMetrics(registry)
