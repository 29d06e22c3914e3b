"""Scenario 6's peer: the consume-validate-produce job as a plain Quix Streams application.

It runs in its own virtualenv (``bench/peer_requirements.txt``), started by ``bench.peer``::

    python bench/peer_app.py BOOTSTRAP INPUT OUTPUT PLANS GROUP [--state-dir DIR]

Each input record is ``json.loads`` (floats as Decimal), validated as a ``RebalancePlanned``
and turned into two output records (as ``bench.baseline._outputs``), keyed by the input key.
It drains INPUT from the earliest offset, stops once every partition is processed, waits for
the group's committed offsets to reach the end offsets measured at start, and prints one
JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from importlib.metadata import version
from typing import Any

import confluent_kafka
from quixstreams import Application

from rebalance_stream.contracts.rebalance import RebalancePlanned

# acks=all and idempotent like the job's producer; linger.ms is librdkafka's default (5 ms):
# the simplest application keeps it, and librdkafka is built around its batches.
PRODUCER_CONFIG: dict[str, Any] = {"acks": "all", "enable.idempotence": True, "linger.ms": 5}
COMMIT_POLL_S = 0.005
KAFKA_TIMEOUT_S = 30.0
MS_PER_S = 1000


def cpu_s() -> float:
    """This process's CPU time so far, every thread (librdkafka's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def outputs(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Two records about the size of the job's TradeExecuted and WorkflowCompleted."""
    plan = document["rebalance_plan"]
    items = plan["items"]
    trade = {
        "event_type": "TradeExecuted",
        "event_id": document["event_id"] + ":te",
        "correlation_id": document["correlation_id"],
        "causation_id": document["event_id"],
        "plan_id": plan["plan_id"],
        "account_id": plan["account_id"],
        "orders": [
            {**item, "status": "filled", "filled_qty": "0.2", "filled_avg_price": "500"}
            for item in items
        ],
    }
    completed = {
        "event_type": "WorkflowCompleted",
        "event_id": document["event_id"] + ":wc",
        "correlation_id": document["correlation_id"],
        "causation_id": document["event_id"],
        "summary": {"orders_placed": len(items), "orders_filled": len(items)},
    }
    return [trade, completed]


def plan_outputs(value: bytes) -> list[dict[str, Any]]:
    document = json.loads(value, parse_float=Decimal)
    RebalancePlanned.model_validate(document)
    return outputs(document)


def headers_of(value: dict[str, Any], *_: Any) -> list[tuple[str, bytes]]:
    return [
        ("event_type", value["event_type"].encode()),
        ("correlation_id", value["correlation_id"].encode()),
        ("causation_id", value["causation_id"].encode()),
    ]


class Progress:
    """Counts processed records; stops the app once every partition reached its end."""

    def __init__(self, ends: dict[int, int]) -> None:
        self._last = {partition: end - 1 for partition, end in ends.items()}
        self.stop: Callable[[], None] = lambda: None
        self.records = 0
        self.first_s: float | None = None
        self.first_cpu_s = 0.0
        self.drained = threading.Event()

    def processed(self, _topic: str, partition: int, offset: int) -> None:
        if self.first_s is None:
            self.first_s, self.first_cpu_s = time.time(), cpu_s()
        self.records += 1
        if offset >= self._last.get(partition, offset + 1):
            del self._last[partition]
            if not self._last:
                self.drained.set()
                self.stop()


class Commits:
    """The input's end offsets at start, and when the group's commits reached them."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        config = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        self._consumer = confluent_kafka.Consumer(config)
        metadata = self._consumer.list_topics(topic, timeout=KAFKA_TIMEOUT_S)
        self.ends: dict[int, int] = {}
        for partition in metadata.topics[topic].partitions:
            low, high = self._consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, partition), timeout=KAFKA_TIMEOUT_S
            )
            if high > low:
                self.ends[partition] = high
        self._topic = topic
        self.committed_s: float | None = None
        self.committed_cpu_s = 0.0

    def reached(self) -> bool:
        partitions = [confluent_kafka.TopicPartition(self._topic, p) for p in self.ends]
        committed = self._consumer.committed(partitions, timeout=KAFKA_TIMEOUT_S)
        return all(tp.offset >= self.ends[tp.partition] for tp in committed)

    def watch(self, drained: threading.Event) -> threading.Thread:
        """From ``drained`` on, poll the group's commits until they reach the end offsets."""

        def poll() -> None:
            drained.wait()
            while not self.reached():
                time.sleep(COMMIT_POLL_S)
            self.committed_s, self.committed_cpu_s = time.time(), cpu_s()

        thread = threading.Thread(target=poll, name="peer-commits", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._consumer.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("plans", type=int, help="how many plans the input holds")
    parser.add_argument("group")
    parser.add_argument("--state-dir", default="state", help="Quix's state directory (unused)")
    return parser.parse_args(argv)


def build(args: argparse.Namespace, progress: Progress) -> Application:
    """The simplest Quix Streams application for the job: apply, expand, headers, to_topic."""
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        producer_extra_config=PRODUCER_CONFIG,
        state_dir=args.state_dir,
        loglevel="WARNING",
        on_message_processed=progress.processed,
    )
    progress.stop = app.stop
    source = app.topic(args.input, key_deserializer="bytes", value_deserializer="bytes")
    sink = app.topic(args.output, key_serializer="bytes", value_serializer="json")
    sdf = app.dataframe(source)
    sdf = sdf.apply(plan_outputs, expand=True).set_headers(headers_of)
    sdf.to_topic(sink)
    return app


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    commits = Commits(args.bootstrap, args.group, args.input)
    if not commits.ends:
        print(f"nothing to process: {args.input} is empty", file=sys.stderr)
        return 1
    progress = Progress(commits.ends)
    app = build(args, progress)
    watcher = commits.watch(progress.drained)
    app.run()
    watcher.join(KAFKA_TIMEOUT_S)
    commits.close()
    if progress.first_s is None or commits.committed_s is None:
        print(f"not drained: {progress.records}/{args.plans} records", file=sys.stderr)
        return 1
    seconds = commits.committed_s - progress.first_s
    span_cpu_s = commits.committed_cpu_s - progress.first_cpu_s
    result = {
        "plans": progress.records,
        "expected_plans": args.plans,
        "seconds": round(seconds, 3),
        "plans_per_s": round(progress.records / seconds, 1),
        "cpu_s": round(span_cpu_s, 3),
        "cpu_ms_per_plan": round(span_cpu_s * MS_PER_S / progress.records, 3),
        "process_cpu_s": round(cpu_s(), 3),
        "producer_config": PRODUCER_CONFIG,
        "commit_interval_s": app.config.commit_interval,
        "quixstreams": version("quixstreams"),
        "confluent_kafka": version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "pydantic": version("pydantic"),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
