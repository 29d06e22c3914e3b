"""Execution against the fake Alpaca over alpaca-py, following orders on the trade-updates
stream: limit_then_market re-pegs and escalation, a cancel racing a fill, a stream drop in
the middle of the fills, a duplicated fill, and buying power short after the sells."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from alpaca_support import fake_venue_config, started_adapter, streaming, wait_until
from plan_factory import Trade, planned

from rebalance_stream.brokers.fake_alpaca import (
    Delayed,
    FakeAlpacaServer,
    FaultKind,
    Partial,
    Quote,
    VenueAccount,
)
from rebalance_stream.brokers.fake_alpaca.model import OrderQuery
from rebalance_stream.contracts.client_order_id import client_order_id
from rebalance_stream.contracts.execution import OrderSide, SkipReason
from rebalance_stream.contracts.rebalance import RebalancePlan, RebalancePlanned
from rebalance_stream.operators.execution_config import (
    BuyingPowerShortfall,
    ExecutionConfig,
    ExecutionStrategy,
)
from rebalance_stream.operators.order_execution import OrdersOutcome, PlanOrderExecutor
from rebalance_stream.streams.pipeline import utc_now

SPREAD_QUOTES = {
    "SPY": Quote(Decimal("99.00"), Decimal("101.00")),
    "QQQ": Quote(Decimal("399.00"), Decimal("401.00")),
    "TQQQ": Quote(Decimal("80.00"), Decimal("80.00")),
    "AAPL": Quote(Decimal("200.00"), Decimal("200.00")),
}
ORDER_PATH = "/v2/orders/{order_id}"


def plan_of(plan_id: str, trades: list[Trade]) -> RebalancePlan:
    return RebalancePlanned.model_validate(planned(plan_id, trades)).rebalance_plan


def venue_account(**changes: Any) -> VenueAccount:
    defaults: dict[str, Any] = {
        "cash": Decimal(100_000),
        "positions": {"TQQQ": Decimal(100)},
        "quotes": SPREAD_QUOTES,
        "fractionable": frozenset(),
    }
    return VenueAccount(**{**defaults, **changes})


@pytest.fixture
def venue() -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer(fake_venue_config(venue_account())) as server:
        yield server


def execute(
    server: FakeAlpacaServer, plan: RebalancePlan, events: int = 0, **changes: Any
) -> tuple[OrdersOutcome, dict[str, int]]:
    """Run the plan with the stream on; return its outcome and the stream's counters, once
    every event the venue sent (and at least ``events``) was handled."""
    config = ExecutionConfig(**{"poll_interval_s": 0.05, "cancel_grace_s": 5.0, **changes})
    with started_adapter(server) as broker, streaming(server, broker) as updates:
        executor = PlanOrderExecutor(broker, config, utc_now, time.sleep, watch=updates)
        outcome = executor.execute(plan)
        # The venue sends each event before the next; wait for the last one to be handled.
        # An event sent after the plan's end (a duplicated fill) is waited for by ``events``.
        sent = max(events, venue_events_sent(server))
        wait_until(lambda: updates.stats.events >= sent)
        counters = {
            "connections": updates.stats.connections,
            "duplicate_fills": updates.stats.duplicate_fills,
            "catch_up_reads": updates.stats.catch_up_reads,
            "fallback_reads": updates.stats.fallback_reads,
        }
    return outcome, counters


def venue_events_sent(server: FakeAlpacaServer) -> int:
    return server.stream_counters().trade_updates_sent


def venue_orders(
    server: FakeAlpacaServer,
) -> list[tuple[str, str, Decimal | None, Decimal | None, str]]:
    """(client_order_id, type, qty, limit_price, status) of every order, oldest first."""
    orders = server.engine.orders(OrderQuery(status="all", limit=500, direction="asc"))
    return [(o.client_order_id, o.type, o.qty, o.limit_price, o.status) for o in orders]


def limit_then_market(**changes: Any) -> dict[str, Any]:
    return {
        "strategy": ExecutionStrategy.LIMIT_THEN_MARKET,
        "max_repegs": 2,
        "repeg_after_s": 0.3,
        **changes,
    }


def test_limit_resting_inside_the_spread_is_repegged_twice_then_sent_at_market(
    venue: FakeAlpacaServer,
) -> None:
    plan = plan_of("plan-repeg", [Trade("SPY", "BUY", "1000.00")])

    outcome, counters = execute(venue, plan, **limit_then_market())

    first = client_order_id("plan-repeg", "SPY", OrderSide.BUY)
    stem = first.removesuffix("-1")
    assert venue_orders(venue) == [
        (f"{stem}-1", "limit", 10, Decimal("100.00"), "canceled"),
        (f"{stem}-2", "limit", 10, Decimal("100.33"), "canceled"),
        (f"{stem}-3", "limit", 10, Decimal("100.66"), "canceled"),
        (f"{stem}-4", "market", 10, None, "filled"),
    ]
    (result,) = outcome.orders
    assert (result.success, result.status, result.attempts) == (True, "filled", 4)
    assert (result.filled_qty, result.filled_avg_price) == (Decimal(10), Decimal("101.00"))
    assert (result.client_order_id, result.order_type) == (first, "market")
    assert (result.expected_price, result.slippage_bps) == (Decimal("100.00"), Decimal("100.00"))
    assert counters["connections"] == 1


def test_each_repeg_asks_only_for_the_quantity_left(venue: FakeAlpacaServer) -> None:
    venue.engine.set_quote("SPY", Decimal("100.00"), Decimal("100.00"))
    venue.engine.set_fill("SPY", Partial(Decimal("0.4")))
    plan = plan_of("plan-partial-repeg", [Trade("SPY", "BUY", "1000.00")])

    outcome, _ = execute(venue, plan, **limit_then_market())

    assert [(qty, kind, status) for _, kind, qty, _, status in venue_orders(venue)] == [
        (10, "limit", "canceled"),
        (6, "limit", "canceled"),
        (4, "limit", "canceled"),
        (3, "market", "canceled"),
    ]
    (result,) = outcome.orders
    # 4 + 2 + 1 + 1 of 10 filled: a partial result, every attempt counted once.
    assert (result.success, result.filled_qty, result.attempts) == (False, Decimal(8), 4)
    assert venue.engine.holding("SPY") is not None
    assert venue.engine.holding("SPY").qty == Decimal(8)  # type: ignore[union-attr]


def test_a_cancel_that_loses_the_race_to_a_fill_sends_no_further_order(
    venue: FakeAlpacaServer,
) -> None:
    # The limit is marketable but fills only after 1 s; the re-peg's cancel is sent at 0.5 s
    # and reaches the venue at 2 s, when the order is filled: Alpaca answers 422.
    venue.engine.set_quote("SPY", Decimal("100.00"), Decimal("100.00"))
    venue.engine.set_fill("SPY", Delayed(1000))
    venue.inject_fault(FaultKind.LATENCY, method="DELETE", path=ORDER_PATH, latency_ms=1500)
    plan = plan_of("plan-race", [Trade("SPY", "BUY", "1000.00")])

    outcome, _ = execute(venue, plan, **limit_then_market(repeg_after_s=0.5))

    stem = client_order_id("plan-race", "SPY", OrderSide.BUY).removesuffix("-1")
    assert venue_orders(venue) == [(f"{stem}-1", "limit", 10, Decimal("100.00"), "filled")]
    assert venue.request_counts()[("DELETE", ORDER_PATH)] == 1
    (result,) = outcome.orders
    assert (result.success, result.filled_qty, result.attempts) == (True, Decimal(10), 1)


def test_fills_missed_while_the_stream_was_down_are_caught_up(venue: FakeAlpacaServer) -> None:
    for symbol in ("SPY", "QQQ"):
        venue.engine.set_fill(symbol, Delayed(600))
    plan = plan_of("plan-drop", [Trade("SPY", "BUY", "1000.00"), Trade("QQQ", "BUY", "2000.00")])
    config = ExecutionConfig(poll_interval_s=0.05, max_concurrent_orders=2)

    with started_adapter(venue) as broker, streaming(venue, broker) as updates:
        executor = PlanOrderExecutor(broker, config, utc_now, time.sleep, watch=updates)
        venue.stream_outage(True)
        try:
            outcome = executor.execute(plan)
        finally:
            venue.stream_outage(False)
        reconnected = updates.wait_connected(10)
        connections = updates.stats.connections
        reads = updates.stats.catch_up_reads + updates.stats.fallback_reads

    assert [(o.symbol, o.status, o.filled_qty) for o in outcome.orders] == [
        ("SPY", "filled", Decimal(10)),
        ("QQQ", "filled", Decimal(5)),
    ]
    assert [status for *_, status in venue_orders(venue)] == ["filled", "filled"]
    assert reads >= 2  # each order was read over REST while its events could not arrive
    assert reconnected
    assert connections == 2


def test_a_drop_between_two_fills_is_caught_up_after_the_reconnect(
    venue: FakeAlpacaServer,
) -> None:
    venue.engine.set_fill("SPY", Delayed(100))
    venue.engine.set_fill("QQQ", Delayed(1500))
    plan = plan_of("plan-midway", [Trade("SPY", "BUY", "1000.00"), Trade("QQQ", "BUY", "2000.00")])
    config = ExecutionConfig(poll_interval_s=0.05, max_concurrent_orders=2)
    outcome: list[OrdersOutcome] = []

    with started_adapter(venue) as broker, streaming(venue, broker) as updates:
        executor = PlanOrderExecutor(broker, config, utc_now, time.sleep, watch=updates)
        worker = threading.Thread(target=lambda: outcome.append(executor.execute(plan)))
        worker.start()
        # SPY's fill arrives on the stream; then the stream goes down until QQQ has filled.
        assert wait_until(lambda: filled_at_venue(venue) == {"SPY"})
        assert wait_until(lambda: updates.stats.events >= venue_events_sent(venue))
        venue.stream_outage(True)
        assert wait_until(lambda: filled_at_venue(venue) == {"SPY", "QQQ"})
        venue.stream_outage(False)
        worker.join(timeout=30)
        reads = updates.stats.catch_up_reads + updates.stats.fallback_reads

    assert [(o.symbol, o.status, o.filled_qty) for o in outcome[0].orders] == [
        ("SPY", "filled", Decimal(10)),
        ("QQQ", "filled", Decimal(5)),
    ]
    assert reads >= 1  # QQQ's fill was read over REST: its event was sent to nobody
    assert len(venue_orders(venue)) == 2


def filled_at_venue(server: FakeAlpacaServer) -> set[str]:
    orders = server.engine.orders(OrderQuery(status="all", limit=500))
    return {o.symbol for o in orders if o.status == "filled"}


def test_a_duplicated_fill_event_is_counted_once(venue: FakeAlpacaServer) -> None:
    venue.engine.set_fill("SPY", Delayed(300))
    venue.duplicate_next_fills(1)
    plan = plan_of("plan-dup", [Trade("SPY", "BUY", "1000.00")])

    outcome, counters = execute(venue, plan, events=3)  # new, fill, the fill again

    (result,) = outcome.orders
    assert (result.status, result.filled_qty, result.filled_avg_price) == (
        "filled",
        Decimal(10),
        Decimal("101.00"),
    )
    assert counters["duplicate_fills"] == 1
    assert venue.engine.holding("SPY").qty == Decimal(10)  # type: ignore[union-attr]


def test_market_orders_followed_on_the_stream_need_no_order_reads(
    venue: FakeAlpacaServer,
) -> None:
    venue.engine.set_fill("SPY", Delayed(200))
    venue.engine.set_fill("QQQ", Delayed(200))
    plan = plan_of("plan-quiet", [Trade("SPY", "BUY", "1000.00"), Trade("QQQ", "BUY", "2000.00")])

    outcome, counters = execute(venue, plan)

    assert [o.status for o in outcome.orders] == ["filled", "filled"]
    counts = venue.request_counts()
    assert counts[("POST", "/v2/orders")] == 2
    assert counts.get(("GET", ORDER_PATH), 0) == 0
    assert counters["fallback_reads"] == counters["catch_up_reads"] == 0


def short_after_sells_plan(plan_id: str) -> RebalancePlan:
    """Sells 50 TQQQ (4,000.00); buys 30 SPY and 15 AAPL (6,030.00 at the ask)."""
    return plan_of(
        plan_id,
        [
            Trade("TQQQ", "SELL", "-4000.00", 1),
            Trade("SPY", "BUY", "3000.00", 1),
            Trade("AAPL", "BUY", "3000.00", 2),
        ],
    )


@pytest.fixture
def cashless_venue() -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer(fake_venue_config(venue_account(cash=Decimal(0)))) as server:
        yield server


def test_buys_that_the_sell_proceeds_do_not_cover_are_skipped(
    cashless_venue: FakeAlpacaServer,
) -> None:
    plan = short_after_sells_plan("plan-short-skip")

    outcome, _ = execute(cashless_venue, plan, buying_power_wait_s=0.2)

    sell, spy, aapl = outcome.orders
    assert (sell.status, sell.filled_qty) == ("filled", Decimal(50))
    assert (spy.status, spy.filled_qty) == ("filled", Decimal(30))
    assert (aapl.skipped, aapl.skip_reason) == (True, SkipReason.INSUFFICIENT_BUYING_POWER)
    assert [status for _, status in cashless_venue.order_posts()] == [200, 200]


def test_buys_that_the_sell_proceeds_do_not_cover_are_scaled_down(
    cashless_venue: FakeAlpacaServer,
) -> None:
    plan = short_after_sells_plan("plan-short-scale")

    outcome, _ = execute(
        cashless_venue,
        plan,
        buying_power_wait_s=0.2,
        buying_power_shortfall=BuyingPowerShortfall.SCALE,
    )

    sell, spy, aapl = outcome.orders
    assert sell.filled_qty == Decimal(50)
    # 4,000.00 of 6,030.00 needed: each buy times 0.663..., rounded down to whole shares.
    assert [(o.symbol, o.planned_qty, o.filled_qty) for o in (spy, aapl)] == [
        ("SPY", Decimal(19), Decimal(19)),
        ("AAPL", Decimal(9), Decimal(9)),
    ]
    posts = cashless_venue.order_posts()
    assert [status for _, status in posts] == [200, 200, 200]
    sent = sorted((json.loads(body)["symbol"], json.loads(body)["qty"]) for body, _ in posts[1:])
    assert sent == [("AAPL", "9"), ("SPY", "19")]
