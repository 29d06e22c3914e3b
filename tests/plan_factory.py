"""Build RebalancePlanned documents exactly as the upstream portfolio service writes them:
timestamps with ``Z``, decimals as strings, ``metadata: null``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

DEFAULT_TIMESTAMP = "2026-11-30T14:30:00Z"


@dataclass(frozen=True)
class Trade:
    symbol: str
    action: str
    trade_amount: str
    priority: int = 3
    target_weight: str = "0.25"
    target_value: str = "10000.00"
    current_value: str = "5000.00"


def item(trade: Trade) -> dict[str, Any]:
    current_weight = "0.10" if trade.current_value != "0" else "0"
    diff = Decimal(trade.target_weight) - Decimal(current_weight)
    return {
        "symbol": trade.symbol,
        "current_weight": current_weight,
        "target_weight": trade.target_weight,
        "weight_diff": format(diff, "f"),
        "target_value": trade.target_value,
        "current_value": trade.current_value,
        "trade_amount": trade.trade_amount,
        "action": trade.action,
        "priority": trade.priority,
    }


def liquidate(symbol: str, amount: str, priority: int = 1) -> Trade:
    """A SELL of the whole position: target weight and value both 0."""
    return Trade(
        symbol,
        "SELL",
        amount,
        priority,
        target_weight="0",
        target_value="0",
        current_value=amount.lstrip("-"),
    )


def planned(
    plan_id: str,
    trades: list[Trade],
    *,
    event_id: str | None = None,
    account_id: str = "acct-1",
    trades_required: bool | None = None,
    timestamp: str = DEFAULT_TIMESTAMP,
) -> dict[str, Any]:
    """A RebalancePlanned document in the upstream wire format."""
    event_id = event_id or f"evt-{plan_id}"
    correlation_id = f"corr-{plan_id}"
    total = sum((abs(Decimal(t.trade_amount)) for t in trades), Decimal(0))
    required = (
        any(t.action != "HOLD" for t in trades) if trades_required is None else trades_required
    )
    return {
        "event_id": event_id,
        "correlation_id": correlation_id,
        "causation_id": f"cause-{plan_id}",
        "event_type": "RebalancePlanned",
        "timestamp": timestamp,
        "source_module": "portfolio_v2",
        "source_component": "rebalance_planner",
        "schema_version": "1.0",
        "metadata": None,
        "rebalance_plan": {
            "plan_id": plan_id,
            "correlation_id": correlation_id,
            "causation_id": f"cause-{plan_id}",
            "timestamp": timestamp,
            "items": [item(t) for t in trades],
            "total_portfolio_value": "100000.00",
            "total_trade_value": format(total, "f"),
            "max_drift_tolerance": "0.05",
            "execution_urgency": "NORMAL",
            "estimated_duration_minutes": None,
            "metadata": None,
            "account_id": account_id,
        },
        "allocation_comparison": {
            "target_values": {t.symbol: t.target_value for t in trades},
            "current_values": {t.symbol: t.current_value for t in trades},
            "deltas": {t.symbol: t.trade_amount for t in trades},
        },
        "trades_required": required,
    }


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2).encode("utf-8")
