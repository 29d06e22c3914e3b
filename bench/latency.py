"""Scenario 2, latency: plans at a steady rate, from publish to WorkflowCompleted visible.

A read_committed consumer tails the WorkflowCompleted topic; each record's causation_id
header names the plan's event_id, whose send time the publisher kept. Publisher and reader
run in a process of their own (``bench.latency_probe``), apart from the job's. Run once with
the paper broker answering at once and once with ``latency_ms`` added to every broker call. The
baseline is the broker's own round trip for a trivial record at the same rate, measured at the
same time by the same probe (so that a pause of the machine or the broker shows in both); the
overhead is ours minus that, per percentile. The round trip on an idle broker, before the
job starts, is reported too (``baseline_round_trip_ms``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from bench.common import (
    ACCOUNTS,
    PERCENTILES,
    CountingBroker,
    JobTopics,
    Kafka,
    Workspace,
    latency_summary,
    new_group,
    paper_broker,
)
from bench.job_driver import JobDriver, job_settings
from bench.latency_probe import ProbeRun, in_subprocess
from rebalance_stream.ledger.sqlite import SqliteLedger
from rebalance_stream.streams.local_kafka import create_topics


def measure_job(
    kafka: Kafka,
    workspace: Workspace,
    per_s: float,
    count: int,
    broker_latency_ms: int,
    account_lanes: int | None = None,
) -> dict[str, Any]:
    """One latency run of the job with the paper broker at ``broker_latency_ms`` per call;
    ``account_lanes`` overrides the service's default number of lanes. The job runs in this
    process; the plans are sent and followed from another (``bench.latency_probe``)."""
    bootstrap = kafka.bootstrap_servers
    topics = JobTopics.create(bootstrap, f"latency{broker_latency_ms}")
    ledger_path = workspace.ledger_path(f"latency{broker_latency_ms}")
    settings = job_settings(bootstrap, topics, new_group("latency"), ledger_path)
    if account_lanes is not None:
        settings = settings.model_copy(update={"account_lanes": account_lanes})
    ledger = SqliteLedger(settings.ledger, synchronous=settings.ledger_synchronous)
    broker = paper_broker(broker_latency_ms)
    counting = CountingBroker(broker)
    driver = JobDriver(settings, counting, ledger)
    beside = f"bench-roundtrip-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, [beside])
    try:
        driver.start()
        probe = ProbeRun(bootstrap, topics.input, topics.workflow_completed, per_s, count, beside)
        try:
            measured = in_subprocess("plans", probe)
        except RuntimeError as exc:
            counts = driver.job.counts.snapshot()
            raise RuntimeError(f"{exc} (the job had decided {counts})") from exc
        driver.stop()
    finally:
        driver.abort()
        ledger.close()
        broker.close()
    return {
        "paper_latency_ms": broker_latency_ms,
        "account_lanes": settings.account_lanes,
        "plans": count,
        "completed": measured["completed"],
        "latency_ms": latency_summary(measured["latencies_ms"]),
        "round_trip_beside_ms": latency_summary(measured["beside_ms"]),
        "to_producer_ms": latency_summary(measured["to_producer_ms"]),
        "workflow_duration_ms": latency_summary(measured["durations_ms"]),
        "paper_broker_calls_per_plan": counting.per_plan(count + measured["warmup_plans"]),
    }


def run(
    kafka: Kafka,
    workspace: Workspace,
    per_s: float,
    seconds: float,
    broker_latencies_ms: Sequence[int] = (0, 50),
) -> dict[str, Any]:
    """The broker's round trip, then the job at each paper broker latency."""
    count = max(1, int(per_s * seconds))
    round_trip_topic = f"bench-roundtrip-{uuid.uuid4().hex[:8]}"
    create_topics(kafka.bootstrap_servers, [round_trip_topic])
    probe = ProbeRun(kafka.bootstrap_servers, round_trip_topic, round_trip_topic, per_s, count)
    baseline = latency_summary(in_subprocess("round-trip", probe)["latencies_ms"])
    runs = {}
    shapes: list[tuple[str, int, int | None]] = [
        (f"paper_{ms}ms", ms, None) for ms in broker_latencies_ms
    ]
    slow = [ms for ms in broker_latencies_ms if ms > 0]
    if slow:
        # The pinned 8 lanes saturate at 50 ms a call; one lane per account shows a plan's
        # own latency instead of the queue in front of the lanes.
        shapes.append((f"paper_{slow[-1]}ms_{ACCOUNTS}_lanes", slow[-1], ACCOUNTS))
    for key, broker_latency_ms, lanes in shapes:
        measured = measure_job(kafka, workspace, per_s, count, broker_latency_ms, lanes)
        ours, beside = measured["latency_ms"], measured["round_trip_beside_ms"]
        measured["overhead_ms"] = {
            name: round(ours[name] - beside[name], 2) for name, _ in PERCENTILES
        }
        measured["ratio"] = {
            name: round(ours[name] / beside[name], 2) if beside[name] else None
            for name, _ in PERCENTILES
        }
        measured["overhead_vs_idle_round_trip_ms"] = {
            name: round(ours[name] - baseline[name], 2) for name, _ in PERCENTILES
        }
        runs[key] = measured
    return {"rate_per_s": per_s, "seconds": seconds, "baseline_round_trip_ms": baseline, **runs}
