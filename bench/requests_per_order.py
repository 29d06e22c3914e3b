"""Scenario 5, HTTP requests per order against the fake Alpaca server.

Runs only when ``rebalance_stream.brokers.fake_alpaca`` and ``rebalance_stream.brokers.alpaca``
import and their tests pass. Plans go through the whole pipeline in-process (no Kafka) with the
real AlpacaBroker talking HTTP to the fake venue; the venue counts every request it gets.
The baseline is the floor of one request per order (the submit itself). The run is made twice:
following orders on the trade-updates stream, and polling them over REST.
"""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
import tempfile
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.alpaca_venue import fake_alpaca_adapter_config
from bench.common import (
    ITEMS_PER_PLAN,
    paper_account,
    plan_record,
    utc_timestamp,
)

MODULES = ("rebalance_stream.brokers.fake_alpaca", "rebalance_stream.brokers.alpaca")
TESTS_GLOB = "test_*alpaca*.py"
TESTS_TIMEOUT_S = 120
UNLIMITED_PER_MIN = 1_000_000
FILL_DELAY_MS = 50
POLL_INTERVAL_S = 0.05
CONNECT_TIMEOUT_S = 10.0
REPO_ROOT = Path(__file__).resolve().parent.parent


def availability() -> str | None:
    """None when both modules import and their tests pass, else why not."""
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:
            return f"not available: {name} does not import ({type(exc).__name__}: {exc})"
    tests = sorted((REPO_ROOT / "tests" / "brokers").glob(TESTS_GLOB))
    if not tests:
        return "not available: no tests/brokers/test_*alpaca*.py to vouch for the adapter"
    try:
        result = subprocess.run(  # noqa: S603 - this interpreter running pytest on our tests
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, tests)],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO_ROOT,
            timeout=TESTS_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return f"not available: the Alpaca tests did not finish within {TESTS_TIMEOUT_S} s"
    if result.returncode != 0:
        last = (result.stdout.strip().splitlines() or ["no output"])[-1]
        return f"not available: the Alpaca tests fail ({last})"
    return None


def measure(plans: int) -> dict[str, Any]:
    """Run ``plans`` plans of 5 orders twice against the fake venue, whose fills come 50 ms
    after the submit (as a real venue's do): once following orders on the trade-updates
    stream, once polling them over REST. Requests per order placed, in total and on the
    order endpoints alone."""
    streaming = _run(plans, stream=True)
    polling = _run(plans, stream=False)
    per_order = streaming["requests_per_order"]
    return {
        "plans": plans,
        "fill_delay_ms": FILL_DELAY_MS,
        "requests_per_order": per_order,
        "order_requests_per_order": streaming["order_requests_per_order"],
        "baseline_requests_per_order": 1.0,
        "ratio": per_order,
        "streaming": streaming,
        "polling": polling,
    }


def _run(plans: int, *, stream: bool) -> dict[str, Any]:
    from rebalance_stream.brokers.alpaca import AlpacaBroker
    from rebalance_stream.brokers.alpaca_trade_updates import trade_updates_for
    from rebalance_stream.brokers.fake_alpaca import Delayed, FakeAlpacaConfig, FakeAlpacaServer
    from rebalance_stream.ledger.sqlite import SqliteLedger
    from rebalance_stream.operators.execution_config import ExecutionConfig
    from rebalance_stream.streams.pipeline import PipelineConfig, PipelineDependencies
    from rebalance_stream.streams.simulate import run_in_process

    venue = FakeAlpacaConfig.from_paper_account(
        paper_account(), rate_limit_per_min=UNLIMITED_PER_MIN
    )
    venue = replace(venue, account=replace(venue.account, default_fill=Delayed(FILL_DELAY_MS)))
    records = _records(plans)
    pipeline = PipelineConfig(execution=ExecutionConfig(poll_interval_s=POLL_INTERVAL_S))
    with tempfile.TemporaryDirectory() as tmp, FakeAlpacaServer(venue) as server:
        config = fake_alpaca_adapter_config(server, UNLIMITED_PER_MIN)
        ledger = SqliteLedger(Path(tmp) / "ledger.sqlite")
        with AlpacaBroker(config) as broker, contextlib.ExitStack() as stack:
            watch = book = None
            if stream:
                watch = stack.enter_context(trade_updates_for(config, broker))
                watch.wait_connected(CONNECT_TIMEOUT_S)
                book = watch.account_book
            deps = PipelineDependencies(
                broker=broker, ledger=ledger, order_watch=watch, account=book
            )
            dispositions = run_in_process(records, pipeline, deps)
        ledger.close()
        counts = server.request_counts()
        orders = len(server.order_requests())
    requests = sum(counts.values())
    order_requests = sum(n for (_, path), n in counts.items() if path.startswith("/v2/orders"))
    return {
        "dispositions": len(dispositions),
        "orders_placed": orders,
        "orders_expected": plans * ITEMS_PER_PLAN,
        "http_requests": requests,
        "requests_per_order": _per(requests, orders),
        "order_requests_per_order": _per(order_requests, orders),
        "account_book": asdict(book.stats) if book is not None else None,
        "by_endpoint_per_order": {
            f"{method} {path}": _per(count, orders)
            for (method, path), count in sorted(counts.items())
        },
    }


def _records(plans: int) -> list[Any]:
    from rebalance_stream.operators.flow import InputRecord, SourcePosition

    run_id = uuid.uuid4().hex[:8]
    timestamp = utc_timestamp()
    now = datetime.now(UTC)
    records = []
    for index in range(plans):
        key, value, _ = plan_record(run_id, index, timestamp)
        records.append(InputRecord(SourcePosition("bench-alpaca", 0, index), key, value, (), now))
    return records


def _per(count: int, orders: int) -> float | None:
    return round(count / orders, 2) if orders else None
