"""Scenario 3, replay: the throughput topic again from offset 0, every plan a duplicate.

A new consumer group and the throughput run's SQLite ledger, reopened as after a restart:
each plan is found in the ledger, and nothing is published. The baseline is the bare consume
rate (consume and ``json.loads``) over the same topic. A pass takes about a second, so a pause
of the machine moves one pass's rate a lot: the two alternate for ``ROUNDS`` passes each, and
the figures are the medians (every pass is kept in ``rounds``).
"""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Any

from bench.baseline import bare_consume
from bench.common import Kafka, new_group, ratio
from bench.profiling import profiled
from bench.throughput import JobResult, Processed, drain_with_job

ROUNDS = 3
"""Passes of each, alternating: the bare consume, then the job's replay."""


def run(kafka: Kafka, processed: Processed, profile_html: Path | None = None) -> dict[str, Any]:
    """The bare consume rate and the job's replay, ``ROUNDS`` times each, alternating; with
    ``profile_html``, a profiled replay."""
    backlog = processed.backlog

    def replay() -> JobResult:
        topics, ledger = processed.topics, processed.ledger_path
        return drain_with_job(kafka, topics, backlog, ledger, new_group("replay"))

    topic = backlog.topic
    rounds = []
    for _ in range(ROUNDS):
        bare = bare_consume(kafka.bootstrap_servers, topic, backlog.plans, new_group("bare"))
        ours = replay()
        rounds.append((bare, ours))
    bare_rate = median(bare.per_s for bare, _ in rounds)
    ours_rate = median(ours.per_s for _, ours in rounds)
    result: dict[str, Any] = {
        "plans": backlog.plans,
        "ours_plans_per_s": ours_rate,
        "baseline_plans_per_s": bare_rate,
        "ratio": ratio(ours_rate, bare_rate),
        "ours_cpu_ms_per_plan": median(ours.cpu_ms_per_plan for _, ours in rounds),
        "baseline_cpu_ms_per_plan": median(bare.cpu_ms_per_record for bare, _ in rounds),
        "ledger_write_transactions": ours.ledger_transactions,
        "job_counts": ours.counts,
        "rounds": [
            {"baseline_plans_per_s": bare.per_s, "ours_plans_per_s": ours.per_s}
            for bare, ours in rounds
        ],
    }
    if profile_html is not None:
        again, summary = profiled(profile_html, replay)
        result["profile"] = {"plans_per_s_while_profiled": again.per_s, **summary}
    return result
