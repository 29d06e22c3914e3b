"""Scenario 1, throughput: a backlog of plans processed to completion, against the bare loop.

Both sides read the same pre-loaded topic, each in its own consumer group, and are timed from
their first record received to their last offset committed. Ours is the real PlanConsumerJob
(SQLite ledger, paper broker) in this process; the baseline is ``baseline.bare_pipeline``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.baseline import bare_pipeline
from bench.common import (
    MS_PER_S,
    Backlog,
    JobTopics,
    Kafka,
    Workspace,
    new_group,
    paper_broker,
    preload,
    rate,
    ratio,
)
from bench.job_driver import JobDriver, job_settings
from bench.profiling import profiled
from rebalance_stream.streams.local_kafka import create_topics
from rebalance_stream.streams.runner import open_ledger

SECONDS_PER_PLAN_LIMIT = 0.05
TIMEOUT_FLOOR_S = 120.0


@dataclass(frozen=True, slots=True)
class Processed:
    """What replay needs: the topic the job drained, and its ledger."""

    topics: JobTopics
    backlog: Backlog
    ledger_path: Path


@dataclass(frozen=True, slots=True)
class JobResult:
    plans: int
    seconds: float
    counts: dict[str, int]
    ledger_transactions: int
    cpu_s: float
    """This process's CPU time from the job's start to the last commit, every thread."""

    @property
    def per_s(self) -> float:
        return rate(self.plans, self.seconds)

    @property
    def cpu_ms_per_plan(self) -> float:
        return round(self.cpu_s * MS_PER_S / self.plans, 3)


# Each changes the pinned settings in one way; "{input}" is the pass's input topic.
SUPPLEMENTARY: dict[str, dict[str, str]] = {
    "exactly_once": {"processing_guarantee": "exactly_once"},
    "kafka_ledger": {"ledger": "kafka", "topic_ledger_changelog": "{input}-ledger"},
}


def timeout_for(plans: int) -> float:
    return max(TIMEOUT_FLOOR_S, plans * SECONDS_PER_PLAN_LIMIT)


def drain_with_job(
    kafka: Kafka,
    topics: JobTopics,
    backlog: Backlog,
    ledger_path: Path,
    group: str,
    changes: Mapping[str, Any] | None = None,
) -> JobResult:
    """Run the job over ``backlog`` until every offset is committed, then stop it.

    ``changes`` are settings that differ from the pinned ones (a supplementary pass)."""
    pinned = job_settings(kafka.bootstrap_servers, topics, group, ledger_path)
    settings = pinned.model_copy(update=dict(changes or {}))
    ledger = open_ledger(settings)
    broker = paper_broker()
    driver = JobDriver(settings, broker, ledger)
    try:
        cpu_started_s = time.process_time()
        driver.start()
        finished_s = driver.wait_committed(backlog.end_offsets, timeout_for(backlog.plans))
        cpu_s = time.process_time() - cpu_started_s
        started_s = driver.first_received_s or finished_s
        driver.stop()
        transactions = int(getattr(ledger, "transactions", 0))
    finally:
        driver.abort()
        ledger.close()
        broker.close()
    seconds = finished_s - started_s
    return JobResult(backlog.plans, seconds, driver.kinds, transactions, cpu_s)


def run(
    kafka: Kafka,
    workspace: Workspace,
    plans: int,
    profile: tuple[Path, int] | None = None,
    normal_plans: int = 0,
) -> tuple[dict[str, Any], Processed]:
    """Measure the bare loop, then the job, on one backlog; optionally profile a second pass
    and measure the job with ledger_synchronous=NORMAL (``normal_plans`` > 0)."""
    bootstrap = kafka.bootstrap_servers
    topics = JobTopics.create(bootstrap, "throughput")
    bare_outputs = (topics.trade_executed + "-bare", topics.workflow_completed + "-bare")
    create_topics(bootstrap, bare_outputs)
    backlog = preload(bootstrap, topics.input, plans)
    bare = bare_pipeline(bootstrap, topics.input, bare_outputs, plans, new_group("bare"))
    ledger_path = workspace.ledger_path("throughput")
    ours = drain_with_job(kafka, topics, backlog, ledger_path, new_group("job"))
    result: dict[str, Any] = {
        "plans": plans,
        "preload_s": round(backlog.produce_s, 2),
        "preload_plans_per_s": rate(plans, backlog.produce_s),
        "ours_plans_per_s": ours.per_s,
        "ours_s": round(ours.seconds, 3),
        "baseline_plans_per_s": bare.per_s,
        "baseline_s": round(bare.seconds, 3),
        "ratio": ratio(ours.per_s, bare.per_s),
        "ours_cpu_ms_per_plan": ours.cpu_ms_per_plan,
        "baseline_cpu_ms_per_plan": bare.cpu_ms_per_record,
        "ledger_write_transactions": ours.ledger_transactions,
        "ledger_writes_per_plan": round(ours.ledger_transactions / plans, 2),
        "job_counts": ours.counts,
    }
    if normal_plans > 0:
        result["supplementary_ledger_normal"] = ledger_normal_pass(kafka, workspace, normal_plans)
        for name, changes in SUPPLEMENTARY.items():
            try:
                passed = supplementary_pass(kafka, workspace, normal_plans, name, changes)
            except (TimeoutError, RuntimeError) as exc:  # a supplementary figure is optional
                result[f"supplementary_{name}"] = {"status": "failed", "error": repr(exc)}
                continue
            passed["ratio_to_pinned"] = ratio(passed["ours_plans_per_s"], ours.per_s)
            result[f"supplementary_{name}"] = passed
    if profile is not None:
        result["profile"] = profile_pass(kafka, workspace, *profile)
    return result, Processed(topics, backlog, ledger_path)


def profile_pass(kafka: Kafka, workspace: Workspace, html: Path, plans: int) -> dict[str, Any]:
    """A separate, profiled run over a fresh backlog; its rate is not a headline figure."""
    topics = JobTopics.create(kafka.bootstrap_servers, "profile")
    backlog = preload(kafka.bootstrap_servers, topics.input, plans)
    ledger_path = workspace.ledger_path("profile")
    result, summary = profiled(
        html, lambda: drain_with_job(kafka, topics, backlog, ledger_path, new_group("profile"))
    )
    return {"plans": plans, "plans_per_s_while_profiled": result.per_s, **summary}


def ledger_normal_pass(kafka: Kafka, workspace: Workspace, plans: int) -> dict[str, Any]:
    """Supplementary, outside the pinned setup: the same job with ledger_synchronous=NORMAL.

    The gap to the pinned figure is what the ledger's fsyncs (synchronous=FULL) cost.
    """
    topics = JobTopics.create(kafka.bootstrap_servers, "normal")
    backlog = preload(kafka.bootstrap_servers, topics.input, plans)
    ledger_path = workspace.ledger_path("normal")
    result = drain_with_job(
        kafka, topics, backlog, ledger_path, new_group("normal"), {"ledger_synchronous": "NORMAL"}
    )
    return {
        "plans": plans,
        "ours_plans_per_s": result.per_s,
        "ours_cpu_ms_per_plan": result.cpu_ms_per_plan,
        "job_counts": result.counts,
    }


def supplementary_pass(
    kafka: Kafka, workspace: Workspace, plans: int, name: str, changes: Mapping[str, Any]
) -> dict[str, Any]:
    """Supplementary, outside the pinned setup: the same job with ``changes``; its ratio to
    the pinned figure is what the change costs here (transactions, the Kafka ledger)."""
    topics = JobTopics.create(kafka.bootstrap_servers, name.replace("_", "-"))
    backlog = preload(kafka.bootstrap_servers, topics.input, plans)
    ledger_path = workspace.ledger_path(name)
    variant = {k: v.format(input=topics.input) for k, v in changes.items()}
    result = drain_with_job(kafka, topics, backlog, ledger_path, new_group(name), variant)
    return {
        "plans": plans,
        "settings": variant,
        "ours_plans_per_s": result.per_s,
        "ours_cpu_ms_per_plan": result.cpu_ms_per_plan,
        "job_counts": result.counts,
    }
