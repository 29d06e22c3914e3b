"""A portfolio scenario whose end state is exact: whole-share orders at $100, known positions.

Plan i sells 1 share of one symbol and buys 2 shares of each of two others, so the positions
after any set of plans executed exactly once are known in advance.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from plan_factory import Trade, planned

SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]
START_QTY = 1000
PRICE = "100.00"
ORDERS_PER_PLAN = 3


def plan_trades(i: int) -> list[Trade]:
    sell, buy_a, buy_b = (SYMBOLS[(i + k) % len(SYMBOLS)] for k in range(3))
    return [
        Trade(sell, "SELL", "-100.00", 1),
        Trade(buy_a, "BUY", "200.00", 2),
        Trade(buy_b, "BUY", "200.00", 3),
    ]


def plan_messages(count: int, accounts: int = 4) -> list[tuple[bytes, bytes]]:
    """(key, value) of each plan, keyed by account."""
    messages = []
    for i in range(count):
        account = f"acct-{i % accounts}"
        document = planned(f"plan-{i:03d}", plan_trades(i), account_id=account)
        messages.append((account.encode(), json.dumps(document).encode()))
    return messages


def expected_positions(count: int) -> dict[str, Decimal]:
    moves: Counter[str] = Counter()
    for i in range(count):
        sell, buy_a, buy_b = (t.symbol for t in plan_trades(i))
        moves[sell] -= 1
        moves[buy_a] += 2
        moves[buy_b] += 2
    return {symbol: Decimal(START_QTY + moves[symbol]) for symbol in SYMBOLS}


def write_account(path: Path, latency_ms: int) -> Path:
    account: dict[str, Any] = {
        "cash": "1000000.00",
        "positions": {symbol: str(START_QTY) for symbol in SYMBOLS},
        "prices": dict.fromkeys(SYMBOLS, PRICE),
        "market": "open",
        "fill": {"default": "immediate"},
        "latency_ms": latency_ms,
    }
    path.write_text(json.dumps(account), encoding="utf-8")
    return path
