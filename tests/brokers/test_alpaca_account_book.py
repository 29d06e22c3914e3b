"""The account book kept from the fake Alpaca's trade-updates stream, under real execution:
plans sized from it trade exactly as plans sized from REST reads, with one read of positions
and of buying power for several plans; a reconnect, and fills of orders not ours."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from alpaca_support import fake_venue_config, started_adapter, streaming, wait_until
from plan_factory import Trade, planned

from rebalance_stream.brokers.account_book import StreamAccountBook
from rebalance_stream.brokers.alpaca import AlpacaBroker
from rebalance_stream.brokers.alpaca_trade_updates import AlpacaTradeUpdates
from rebalance_stream.brokers.fake_alpaca import FakeAlpacaServer, Quote, VenueAccount
from rebalance_stream.brokers.fake_alpaca.model import OrderQuery
from rebalance_stream.brokers.protocol import OrderRequest
from rebalance_stream.contracts.execution import OrderSide
from rebalance_stream.contracts.rebalance import RebalancePlan, RebalancePlanned
from rebalance_stream.operators.execution_config import ExecutionConfig
from rebalance_stream.operators.order_execution import PlanOrderExecutor
from rebalance_stream.streams.pipeline import utc_now

QUOTES = {
    "SPY": Quote(Decimal("99.00"), Decimal("101.00")),
    "QQQ": Quote(Decimal("399.00"), Decimal("401.00")),
    "TQQQ": Quote(Decimal("80.00"), Decimal("80.00")),
}
POSITIONS = ("GET", "/v2/positions")
ACCOUNT = ("GET", "/v2/account")
BOOK_S = 60.0


def plan_of(plan_id: str, trades: list[Trade]) -> RebalancePlan:
    return RebalancePlanned.model_validate(planned(plan_id, trades)).rebalance_plan


def sell_tqqq_buy(plan_id: str, symbol: str) -> RebalancePlan:
    """Sells 10 TQQQ (800.00 at the bid); buys 1,000.00 of ``symbol``."""
    return plan_of(plan_id, [Trade("TQQQ", "SELL", "-800.00", 1), Trade(symbol, "BUY", "1000.00")])


@pytest.fixture
def venue() -> Iterator[FakeAlpacaServer]:
    account = VenueAccount(
        cash=Decimal(100_000),
        positions={"TQQQ": Decimal(100)},
        quotes=QUOTES,
        fractionable=frozenset(),
    )
    with FakeAlpacaServer(fake_venue_config(account)) as server:
        yield server


@contextmanager
def booked(
    server: FakeAlpacaServer,
) -> Iterator[tuple[AlpacaBroker, StreamAccountBook, AlpacaTradeUpdates]]:
    """A started adapter, and the trade-updates stream keeping an account book."""
    with started_adapter(server) as broker:
        book = StreamAccountBook(broker, BOOK_S)
        with streaming(server, broker, account_book=book) as updates:
            yield broker, book, updates


def executor_of(
    broker: AlpacaBroker, updates: AlpacaTradeUpdates, book: StreamAccountBook | None
) -> PlanOrderExecutor:
    config = ExecutionConfig(poll_interval_s=0.05)
    return PlanOrderExecutor(broker, config, utc_now, time.sleep, watch=updates, account=book)


def venue_orders(server: FakeAlpacaServer) -> list[tuple[str, str, Decimal | None, str]]:
    """(symbol, side, qty, status) of every order, oldest first."""
    orders = server.engine.orders(OrderQuery(status="all", limit=500, direction="asc"))
    return [(o.symbol, o.side, o.qty, o.status) for o in orders]


def all_events_handled(server: FakeAlpacaServer, updates: AlpacaTradeUpdates) -> bool:
    return updates.stats.events >= server.stream_counters().trade_updates_sent


def run_plans(server: FakeAlpacaServer, *, with_book: bool) -> list[tuple[str, str, Decimal]]:
    """Two plans, one after the other; each order's (symbol, status, filled qty)."""
    with started_adapter(server) as broker:
        book = StreamAccountBook(broker, BOOK_S) if with_book else None
        with streaming(server, broker, account_book=book) as updates:
            executor = executor_of(broker, updates, book)
            outcomes = [
                executor.execute(sell_tqqq_buy("plan-book-1", "SPY")),
                executor.execute(sell_tqqq_buy("plan-book-2", "QQQ")),
            ]
    return [(o.symbol, o.status, o.filled_qty) for out in outcomes for o in out.orders]


EXPECTED_RESULTS = [
    ("TQQQ", "filled", Decimal(10)),
    ("SPY", "filled", Decimal(10)),
    ("TQQQ", "filled", Decimal(10)),
    ("QQQ", "filled", Decimal(2)),
]
EXPECTED_ORDERS = [
    ("TQQQ", "sell", Decimal(10), "filled"),
    ("SPY", "buy", Decimal(10), "filled"),
    ("TQQQ", "sell", Decimal(10), "filled"),
    ("QQQ", "buy", Decimal(2), "filled"),
]


@pytest.mark.parametrize(("with_book", "reads"), [(True, 1), (False, 2)])
def test_plans_sized_from_the_book_trade_as_with_rest_reads_and_read_the_account_once(
    venue: FakeAlpacaServer, with_book: bool, reads: int
) -> None:
    results = run_plans(venue, with_book=with_book)

    counts = venue.request_counts()
    assert results == EXPECTED_RESULTS
    assert venue_orders(venue) == EXPECTED_ORDERS
    assert (counts[POSITIONS], counts[ACCOUNT]) == (reads, reads)


def test_the_book_follows_the_venues_positions_and_reads_again_after_a_reconnect(
    venue: FakeAlpacaServer,
) -> None:
    with booked(venue) as (broker, book, updates):
        executor_of(broker, updates, book).execute(sell_tqqq_buy("plan-book-1", "SPY"))
        assert wait_until(lambda: all_events_handled(venue, updates))
        kept = book.positions()
        venue.stream_outage(True)
        assert wait_until(lambda: not updates.wait_connected(0))
        venue.stream_outage(False)
        assert updates.wait_connected(10)
        executor_of(broker, updates, book).execute(sell_tqqq_buy("plan-book-2", "QQQ"))
        assert wait_until(lambda: all_events_handled(venue, updates))
        after = book.positions()
        at_venue = broker.get_positions()

    counts = venue.request_counts()
    assert kept == {"TQQQ": Decimal(90), "SPY": Decimal(10)}
    assert after == at_venue == {"TQQQ": Decimal(80), "SPY": Decimal(10), "QQQ": Decimal(2)}
    assert (counts[POSITIONS], counts[ACCOUNT]) == (2 + 1, 2)  # the last: at_venue
    assert book.stats.positions_kept == 2


def test_fills_of_orders_not_ours_move_positions_and_spend_buying_power(
    venue: FakeAlpacaServer,
) -> None:
    with booked(venue) as (broker, book, updates):
        executor_of(broker, updates, book).execute(sell_tqqq_buy("plan-book-1", "SPY"))
        before = book.buying_power(Decimal(0))
        other = OrderRequest("another-client-1", "SPY", OrderSide.BUY, qty=Decimal(5))
        sent = venue.stream_counters().trade_updates_sent
        broker.submit_order(other)
        assert wait_until(lambda: updates.stats.events >= sent + 2)  # new, fill
        after = book.buying_power(Decimal(0))
        held = book.positions()

    counts = venue.request_counts()
    assert before - after == Decimal(5) * Decimal("101.00")
    assert held == {"TQQQ": Decimal(90), "SPY": Decimal(15)}
    assert (counts[POSITIONS], counts[ACCOUNT]) == (1, 1)
