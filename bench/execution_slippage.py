"""Slippage of each execution strategy against the fake Alpaca's scripted spreads.

Every symbol of the pinned plan is quoted with a spread of ``SPREAD_BPS`` around a mid that
takes a seeded random walk, one cent up, down or nowhere every ``STEP_MS``. The fake has no
other traders: a resting limit fills only when the quote moves through it. So the walk runs in
two markets: ``quotes_only``, and ``with_takers``, where in each step, with probability
``TAKER_PROBABILITY``, a counterparty trades at the mid (the quote touches the mid for one
step), filling any limit resting at or through it. The same plans run once per strategy
(``market``, ``limit_then_market``) and market through the executor, with the real alpaca-py
adapter and the trade-updates stream. Slippage is each filled item's average price
against the mid it was sized at, in basis points, weighted by filled notional (positive =
worse). The baseline is the half spread: what a market order pays when the mid stands still.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

from bench.alpaca_venue import fake_alpaca_adapter_config
from bench.common import (
    BUYS,
    ITEMS_PER_PLAN,
    SELLS,
    plan_record,
    utc_timestamp,
)

SPREAD_BPS = Decimal(10)
STEP_MS = 25
TICK = Decimal("0.01")
SEED = 20261130
REPEG_AFTER_S = 0.5
MAX_REPEGS = 2
TAKER_PROBABILITY = 0.02
MARKETS = {"quotes_only": 0.0, "with_takers": TAKER_PROBABILITY}
UNLIMITED_PER_MIN = 1_000_000
CONNECT_TIMEOUT_S = 10.0
BPS = Decimal(10_000)


def _quote_of(mid: Decimal) -> Any:
    from rebalance_stream.brokers.fake_alpaca import Quote

    half = (mid * SPREAD_BPS / BPS / 2).quantize(TICK)
    return Quote(mid - half, mid + half)


class QuoteWalk:
    """Moves every symbol's mid by a seeded random tick every STEP_MS, on its own thread; with
    ``taker_probability``, a step quotes the mid on both sides instead (a counterparty at the
    mid)."""

    def __init__(
        self, engine: Any, mids: dict[str, Decimal], seed: int, taker_probability: float
    ) -> None:
        self._engine = engine
        self._mids = dict(mids)
        self._taker_probability = taker_probability
        self._random = random.Random(seed)  # noqa: S311 - a scripted market, not security
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quote-walk", daemon=True)

    def __enter__(self) -> QuoteWalk:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(STEP_MS / 1000):
            for symbol, mid in self._mids.items():
                moved = mid + TICK * self._random.choice((-1, 0, 1))
                self._mids[symbol] = moved
                if self._random.random() < self._taker_probability:
                    self._engine.set_quote(symbol, moved, moved)
                else:
                    quote = _quote_of(moved)
                    self._engine.set_quote(symbol, quote.bid, quote.ask)


def measure(plans: int) -> dict[str, Any]:
    """Run ``plans`` plans with each strategy; their weighted slippage and orders per item."""
    from rebalance_stream.operators.execution_config import ExecutionStrategy

    strategies = {
        f"{strategy.value} {market}": _run(plans, strategy, takers)
        for market, takers in MARKETS.items()
        for strategy in (ExecutionStrategy.MARKET, ExecutionStrategy.LIMIT_THEN_MARKET)
    }
    return {
        "plans": plans,
        "spread_bps": float(SPREAD_BPS),
        "step_ms": STEP_MS,
        "repeg_after_s": REPEG_AFTER_S,
        "max_repegs": MAX_REPEGS,
        "seed": SEED,
        "taker_probability": TAKER_PROBABILITY,
        "baseline_slippage_bps": float(SPREAD_BPS / 2),
        "strategies": strategies,
    }


def _run(plans: int, strategy: Any, taker_probability: float) -> dict[str, Any]:
    from rebalance_stream.brokers.alpaca import AlpacaBroker
    from rebalance_stream.brokers.alpaca_trade_updates import AlpacaTradeUpdates
    from rebalance_stream.brokers.fake_alpaca import (
        FakeAlpacaConfig,
        FakeAlpacaServer,
        VenueAccount,
    )
    from rebalance_stream.contracts.rebalance import RebalancePlanned
    from rebalance_stream.operators.execution_config import ExecutionConfig, PriceSanity
    from rebalance_stream.operators.order_execution import PlanOrderExecutor
    from rebalance_stream.streams.pipeline import utc_now

    mids = {symbol: Decimal(price) for symbol, price in (*SELLS, *BUYS)}
    account = VenueAccount(
        cash=Decimal(10_000_000),
        positions={symbol: Decimal(100_000) for symbol, _ in SELLS},
        quotes={symbol: _quote_of(mid) for symbol, mid in mids.items()},
        fractionable=frozenset(mids),
    )
    venue = FakeAlpacaConfig(account=account, rate_limit_per_min=UNLIMITED_PER_MIN)
    config = ExecutionConfig(
        strategy=strategy,
        repeg_after_s=REPEG_AFTER_S,
        max_repegs=MAX_REPEGS,
        max_concurrent_orders=ITEMS_PER_PLAN,
        price_sanity=PriceSanity(None, None),
    )
    run_id = uuid.uuid4().hex[:8]
    timestamp = utc_timestamp()
    results: list[Any] = []
    with FakeAlpacaServer(venue) as server, QuoteWalk(server.engine, mids, SEED, taker_probability):
        alpaca = fake_alpaca_adapter_config(server, UNLIMITED_PER_MIN)
        with AlpacaBroker(alpaca) as broker, AlpacaTradeUpdates(alpaca, broker) as watch:
            watch.wait_connected(CONNECT_TIMEOUT_S)
            executor = PlanOrderExecutor(broker, config, utc_now, time.sleep, watch=watch)
            for index in range(plans):
                _, value, _ = plan_record(run_id, index, timestamp)
                plan = RebalancePlanned.model_validate_json(value).rebalance_plan
                results.extend(executor.execute(plan, look_up_first=False).orders)
        orders = len(server.order_requests())
    return _summary(results, orders)


def _summary(results: list[Any], orders: int) -> dict[str, Any]:
    filled = [r for r in results if r.slippage_bps is not None and r.filled_qty > 0]
    notional = sum((r.filled_notional for r in filled), Decimal(0))
    weighted = sum((r.slippage_bps * r.filled_notional for r in filled), Decimal(0))
    slippage = float((weighted / notional).quantize(Decimal("0.01"))) if notional else None
    return {
        "orders": len(results),
        "filled_completely": sum(1 for r in results if r.success),
        "slippage_bps": slippage,
        "orders_sent": orders,
        "orders_per_item": round(orders / len(results), 2) if results else None,
        "attempts": {n: sum(1 for r in results if r.attempts == n) for n in range(1, 5)},
    }
