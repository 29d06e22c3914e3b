"""Scenario 2, latency: plans at a steady rate, from publish to WorkflowCompleted visible.

A read_committed consumer tails the WorkflowCompleted topic; each record's causation_id
header names the plan's event_id, whose send time the publisher kept. Run once with the paper
broker answering at once and once with ``latency_ms`` added to every broker call. The
baseline is the broker's own round trip for a trivial record at the same rate, measured in
the same run; the overhead is ours minus the baseline, per percentile.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from bench.baseline import SteadyPublisher, TailReader, bare_producer, round_trip
from bench.common import (
    ACCOUNTS,
    MS_PER_S,
    PERCENTILES,
    CountingBroker,
    JobDriver,
    JobTopics,
    Kafka,
    Workspace,
    job_settings,
    latency_summary,
    new_group,
    paper_broker,
    plan_record,
    utc_timestamp,
)
from rebalance_stream.ledger.sqlite import SqliteLedger
from rebalance_stream.streams.local_kafka import create_topics

WARMUP_TIMEOUT_S = 60.0
DRAIN_LIMIT_S = 120.0
CAUSATION_HEADER = "causation_id"


def _causation(record: Any) -> str | None:
    for name, value in record.headers or ():
        if name == CAUSATION_HEADER:
            return bytes(value).decode()
    return None


class CompletionWatch:
    """Reads WorkflowCompleted as it becomes visible; keeps when each plan's showed."""

    def __init__(self, reader: TailReader) -> None:
        self._reader = reader
        self.seen_s: dict[str, float] = {}
        self.durations_ms: list[int] = []

    def until(self, event_ids: Sequence[str], timeout_s: float) -> int:
        """Poll until every event_id showed, or timeout_s passed; return how many showed."""
        wanted = set(event_ids)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not wanted <= self.seen_s.keys():
            for record, seen_s in self._reader.poll():
                causation = _causation(record)
                if causation is not None and causation not in self.seen_s:
                    self.seen_s[causation] = seen_s
                    self.durations_ms.append(json.loads(record.value)["workflow_duration_ms"])
        return len(wanted & self.seen_s.keys())


def measure_job(
    kafka: Kafka,
    workspace: Workspace,
    per_s: float,
    count: int,
    broker_latency_ms: int,
    account_lanes: int | None = None,
) -> dict[str, Any]:
    """One latency run of the job with the paper broker at ``broker_latency_ms`` per call;
    ``account_lanes`` overrides the service's default number of lanes."""
    bootstrap = kafka.bootstrap_servers
    topics = JobTopics.create(bootstrap, f"latency{broker_latency_ms}")
    ledger_path = workspace.ledger_path(f"latency{broker_latency_ms}")
    settings = job_settings(bootstrap, topics, new_group("latency"), ledger_path)
    if account_lanes is not None:
        settings = settings.model_copy(update={"account_lanes": account_lanes})
    ledger = SqliteLedger(settings.ledger, synchronous=settings.ledger_synchronous)
    broker = paper_broker(broker_latency_ms)
    counting = CountingBroker(broker)
    reader = TailReader(bootstrap, topics.workflow_completed)
    watch = CompletionWatch(reader)
    producer = bare_producer(bootstrap, linger_ms=0)
    driver = JobDriver(settings, counting, ledger)
    try:
        driver.start()
        run_id = uuid.uuid4().hex[:8]
        timestamp = utc_timestamp()
        # One plan per account first: the group is joined and every account's lane is warm.
        warm = min(ACCOUNTS, count)
        warmup = [plan_record(f"warm-{run_id}", i, timestamp) for i in range(warm)]
        SteadyPublisher(producer, topics.input, warmup).start(float("inf"))
        if watch.until([name for _, _, name in warmup], WARMUP_TIMEOUT_S) < len(warmup):
            raise TimeoutError("the warm-up plans did not complete")
        plans = [plan_record(run_id, i, utc_timestamp()) for i in range(count)]
        publisher = SteadyPublisher(producer, topics.input, plans)
        watch.durations_ms.clear()
        publisher.start(per_s)
        names = [name for _, _, name in plans]
        completed = watch.until(names, count / per_s + DRAIN_LIMIT_S)
        publisher.join()
        driver.stop()
    finally:
        driver.abort()
        producer.close()
        reader.close()
        ledger.close()
        broker.close()
    latencies_ms = [
        (watch.seen_s[name] - publisher.sent_s[name]) * MS_PER_S
        for name in names
        if name in watch.seen_s
    ]
    return {
        "paper_latency_ms": broker_latency_ms,
        "account_lanes": settings.account_lanes,
        "plans": count,
        "completed": completed,
        "latency_ms": latency_summary(latencies_ms),
        "workflow_duration_ms": latency_summary(watch.durations_ms),
        "paper_broker_calls_per_plan": counting.per_plan(count + len(warmup)),
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
    baseline = round_trip(kafka.bootstrap_servers, round_trip_topic, per_s, count)
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
        ours = measured["latency_ms"]
        measured["overhead_ms"] = {
            name: round(ours[name] - baseline[name], 2) for name, _ in PERCENTILES
        }
        measured["ratio"] = {
            name: round(ours[name] / baseline[name], 2) if baseline[name] else None
            for name, _ in PERCENTILES
        }
        runs[key] = measured
    return {"rate_per_s": per_s, "seconds": seconds, "baseline_round_trip_ms": baseline, **runs}
