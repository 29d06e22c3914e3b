"""The example of composing operators in a user's own pipeline keeps working."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_compose_your_own_example_admits_only_trading_plans() -> None:
    spec = importlib.util.spec_from_file_location(
        "compose_your_own", EXAMPLES / "compose_your_own.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compose_your_own"] = module
    spec.loader.exec_module(module)
    paths = sorted((EXAMPLES / "plans").glob("*.json"))

    summaries = module.plans_that_would_trade(module.records_from(paths))

    assert summaries == [
        {"offset": 0, "plan_id": "plan-rotation-001", "items": 4},
        {"offset": 2, "plan_id": "plan-partial-003", "items": 2},
        {"offset": 7, "plan_id": "plan-too-big-008", "items": 1},
    ]
