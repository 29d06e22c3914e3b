"""What every scenario shares: the broker, topics, plans, the pinned job setup, and measures.

The setup is pinned so that figures compare across runs: ``at_least_once``, the SQLite ledger,
6 input partitions, 50 accounts, plans of 5 items (2 sells, then 3 buys), and the paper broker
with instant fills.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # type: ignore[import-untyped]

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.brokers.paper_account import PaperAccount
from rebalance_stream.streams.local_kafka import (
    KAFKA_VERSION,
    LocalKafka,
    create_topics,
    fetch_jars,
)

BOOTSTRAP_ENV = "REBALANCE_STREAM_KAFKA_BOOTSTRAP_SERVERS"
INPUT_PARTITIONS = 6
ACCOUNTS = 50
ITEMS_PER_PLAN = 5
OUTPUTS_PER_PLAN = 2
SESSION_TIMEOUT_MS = 6000
JOB_POLL_S = 0.01
GROUP_OFFSETS_POLL_S = 0.05
STOP_TIMEOUT_S = 60.0
MS_PER_S = 1000

SELLS = (("SPY", "500.00"), ("QQQ", "400.00"))
BUYS = (("VTI", "250.00"), ("IWM", "200.00"), ("GLD", "190.00"))
TRADE_DOLLARS = "100.00"
# Plenty of everything: 200,000 plans sell $100 of SPY and QQQ and buy $100 of three others.
PAPER_CASH = "1000000000.00"
PAPER_HOLDING = "10000000"


@dataclass(frozen=True, slots=True)
class Kafka:
    """The broker the benchmark talks to."""

    bootstrap_servers: str
    version: str


@contextlib.contextmanager
def kafka_broker(workdir: Path) -> Iterator[Kafka]:
    """REBALANCE_STREAM_KAFKA_BOOTSTRAP_SERVERS if set, else a LocalKafka in ``workdir``."""
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        yield Kafka(external, f"external (local default would be {KAFKA_VERSION})")
        return
    broker = LocalKafka(workdir / "kafka", jars=fetch_jars())
    broker.start()
    try:
        yield Kafka(broker.bootstrap_servers, KAFKA_VERSION)
    finally:
        broker.stop()


@dataclass(frozen=True, slots=True)
class JobTopics:
    """One scenario's input topic and the job's four output topics, all freshly named."""

    input: str
    trade_executed: str
    workflow_completed: str
    workflow_failed: str
    dead_letter: str

    @classmethod
    def create(cls, bootstrap: str, prefix: str) -> JobTopics:
        suffix = uuid.uuid4().hex[:8]
        topics = cls(
            input=f"bench-{prefix}-in-{suffix}",
            trade_executed=f"bench-{prefix}-te-{suffix}",
            workflow_completed=f"bench-{prefix}-wc-{suffix}",
            workflow_failed=f"bench-{prefix}-wf-{suffix}",
            dead_letter=f"bench-{prefix}-dlq-{suffix}",
        )
        create_topics(bootstrap, [topics.input], INPUT_PARTITIONS)
        outputs = [topics.trade_executed, topics.workflow_completed]
        create_topics(bootstrap, [*outputs, topics.workflow_failed, topics.dead_letter])
        return topics


def new_group(prefix: str) -> str:
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"


def utc_timestamp() -> str:
    """Now, as the upstream planner writes it: ISO-8601 with ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _item(symbol: str, action: str, priority: int) -> dict[str, Any]:
    amount = TRADE_DOLLARS if action == "BUY" else f"-{TRADE_DOLLARS}"
    return {
        "symbol": symbol,
        "current_weight": "0.10",
        "target_weight": "0.11" if action == "BUY" else "0.09",
        "weight_diff": "0.01" if action == "BUY" else "-0.01",
        "target_value": "11000.00" if action == "BUY" else "9000.00",
        "current_value": "10000.00",
        "trade_amount": amount,
        "action": action,
        "priority": priority,
    }


_ITEMS = [
    *(_item(symbol, "SELL", rank + 1) for rank, (symbol, _) in enumerate(SELLS)),
    *(_item(symbol, "BUY", rank + 1) for rank, (symbol, _) in enumerate(BUYS)),
]


def account_of(index: int) -> str:
    return f"acct-{index % ACCOUNTS:02d}"


def plan_record(run_id: str, index: int, timestamp: str) -> tuple[bytes, bytes, str]:
    """(key, value, event_id) of plan ``index``: a RebalancePlanned in the upstream format."""
    plan_id = f"{run_id}-{index}"
    event_id = f"evt-{plan_id}"
    account = account_of(index)
    document = {
        "event_id": event_id,
        "correlation_id": f"corr-{plan_id}",
        "causation_id": f"cause-{plan_id}",
        "event_type": "RebalancePlanned",
        "timestamp": timestamp,
        "source_module": "portfolio_v2",
        "source_component": "rebalance_planner",
        "schema_version": "1.0",
        "metadata": None,
        "rebalance_plan": {
            "plan_id": plan_id,
            "correlation_id": f"corr-{plan_id}",
            "causation_id": f"cause-{plan_id}",
            "timestamp": timestamp,
            "items": _ITEMS,
            "total_portfolio_value": "100000.00",
            "total_trade_value": "500.00",
            "max_drift_tolerance": "0.05",
            "execution_urgency": "NORMAL",
            "estimated_duration_minutes": None,
            "metadata": None,
            "account_id": account,
        },
        "allocation_comparison": {
            "target_values": {item["symbol"]: item["target_value"] for item in _ITEMS},
            "current_values": {item["symbol"]: item["current_value"] for item in _ITEMS},
            "deltas": {item["symbol"]: item["trade_amount"] for item in _ITEMS},
        },
        "trades_required": True,
    }
    return account.encode(), json.dumps(document).encode(), event_id


def bulk_producer(bootstrap: str) -> Any:
    """A producer for pre-loading backlogs: large batches, acks=all."""
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
    )


@dataclass(frozen=True, slots=True)
class Backlog:
    """Plans pre-loaded into a topic."""

    topic: str
    plans: int
    produce_s: float
    end_offsets: dict[Any, int]


def preload(bootstrap: str, topic: str, plans: int, run_id: str | None = None) -> Backlog:
    """Publish ``plans`` plans into ``topic`` and wait until all are acknowledged."""
    run_id = run_id or uuid.uuid4().hex[:8]
    timestamp = utc_timestamp()
    producer = bulk_producer(bootstrap)
    started = time.perf_counter()
    for index in range(plans):
        key, value, _ = plan_record(run_id, index, timestamp)
        producer.send(topic, key=key, value=value)
    producer.flush()
    produce_s = time.perf_counter() - started
    producer.close()
    return Backlog(topic, plans, produce_s, end_offsets(bootstrap, topic))


def end_offsets(bootstrap: str, topic: str) -> dict[Any, int]:
    """Every partition's end offset; empty partitions left out (nothing to commit there)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    return {tp: offset for tp, offset in ends.items() if offset > 0}


def paper_account(latency_ms: int = 0) -> PaperAccount:
    """Instant fills, every symbol fractionable, and enough cash and shares for any run."""
    prices = dict(SELLS + BUYS)
    return PaperAccount(
        cash=Decimal(PAPER_CASH),
        positions={symbol: Decimal(PAPER_HOLDING) for symbol, _ in SELLS},
        prices={symbol: Decimal(price) for symbol, price in prices.items()},
        fractionable=frozenset(prices),
        market="open",
        latency_ms=latency_ms,
    )


def paper_broker(latency_ms: int = 0) -> PaperBroker:
    broker = PaperBroker(paper_account(latency_ms))
    broker.start()
    return broker


class CountingBroker:
    """Passes every call to the paper broker and counts it by method name."""

    def __init__(self, inner: PaperBroker) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls[name] += 1
            return attribute(*args, **kwargs)

        return counted

    def per_plan(self, plans: int) -> dict[str, float]:
        with self._lock:
            calls = dict(self.calls)
        result = {name: round(count / plans, 2) for name, count in sorted(calls.items())}
        result["total"] = round(sum(calls.values()) / plans, 2)
        return result


@dataclass
class Workspace:
    """A temporary directory for ledgers and the local broker, removed at the end."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-")))

    def ledger_path(self, name: str) -> Path:
        return self.root / f"{name}-{uuid.uuid4().hex[:8]}.sqlite"


def rss_bytes() -> int:
    """This process's resident set size: psutil when installed, else /proc/self/status."""
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no psutil and no VmRSS in /proc/self/status") from None
    return int(psutil.Process().memory_info().rss)


def rss_source() -> str:
    return "psutil" if importlib.util.find_spec("psutil") else "/proc/self/status VmRSS"


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (0 < fraction <= 1)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def latency_summary(latencies_ms: Iterable[float]) -> dict[str, float]:
    values = list(latencies_ms)
    summary = {name: round(percentile(values, q), 2) for name, q in PERCENTILES}
    summary["max"] = round(max(values), 2) if values else math.nan
    summary["count"] = len(values)
    return summary


def ratio(ours: float, baseline: float) -> float | None:
    if not baseline or math.isnan(baseline) or math.isnan(ours):
        return None
    return round(ours / baseline, 3)


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else math.nan
