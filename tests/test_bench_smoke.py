"""``python -m bench --smoke`` against the session's broker: every scenario reports something."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.kafka

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = (
    "throughput",
    "replay",
    "latency",
    "memory",
    "requests_per_order",
    "execution_slippage",
    "peer_quixstreams",
)
SMOKE_TIMEOUT_S = 120


def headline(name: str, result: dict[str, Any]) -> float:
    """The one number each measured scenario must report."""
    if name == "latency":
        return float(result["paper_0ms"]["latency_ms"]["p99"])
    if name == "memory":
        return float(result["growth"])
    if name == "requests_per_order":
        return float(result["requests_per_order"])
    if name == "execution_slippage":
        return float(result["strategies"]["market quotes_only"]["slippage_bps"])
    if name == "peer_quixstreams":  # measured only when the peer's virtualenv exists
        return float(result["plans_per_s"])
    return float(result["ratio"])


def test_bench_smoke_every_scenario_reports_a_number_or_a_skip_reason(
    kafka_broker: str, tmp_path: Path
) -> None:
    output = tmp_path / "latest.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REBALANCE_STREAM_")}
    env["REBALANCE_STREAM_KAFKA_BOOTSTRAP_SERVERS"] = kafka_broker

    completed = subprocess.run(  # noqa: S603 - this interpreter, our own module
        [sys.executable, "-m", "bench", "--smoke", "--output", str(output)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-4000:]
    document = json.loads(output.read_text())
    assert {"cpu_count", "python", "kafka", "date"} <= document["machine"].keys()
    assert document["config"]["smoke"] is True
    scenarios = document["scenarios"]
    assert set(scenarios) == set(SCENARIOS)
    for name, result in scenarios.items():
        if result["status"] == "skipped":
            assert result["reason"], name
        else:
            assert result["status"] == "measured", (name, result)
            assert math.isfinite(headline(name, result)), name
    assert {t["verdict"] for t in document["targets"]} <= {"pass", "fail", "not measured"}
    # The chart needs the `bench` extra (matplotlib); without it the JSON says why.
    chart = output.with_suffix(".png")
    assert chart.is_file() or document["chart"].startswith("no chart"), document["chart"]
