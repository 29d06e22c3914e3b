"""The embedded paper broker and its account file."""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rebalance_stream.brokers import (
    Broker,
    BrokerOrder,
    BrokerOrderStatus,
    DuplicateClientOrderId,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
    PaperAccount,
    PaperBroker,
    Quote,
    UnknownAsset,
)
from rebalance_stream.brokers.paper import FILL_MODEL_REJECT_REASON, broker_order_id_for
from rebalance_stream.brokers.paper_account import DelayedFill, PartialFill
from rebalance_stream.brokers.paper_state import dump_order, load_order
from rebalance_stream.contracts.execution import OrderSide

T0 = datetime(2025, 1, 2, 15, 30, tzinfo=UTC)


class FakeClock:
    """A clock that stands still until advanced."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += timedelta(milliseconds=ms)


def make_account(**overrides: Any) -> PaperAccount:
    document: dict[str, Any] = {
        "cash": "10000.00",
        "positions": {"SPY": "60", "TQQQ": "500"},
        "prices": {"SPY": "500.00", "TQQQ": "80.00", "GLD": "190.00", "SLOW": "100.00"},
        "fractionable": ["SPY", "GLD"],
        "market": "open",
        "fill": {
            "default": "immediate",
            "TQQQ": {"partial": "0.5"},
            "GLD": "reject",
            "SLOW": {"delay_ms": 500},
        },
    }
    document.update(overrides)
    return PaperAccount.model_validate(document)


def buy(cid: str, symbol: str, qty: str | None = None, notional: str | None = None) -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        symbol=symbol,
        side=OrderSide.BUY,
        qty=None if qty is None else Decimal(qty),
        notional=None if notional is None else Decimal(notional),
    )


def sell(cid: str, symbol: str, qty: str) -> OrderRequest:
    return OrderRequest(client_order_id=cid, symbol=symbol, side=OrderSide.SELL, qty=Decimal(qty))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> Iterator[PaperBroker]:
    with PaperBroker(make_account(), clock=clock) as started:
        yield started


def test_paper_broker_satisfies_broker_protocol(broker: PaperBroker) -> None:
    as_protocol: Broker = broker

    assert as_protocol.get_clock() == broker.get_clock()


def test_paper_broker_has_every_broker_method_with_its_signature() -> None:
    methods = [name for name in vars(Broker) if not name.startswith("_")]

    assert "get_quotes" in methods
    for name in methods:
        expected = inspect.signature(getattr(Broker, name))
        assert inspect.signature(getattr(PaperBroker, name)) == expected, name


def test_call_before_start_raises_runtime_error() -> None:
    paper = PaperBroker(make_account())

    with pytest.raises(RuntimeError):
        paper.get_account()


def test_call_after_close_raises_runtime_error() -> None:
    paper = PaperBroker(make_account())
    paper.start()
    paper.close()

    with pytest.raises(RuntimeError):
        paper.get_position_qty("SPY")


def test_get_clock_closed_market_reports_closed_at_clock_time(clock: FakeClock) -> None:
    with PaperBroker(make_account(market="closed"), clock=clock) as paper:
        market = paper.get_clock()

    assert market.is_open is False
    assert market.timestamp == T0


def test_get_asset_known_symbol_reports_fractionable(broker: PaperBroker) -> None:
    assert broker.get_asset("spy").fractionable is True
    assert broker.get_asset("TQQQ").fractionable is False
    assert broker.get_asset("TQQQ").tradable is True


def test_get_asset_unknown_symbol_raises_unknown_asset(broker: PaperBroker) -> None:
    with pytest.raises(UnknownAsset):
        broker.get_asset("NOPE")


def test_get_latest_price_unknown_symbol_is_none(broker: PaperBroker) -> None:
    assert broker.get_latest_price("SPY") == Decimal("500.00")
    assert broker.get_latest_price("NOPE") is None


def test_get_position_qty_no_position_is_zero(broker: PaperBroker) -> None:
    assert broker.get_position_qty("GLD") == Decimal(0)


def test_submit_immediate_buy_updates_cash_and_position(broker: PaperBroker) -> None:
    order = broker.submit_order(buy("c-1", "SPY", qty="4"))

    assert order.status is BrokerOrderStatus.FILLED
    assert order.filled_qty == Decimal(4)
    assert order.filled_avg_price == Decimal("500.00")
    assert order.filled_at == T0
    assert order.broker_order_id == broker_order_id_for("c-1")
    assert broker.get_account().cash == Decimal("8000.00")
    assert broker.get_position_qty("SPY") == Decimal(64)


def test_submit_immediate_sell_of_whole_position_removes_it(broker: PaperBroker) -> None:
    before = broker.get_positions()
    broker.submit_order(sell("c-1", "SPY", "60"))

    assert before["SPY"] == Decimal(60)
    assert "SPY" not in broker.get_positions()
    assert broker.get_position_qty("SPY") == Decimal(0)
    assert broker.get_account().cash == Decimal("40000.00")


def test_submit_partial_odd_qty_non_fractionable_rounds_down_and_cancels_rest(
    broker: PaperBroker,
) -> None:
    order = broker.submit_order(buy("c-1", "TQQQ", qty="5"))

    assert order.status is BrokerOrderStatus.CANCELED
    assert order.filled_qty == Decimal(2)
    assert order.filled_avg_price == Decimal("80.00")
    assert broker.get_account().cash == Decimal("9840.00")
    assert broker.get_position_qty("TQQQ") == Decimal(502)


def test_submit_partial_part_rounds_to_zero_cancels_with_nothing_filled(
    broker: PaperBroker,
) -> None:
    order = broker.submit_order(buy("c-1", "TQQQ", qty="1"))

    assert order.status is BrokerOrderStatus.CANCELED
    assert order.filled_qty == Decimal(0)
    assert order.filled_avg_price is None
    assert broker.get_account().cash == Decimal("10000.00")


def test_submit_reject_model_returns_rejected_order_unchanged_account(
    broker: PaperBroker,
) -> None:
    order = broker.submit_order(buy("c-1", "GLD", qty="1"))

    assert order.status is BrokerOrderStatus.REJECTED
    assert order.reject_reason == FILL_MODEL_REJECT_REASON
    assert broker.get_order(order.broker_order_id) == order
    assert broker.get_account().cash == Decimal("10000.00")


def test_submit_delay_fills_only_after_clock_passes_delay(
    broker: PaperBroker, clock: FakeClock
) -> None:
    order = broker.submit_order(buy("c-1", "SLOW", qty="3"))
    clock.advance(499)
    before = broker.get_order(order.broker_order_id)
    clock.advance(1)
    after = broker.get_order(order.broker_order_id)

    assert order.status is BrokerOrderStatus.NEW
    assert before.status is BrokerOrderStatus.NEW
    assert broker.get_position_qty("SLOW") == Decimal(3)
    assert after.status is BrokerOrderStatus.FILLED
    assert after.filled_qty == Decimal(3)
    assert after.filled_at == T0 + timedelta(milliseconds=500)
    assert broker.get_account().cash == Decimal("9700.00")


def test_cancel_delayed_order_before_delay_stays_canceled_unfilled(
    broker: PaperBroker, clock: FakeClock
) -> None:
    order = broker.submit_order(buy("c-1", "SLOW", qty="3"))
    broker.cancel_order(order.broker_order_id)
    clock.advance(10_000)

    final = broker.get_order(order.broker_order_id)
    assert final.status is BrokerOrderStatus.CANCELED
    assert final.filled_qty == Decimal(0)
    assert broker.get_position_qty("SLOW") == Decimal(0)
    assert broker.get_account().buying_power == Decimal("10000.00")


def test_cancel_terminal_order_leaves_it_unchanged(broker: PaperBroker) -> None:
    order = broker.submit_order(buy("c-1", "SPY", qty="1"))

    broker.cancel_order(order.broker_order_id)

    assert broker.get_order(order.broker_order_id) == order


def test_cancel_unknown_id_raises_order_not_found(broker: PaperBroker) -> None:
    with pytest.raises(OrderNotFound):
        broker.cancel_order("no-such-order")


def test_get_order_unknown_id_raises_order_not_found(broker: PaperBroker) -> None:
    with pytest.raises(OrderNotFound):
        broker.get_order("no-such-order")


def test_get_order_by_client_id_absent_is_none_present_is_order(broker: PaperBroker) -> None:
    order = broker.submit_order(buy("c-1", "SPY", qty="1"))

    assert broker.get_order_by_client_id("c-2") is None
    assert broker.get_order_by_client_id("c-1") == order


def test_submit_same_client_order_id_twice_raises_duplicate(broker: PaperBroker) -> None:
    broker.submit_order(buy("c-1", "SPY", qty="1"))

    with pytest.raises(DuplicateClientOrderId):
        broker.submit_order(buy("c-1", "SPY", qty="1"))
    assert broker.get_position_qty("SPY") == Decimal(61)


def test_submit_client_order_id_of_fill_model_reject_raises_duplicate(
    broker: PaperBroker,
) -> None:
    broker.submit_order(buy("c-1", "GLD", qty="1"))

    with pytest.raises(DuplicateClientOrderId):
        broker.submit_order(buy("c-1", "SPY", qty="1"))


def test_submit_unknown_symbol_rejected_nothing_recorded(broker: PaperBroker) -> None:
    with pytest.raises(OrderRejected):
        broker.submit_order(buy("c-1", "NOPE", qty="1"))

    assert broker.get_order_by_client_id("c-1") is None
    assert broker.list_orders() == []


def test_submit_fractional_qty_non_fractionable_rejected(broker: PaperBroker) -> None:
    with pytest.raises(OrderRejected):
        broker.submit_order(buy("c-1", "TQQQ", qty="1.5"))


def test_submit_notional_non_fractionable_rejected(broker: PaperBroker) -> None:
    with pytest.raises(OrderRejected):
        broker.submit_order(buy("c-1", "TQQQ", notional="100"))


@pytest.mark.parametrize("request_", [buy("c-1", "SPY", qty="0"), buy("c-1", "SPY", notional="-5")])
def test_submit_non_positive_amount_rejected(broker: PaperBroker, request_: OrderRequest) -> None:
    with pytest.raises(OrderRejected):
        broker.submit_order(request_)


def test_submit_buy_over_cash_rejected(broker: PaperBroker) -> None:
    with pytest.raises(OrderRejected):
        broker.submit_order(buy("c-1", "SPY", qty="21"))

    assert broker.get_account().cash == Decimal("10000.00")


def test_submit_sell_more_than_held_rejected(broker: PaperBroker) -> None:
    with pytest.raises(OrderRejected):
        broker.submit_order(sell("c-1", "SPY", "61"))

    assert broker.get_position_qty("SPY") == Decimal(60)


def test_submit_sell_beyond_open_delayed_sell_rejected(clock: FakeClock) -> None:
    account = make_account(positions={"SLOW": "10"})
    with PaperBroker(account, clock=clock) as paper:
        paper.submit_order(sell("c-1", "SLOW", "7"))

        with pytest.raises(OrderRejected):
            paper.submit_order(sell("c-2", "SLOW", "4"))
        assert paper.submit_order(sell("c-3", "SLOW", "3")).status is BrokerOrderStatus.NEW


def test_submit_notional_fractionable_converts_to_qty_rounded_down(broker: PaperBroker) -> None:
    order = broker.submit_order(buy("c-1", "SPY", notional="1000.01"))

    assert order.status is BrokerOrderStatus.FILLED
    assert order.qty is None
    assert order.notional == Decimal("1000.01")
    assert order.filled_qty == Decimal("2.000020000")
    assert broker.get_position_qty("SPY") == Decimal("62.000020000")
    assert broker.get_account().cash == Decimal("8999.99")


def test_get_account_open_delayed_buy_reserves_buying_power(broker: PaperBroker) -> None:
    broker.submit_order(buy("c-1", "SLOW", qty="60"))

    account = broker.get_account()
    assert account.cash == Decimal("10000.00")
    assert account.buying_power == Decimal("4000.00")
    with pytest.raises(OrderRejected):
        broker.submit_order(buy("c-2", "SPY", qty="9"))


def test_list_orders_prefix_returns_matching_oldest_first(
    broker: PaperBroker, clock: FakeClock
) -> None:
    for cid in ("plan-a-2", "plan-b-1", "plan-a-1", "plan-a-3"):
        broker.submit_order(buy(cid, "SPY", qty="1"))
        clock.advance(1)

    listed = [order.client_order_id for order in broker.list_orders("plan-a-")]

    assert listed == ["plan-a-2", "plan-a-1", "plan-a-3"]
    assert len(broker.list_orders()) == 4


def test_reopen_sqlite_state_survives_process(tmp_path: Path, clock: FakeClock) -> None:
    state_path = tmp_path / "paper.sqlite"
    account = make_account()
    with PaperBroker(account, state_path=state_path, clock=clock) as first:
        filled = first.submit_order(buy("c-1", "SPY", notional="1000.01"))
        first.submit_order(sell("c-2", "TQQQ", "500"))
        pending = first.submit_order(buy("c-3", "SLOW", qty="2"))

    with PaperBroker(account, state_path=state_path, clock=clock) as second:
        assert second.get_account().cash == Decimal("28999.99")
        assert second.get_account().buying_power == Decimal("28799.99")
        assert second.get_position_qty("SPY") == Decimal("62.000020000")
        assert second.get_position_qty("TQQQ") == Decimal(250)
        assert second.get_order(filled.broker_order_id) == filled
        assert second.get_order(pending.broker_order_id) == pending
        assert [o.client_order_id for o in second.list_orders()] == ["c-1", "c-2", "c-3"]
        with pytest.raises(DuplicateClientOrderId):
            second.submit_order(buy("c-1", "SPY", qty="1"))
        clock.advance(500)
        assert second.get_order(pending.broker_order_id).status is BrokerOrderStatus.FILLED

    with PaperBroker(account, state_path=state_path, clock=clock) as third:
        assert third.get_position_qty("SLOW") == Decimal(2)


def test_memory_keeps_open_orders_and_the_last_retained_terminal_ones(clock: FakeClock) -> None:
    with PaperBroker(make_account(), clock=clock, retained_orders=2) as broker:
        delayed = broker.submit_order(buy("c-slow", "SLOW", qty="1"))
        for n in range(4):
            broker.submit_order(buy(f"c-{n}", "SPY", qty="1"))

        listed = [order.client_order_id for order in broker.list_orders()]
        # Forgotten without a state file: its client_order_id is free again.
        again = broker.submit_order(buy("c-0", "SPY", qty="1"))

    assert listed == ["c-slow", "c-2", "c-3"]
    assert delayed.status is BrokerOrderStatus.NEW
    assert again.status is BrokerOrderStatus.FILLED


def test_state_file_keeps_every_order_beyond_what_memory_retains(
    tmp_path: Path, clock: FakeClock
) -> None:
    state_path = tmp_path / "paper.sqlite"
    account = make_account()
    with PaperBroker(account, state_path=state_path, clock=clock, retained_orders=1) as first:
        oldest = first.submit_order(buy("c-0", "SPY", qty="1"))
        pending = first.submit_order(buy("c-slow", "SLOW", qty="1"))
        for n in range(1, 4):
            first.submit_order(buy(f"c-{n}", "SPY", qty="1"))
        with pytest.raises(DuplicateClientOrderId):
            first.submit_order(buy("c-0", "SPY", qty="1"))
        assert first.get_order(oldest.broker_order_id) == oldest
        assert first.get_order_by_client_id("c-1") is not None

    with PaperBroker(account, state_path=state_path, clock=clock, retained_orders=1) as second:
        listed = [order.client_order_id for order in second.list_orders()]
        with pytest.raises(DuplicateClientOrderId):
            second.submit_order(buy("c-1", "SPY", qty="1"))
        clock.advance(500)
        settled = second.get_order(pending.broker_order_id)

    assert listed == ["c-0", "c-slow", "c-1", "c-2", "c-3"]
    assert settled.status is BrokerOrderStatus.FILLED


def test_start_initialized_state_ignores_account_cash_and_positions(
    tmp_path: Path, clock: FakeClock
) -> None:
    state_path = tmp_path / "paper.sqlite"
    with PaperBroker(make_account(), state_path=state_path, clock=clock) as first:
        first.submit_order(buy("c-1", "SPY", qty="1"))

    richer = make_account(cash="99999.00", positions={})
    with PaperBroker(richer, state_path=state_path, clock=clock) as second:
        assert second.get_account().cash == Decimal("9500.00")
        assert second.get_position_qty("SPY") == Decimal(61)


def test_submit_concurrent_threads_keep_cash_consistent(broker: PaperBroker) -> None:
    def worker(n: int) -> None:
        for i in range(25):
            broker.submit_order(buy(f"t{n}-{i}", "SPY", qty="0.1"))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(broker.list_orders("t")) == 100
    assert broker.get_position_qty("SPY") == Decimal(70)
    assert broker.get_account().cash == Decimal("5000.00")


def test_paper_account_sample_loads_builtin_account() -> None:
    sample = PaperAccount.sample()

    assert sample.cash == Decimal("25000.00")
    assert sample.positions["TQQQ"] == Decimal(300)
    assert sample.prices["ARKK"] == Decimal("45.00")
    assert sample.fractionable == frozenset({"SPY", "QQQ", "VTI", "GLD"})
    assert sample.fill_model_for("ARKK") == PartialFill(partial=Decimal("0.5"))
    assert sample.fill_model_for("SPY") == "immediate"


def test_paper_account_from_file_json_numbers_read_exactly(tmp_path: Path) -> None:
    path = tmp_path / "account.json"
    document = (
        '{"cash": 10000.10, "positions": {"spy": 60}, "prices": {"spy": 500.01},'
        ' "fill": {"Default": {"delay_ms": 5}, "tqqq": {"partial": 0.1}}, "latency_ms": 0}'
    )
    path.write_text(document, encoding="utf-8")

    account = PaperAccount.from_file(path)

    assert account.cash == Decimal("10000.10")
    assert account.positions == {"SPY": Decimal(60)}
    assert account.prices == {"SPY": Decimal("500.01")}
    assert account.fill_model_for("tqqq") == PartialFill(partial=Decimal("0.1"))
    assert account.fill_model_for("SPY") == DelayedFill(delay_ms=5)


@pytest.mark.parametrize(
    "overrides",
    [
        {"fill": {"SPY": {"partial": "0"}}},
        {"fill": {"SPY": {"partial": "1.5"}}},
        {"fill": {"SPY": "sometimes"}},
        {"market": "half-open"},
        {"prices": {"SPY": "0"}},
        {"cash": "-1"},
    ],
)
def test_paper_account_invalid_document_raises_validation_error(
    overrides: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        make_account(**overrides)


def test_paper_account_json_round_trip_is_equal() -> None:
    account = make_account()

    assert PaperAccount.from_json(json.dumps(account.model_dump(mode="json"))) == account


# -- quotes and limit orders -------------------------------------------------------------------


def limit(cid: str, symbol: str, side: OrderSide, qty: str, limit_price: str) -> OrderRequest:
    return OrderRequest(cid, symbol, side, qty=Decimal(qty), limit_price=Decimal(limit_price))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"notional": Decimal(100)}, "needs qty"),
        ({"qty": Decimal(1), "limit_price": Decimal(0)}, "positive"),
        ({"qty": Decimal(1), "limit_price": Decimal(-1)}, "positive"),
        ({"qty": Decimal(1), "limit_price": Decimal("NaN")}, "positive"),
    ],
)
def test_order_request_invalid_limit_order_raises_value_error(
    changes: dict[str, Decimal], message: str
) -> None:
    amounts = {"limit_price": Decimal(500), **changes}

    with pytest.raises(ValueError, match=message):
        OrderRequest("c-1", "SPY", OrderSide.BUY, **amounts)


def test_order_request_order_type_follows_limit_price() -> None:
    assert buy("c-1", "SPY", qty="1").order_type == "market"
    assert limit("c-1", "SPY", OrderSide.BUY, "1", "500").order_type == "limit"


def test_quote_mid_and_spread() -> None:
    quote = Quote(Decimal("499.99"), Decimal("500.02"))

    assert (quote.mid, quote.spread, quote.timestamp) == (
        Decimal("500.005"),
        Decimal("0.03"),
        None,
    )


def test_get_quotes_bid_and_ask_are_the_price_at_clock_time(
    broker: PaperBroker, clock: FakeClock
) -> None:
    clock.advance(250)

    quotes = broker.get_quotes(["spy", "GLD", "NOPE"])

    at = T0 + timedelta(milliseconds=250)
    assert quotes == {
        "SPY": Quote(Decimal("500.00"), Decimal("500.00"), at),
        "GLD": Quote(Decimal("190.00"), Decimal("190.00"), at),
    }
    assert broker.get_quotes([]) == {}


def test_marketable_limit_buy_fills_at_the_price_not_the_limit(broker: PaperBroker) -> None:
    order = broker.submit_order(limit("c-1", "SPY", OrderSide.BUY, "4", "501.25"))

    assert order.status is BrokerOrderStatus.FILLED
    assert (order.order_type, order.limit_price) == ("limit", Decimal("501.25"))
    assert (order.filled_qty, order.filled_avg_price, order.filled_at) == (
        Decimal(4),
        Decimal("500.00"),
        T0,
    )
    assert broker.get_account().cash == Decimal("8000.00")
    assert broker.get_position_qty("SPY") == Decimal(64)


def test_limit_at_the_price_is_marketable_on_both_sides(broker: PaperBroker) -> None:
    bought = broker.submit_order(limit("c-1", "SPY", OrderSide.BUY, "1", "500"))
    sold = broker.submit_order(limit("c-2", "SPY", OrderSide.SELL, "3", "500"))

    assert (bought.status, bought.filled_avg_price) == (BrokerOrderStatus.FILLED, Decimal("500.00"))
    assert (sold.status, sold.filled_avg_price) == (BrokerOrderStatus.FILLED, Decimal("500.00"))
    assert broker.get_position_qty("SPY") == Decimal(58)


def test_marketable_limit_follows_the_symbols_fill_model(
    broker: PaperBroker, clock: FakeClock
) -> None:
    partial = broker.submit_order(limit("c-1", "TQQQ", OrderSide.BUY, "5", "81"))
    rejected = broker.submit_order(limit("c-2", "GLD", OrderSide.BUY, "1", "200"))
    delayed = broker.submit_order(limit("c-3", "SLOW", OrderSide.BUY, "3", "100"))
    clock.advance(500)
    settled = broker.get_order(delayed.broker_order_id)

    assert (partial.status, partial.filled_qty, partial.filled_avg_price) == (
        BrokerOrderStatus.CANCELED,
        Decimal(2),
        Decimal("80.00"),
    )
    assert rejected.status is BrokerOrderStatus.REJECTED
    assert rejected.reject_reason == FILL_MODEL_REJECT_REASON
    assert delayed.status is BrokerOrderStatus.NEW
    assert (settled.status, settled.filled_qty, settled.filled_avg_price, settled.filled_at) == (
        BrokerOrderStatus.FILLED,
        Decimal(3),
        Decimal("100.00"),
        T0 + timedelta(milliseconds=500),
    )
    assert broker.get_account().cash == Decimal("10000.00") - Decimal("160.00") - Decimal("300.00")


def test_limit_buy_below_the_price_rests_and_holds_buying_power_at_its_limit(
    broker: PaperBroker, clock: FakeClock
) -> None:
    order = broker.submit_order(limit("c-1", "SPY", OrderSide.BUY, "10", "400"))
    clock.advance(86_400_000)

    assert order.status is BrokerOrderStatus.NEW
    assert (order.order_type, order.limit_price) == ("limit", Decimal(400))
    assert (order.filled_qty, order.filled_avg_price, order.filled_at) == (Decimal(0), None, None)
    assert broker.get_order(order.broker_order_id) == order
    assert broker.get_account().cash == Decimal("10000.00")
    assert broker.get_account().buying_power == Decimal("6000.00")
    assert broker.get_position_qty("SPY") == Decimal(60)


def test_limit_sell_above_the_price_rests_and_holds_its_shares(broker: PaperBroker) -> None:
    order = broker.submit_order(limit("c-1", "SPY", OrderSide.SELL, "50", "600"))

    with pytest.raises(OrderRejected, match="10 available"):
        broker.submit_order(sell("c-2", "SPY", "11"))
    assert order.status is BrokerOrderStatus.NEW
    assert broker.get_order(order.broker_order_id).status is BrokerOrderStatus.NEW
    assert broker.get_position_qty("SPY") == Decimal(60)
    assert broker.get_account().buying_power == Decimal("10000.00")


def test_limit_buy_is_checked_against_buying_power_at_its_limit(broker: PaperBroker) -> None:
    # 17 at the price of 500 would fit in 10000; 17 at the limit of 600 does not.
    with pytest.raises(OrderRejected, match="insufficient buying power for 10200"):
        broker.submit_order(limit("c-1", "SPY", OrderSide.BUY, "17", "600"))

    assert broker.list_orders() == []


def test_cancel_resting_limit_is_canceled_with_nothing_filled(broker: PaperBroker) -> None:
    order = broker.submit_order(limit("c-1", "SPY", OrderSide.BUY, "10", "400"))

    broker.cancel_order(order.broker_order_id)

    final = broker.get_order(order.broker_order_id)
    assert final.status is BrokerOrderStatus.CANCELED
    assert (final.filled_qty, final.filled_avg_price) == (Decimal(0), None)
    assert (final.order_type, final.limit_price) == ("limit", Decimal(400))
    assert broker.get_account().buying_power == Decimal("10000.00")


def test_resting_limit_survives_a_restart_over_the_state_file(
    tmp_path: Path, clock: FakeClock
) -> None:
    state_path = tmp_path / "paper.sqlite"
    account = make_account()
    with PaperBroker(account, state_path=state_path, clock=clock) as first:
        resting = first.submit_order(limit("c-1", "SPY", OrderSide.BUY, "10", "400.50"))

    clock.advance(60_000)
    with PaperBroker(account, state_path=state_path, clock=clock) as second:
        reloaded = second.get_order(resting.broker_order_id)
        buying_power = second.get_account().buying_power
        second.cancel_order(reloaded.broker_order_id)
    with PaperBroker(account, state_path=state_path, clock=clock) as third:
        canceled = third.get_order(resting.broker_order_id)

    assert reloaded == resting
    assert (reloaded.status, reloaded.order_type, reloaded.limit_price) == (
        BrokerOrderStatus.NEW,
        "limit",
        Decimal("400.50"),
    )
    assert buying_power == Decimal("5995.00")
    assert (canceled.status, canceled.order_type, canceled.limit_price) == (
        BrokerOrderStatus.CANCELED,
        "limit",
        Decimal("400.50"),
    )


def test_resting_limit_fills_once_a_newer_account_price_reaches_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    state_path = tmp_path / "paper.sqlite"
    with PaperBroker(make_account(), state_path=state_path, clock=clock) as first:
        resting = first.submit_order(limit("c-1", "SPY", OrderSide.BUY, "10", "400"))

    clock.advance(60_000)
    cheaper = make_account(prices={"SPY": "390.00"})
    with PaperBroker(cheaper, state_path=state_path, clock=clock) as second:
        filled = second.get_order(resting.broker_order_id)
        cash = second.get_account().cash

    assert (filled.status, filled.filled_qty, filled.filled_avg_price) == (
        BrokerOrderStatus.FILLED,
        Decimal(10),
        Decimal("390.00"),
    )
    assert filled.filled_at == T0 + timedelta(milliseconds=60_000)
    assert cash == Decimal("6100.00")


def test_stored_order_round_trips_limit_fields_and_old_documents_read_as_market() -> None:
    order = load_order(
        dump_order(
            BrokerOrder(
                broker_order_id="b-1",
                client_order_id="c-1",
                symbol="SPY",
                side=OrderSide.BUY,
                status=BrokerOrderStatus.NEW,
                qty=Decimal(10),
                notional=None,
                filled_qty=Decimal(0),
                filled_avg_price=None,
                submitted_at=T0,
                order_type="limit",
                limit_price=Decimal("400.50"),
            )
        )
    )
    old = json.loads(dump_order(order))
    del old["order_type"], old["limit_price"]

    assert (order.order_type, order.limit_price) == ("limit", Decimal("400.50"))
    assert order.submitted_at == T0
    assert load_order(json.dumps(old)) == replace(order, order_type="market", limit_price=None)
