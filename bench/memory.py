"""Scenario 4, memory: RSS while draining a backlog, at 10% and at 100% of the way.

Each side runs in a fresh process (``python -m bench.memory --mode job|bare``), so that
what earlier scenarios left on the heap neither hides nor inflates the growth. The baseline is
the bare consume loop (consume and ``json.loads``) over the same backlog. The paper broker is
a simulated venue that keeps every order it was sent, as a venue's order history does; its
share of the growth is estimated and reported beside the total.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.baseline import bare_consumer
from bench.common import (
    JobTopics,
    Kafka,
    Workspace,
    end_offsets,
    new_group,
    paper_broker,
    preload,
    rate,
    rss_bytes,
    rss_source,
)
from bench.job_driver import JobDriver, job_settings
from bench.throughput import timeout_for
from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.ledger.sqlite import SqliteLedger
from rebalance_stream.streams.logs import configure_logging

MARKS = 10
POLL_TIMEOUT_MS = 200
ORDER_SAMPLE = 200
DICT_ENTRY_BYTES = 40  # the state's by-id dict: hash, key and value slots, plus index slack
MIB = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parent.parent


class RssMarks:
    """RSS at every tenth of the way; ``at(10)`` is the 10% sample."""

    def __init__(self, total: int) -> None:
        self._total = total
        self.samples: dict[int, int] = {}

    def observe(self, done: int) -> None:
        """Sample once per tenth reached; a jump over several tenths samples them all now."""
        reached = min(100, done * 100 // self._total) // MARKS * MARKS
        due = [p for p in range(MARKS, reached + 1, MARKS) if p not in self.samples]
        if due:
            rss = rss_bytes()
            self.samples.update(dict.fromkeys(due, rss))

    def at(self, percent: int) -> int:
        return self.samples[percent]


def _drain_job(bootstrap: str, topics: JobTopics, plans: int, ledger: Path) -> dict[str, Any]:
    ends = end_offsets(bootstrap, topics.input)
    settings = job_settings(bootstrap, topics, new_group("memory"), ledger)
    store = SqliteLedger(settings.ledger, synchronous=settings.ledger_synchronous)
    broker = paper_broker()
    marks = RssMarks(plans)
    driver = JobDriver(settings, broker, store)
    rss_start = rss_bytes()
    try:
        driver.start()
        finished_s = driver.wait_committed(
            ends, timeout_for(plans), on_tick=lambda d: marks.observe(d.dispositions)
        )
        marks.samples[100] = rss_bytes()
        seconds = finished_s - (driver.first_received_s or finished_s)
        driver.stop()
        orders, orders_bytes = _paper_orders_size(broker)
    finally:
        driver.abort()
        store.close()
        broker.close()
    return {
        "rss_start": rss_start,
        "marks": marks.samples,
        "plans_per_s": rate(plans, seconds),
        "paper_orders": orders,
        "paper_orders_bytes_estimate": orders_bytes,
    }


def _paper_orders_size(broker: PaperBroker) -> tuple[int, int]:
    """How many orders the paper broker keeps, and roughly how many bytes they take.

    Each sampled order's own objects are counted once; objects that orders share (a symbol,
    a price, an enum member) are counted once for the whole sample, so they nearly vanish.
    """
    orders = broker.list_orders()
    sample = orders[:: max(1, len(orders) // ORDER_SAMPLE)][:ORDER_SAMPLE]
    if not sample:
        return 0, 0
    seen: set[int] = set()
    total = 0
    for order in sample:
        for part in (order, *(getattr(order, f.name) for f in dataclasses.fields(order))):
            if id(part) not in seen:
                seen.add(id(part))
                total += sys.getsizeof(part)
    per_order = total / len(sample) + DICT_ENTRY_BYTES
    return len(orders), int(len(orders) * per_order)


def _drain_bare(bootstrap: str, topic: str, plans: int) -> dict[str, Any]:
    consumer = bare_consumer(bootstrap, new_group("memory-bare"), topic)
    marks = RssMarks(plans)
    rss_start = rss_bytes()
    done = 0
    started: float | None = None
    try:
        while done < plans:
            batch = consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
            started = started or (time.time() if batch else None)
            for records in batch.values():
                for record in records:
                    json.loads(record.value)
                done += len(records)
            marks.observe(done)
    finally:
        consumer.close(autocommit=False)
    marks.samples[100] = rss_bytes()
    return {
        "rss_start": rss_start,
        "marks": marks.samples,
        "plans_per_s": rate(plans, time.time() - (started or time.time())),
    }


def _child(mode: str, kafka: Kafka, topics: JobTopics, plans: int, extra: list[str]) -> Any:
    command = [
        sys.executable,
        "-m",
        "bench.memory",
        "--mode",
        mode,
        "--bootstrap",
        kafka.bootstrap_servers,
        "--topics",
        json.dumps(dataclasses.asdict(topics)),
        "--plans",
        str(plans),
        *extra,
    ]
    paths = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    result = subprocess.run(  # noqa: S603 - this interpreter, this module, our arguments
        command,
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        env=env,
        timeout=timeout_for(plans) + 120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"memory {mode} child failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _growth(samples: dict[str, Any]) -> dict[str, Any]:
    marks = {int(k): v for k, v in samples["marks"].items()}
    at_10, at_100 = marks[MARKS], marks[100]
    return {
        "rss_start_mib": round(samples["rss_start"] / MIB, 1),
        "rss_10pct_mib": round(at_10 / MIB, 1),
        "rss_100pct_mib": round(at_100 / MIB, 1),
        "growth_10_to_100": round(at_100 / at_10 - 1, 3),
        "rss_curve_mib": {f"{p}%": round(v / MIB, 1) for p, v in sorted(marks.items())},
        "plans_per_s": samples["plans_per_s"],
    }


def run(kafka: Kafka, workspace: Workspace, plans: int, log_level: str) -> dict[str, Any]:
    """Pre-load the backlog here, then drain it in two fresh processes: bare, then the job."""
    topics = JobTopics.create(kafka.bootstrap_servers, "memory")
    backlog = preload(kafka.bootstrap_servers, topics.input, plans)
    bare = _growth(_child("bare", kafka, topics, plans, []))
    ledger = str(workspace.ledger_path("memory"))
    raw = _child("job", kafka, topics, plans, ["--ledger", ledger, "--log-level", log_level])
    ours = _growth(raw)
    paper_mib = raw["paper_orders_bytes_estimate"] / MIB
    growth_mib = ours["rss_100pct_mib"] - ours["rss_10pct_mib"]
    # The paper broker's order book grows by about 90% of its final size between the marks.
    paper_between_mib = paper_mib * (1 - MARKS / 100)
    without_paper = ours["rss_100pct_mib"] - paper_between_mib
    return {
        "plans": plans,
        "preload_s": round(backlog.produce_s, 2),
        "rss_source": rss_source(),
        "ours": ours,
        "baseline_bare_consume": bare,
        "growth": ours["growth_10_to_100"],
        "baseline_growth": bare["growth_10_to_100"],
        "paper_broker": {
            "orders_kept": raw["paper_orders"],
            "orders_mib_estimate": round(paper_mib, 1),
            "share_of_growth_estimate": round(paper_between_mib / growth_mib, 2)
            if growth_mib > 0
            else None,
            "growth_without_paper_orders_estimate": round(
                without_paper / ours["rss_10pct_mib"] - 1, 3
            ),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """The child process: drain the backlog once, print one JSON line of RSS samples."""
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("--mode", choices=("job", "bare"), required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topics", required=True)
    parser.add_argument("--plans", type=int, required=True)
    parser.add_argument("--ledger", type=Path)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    configure_logging(level=args.log_level, stream=sys.stderr)
    topics = JobTopics(**json.loads(args.topics))
    if args.mode == "job":
        if args.ledger is None:
            parser.error("--mode job needs --ledger")
        result = _drain_job(args.bootstrap, topics, args.plans, args.ledger)
    else:
        result = _drain_bare(args.bootstrap, topics.input, args.plans)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
