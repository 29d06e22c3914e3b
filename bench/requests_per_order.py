"""Scenario 5, HTTP requests per order against the fake Alpaca server.

Runs only when ``rebalance_stream.brokers.fake_alpaca`` and ``rebalance_stream.brokers.alpaca``
import and their tests pass. Plans go through the whole pipeline in-process (no Kafka) with the
real AlpacaBroker talking HTTP to the fake venue; the venue counts every request it gets.
The baseline is the floor of one request per order (the submit itself).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import ITEMS_PER_PLAN, paper_account, plan_record, utc_timestamp

MODULES = ("rebalance_stream.brokers.fake_alpaca", "rebalance_stream.brokers.alpaca")
TESTS_GLOB = "test_*alpaca*.py"
TESTS_TIMEOUT_S = 120
UNLIMITED_PER_MIN = 1_000_000
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
    """Run ``plans`` plans of 5 orders against the fake venue; requests per order placed."""
    from rebalance_stream.brokers.alpaca import AlpacaBroker, AlpacaConfig
    from rebalance_stream.brokers.fake_alpaca import (
        FakeAlpacaConfig,
        FakeAlpacaServer,
    )
    from rebalance_stream.ledger.sqlite import SqliteLedger
    from rebalance_stream.operators.flow import InputRecord, SourcePosition
    from rebalance_stream.streams.pipeline import (
        PipelineConfig,
        PipelineDependencies,
    )
    from rebalance_stream.streams.simulate import run_in_process

    venue = FakeAlpacaConfig.from_paper_account(
        paper_account(), rate_limit_per_min=UNLIMITED_PER_MIN
    )
    run_id = uuid.uuid4().hex[:8]
    timestamp = utc_timestamp()
    now = datetime.now(UTC)
    records = []
    for index in range(plans):
        key, value, _ = plan_record(run_id, index, timestamp)
        position = SourcePosition("bench-alpaca", 0, index)
        records.append(InputRecord(position, key, value, (), now))
    with tempfile.TemporaryDirectory() as tmp, FakeAlpacaServer(venue) as server:
        config = AlpacaConfig(
            key_id=venue.api_key_id,
            secret_key=venue.secret_key,
            base_url=server.base_url,
            data_url=server.base_url,
            rate_limit_per_minute=UNLIMITED_PER_MIN,
        )
        ledger = SqliteLedger(Path(tmp) / "ledger.sqlite")
        with AlpacaBroker(config) as broker:
            deps = PipelineDependencies(broker=broker, ledger=ledger)
            dispositions = run_in_process(records, PipelineConfig(), deps)
        ledger.close()
        counts = server.request_counts()
        orders = len(server.order_requests())
    requests = sum(counts.values())
    per_order = round(requests / orders, 2) if orders else None
    return {
        "plans": plans,
        "dispositions": len(dispositions),
        "orders_placed": orders,
        "orders_expected": plans * ITEMS_PER_PLAN,
        "http_requests": requests,
        "requests_per_order": per_order,
        "baseline_requests_per_order": 1.0,
        "ratio": per_order,
        "by_endpoint_per_order": {
            f"{method} {path}": round(count / orders, 2) if orders else None
            for (method, path), count in sorted(counts.items())
        },
    }
