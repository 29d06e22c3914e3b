"""Scenario 3, replay: the throughput topic again from offset 0, every plan a duplicate.

A new consumer group and the throughput run's SQLite ledger, reopened as after a restart:
each plan is decoded, validated and found in the ledger, and nothing is published. The
baseline is the bare consume rate (consume and ``json.loads``) over the same topic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.baseline import bare_consume
from bench.common import Kafka, new_group, ratio
from bench.profiling import profiled
from bench.throughput import JobResult, Processed, drain_with_job


def run(kafka: Kafka, processed: Processed, profile_html: Path | None = None) -> dict[str, Any]:
    """The bare consume rate, then the job's replay; with ``profile_html``, a profiled replay."""
    backlog = processed.backlog

    def replay() -> JobResult:
        topics, ledger = processed.topics, processed.ledger_path
        return drain_with_job(kafka, topics, backlog, ledger, new_group("replay"))

    bare = bare_consume(kafka.bootstrap_servers, backlog.topic, backlog.plans, new_group("bare"))
    ours = replay()
    result: dict[str, Any] = {
        "plans": backlog.plans,
        "ours_plans_per_s": ours.per_s,
        "ours_s": round(ours.seconds, 3),
        "baseline_plans_per_s": bare.per_s,
        "baseline_s": round(bare.seconds, 3),
        "ratio": ratio(ours.per_s, bare.per_s),
        "ours_cpu_ms_per_plan": ours.cpu_ms_per_plan,
        "baseline_cpu_ms_per_plan": bare.cpu_ms_per_record,
        "ledger_write_transactions": ours.ledger_transactions,
        "job_counts": ours.counts,
    }
    if profile_html is not None:
        again, summary = profiled(profile_html, replay)
        result["profile"] = {"plans_per_s_while_profiled": again.per_s, **summary}
    return result
