"""size_order and allocate_buying_power: liquidation, rounding, dust and buying power (SPEC 3.4)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from plan_factory import Trade, item, liquidate

from rebalance_stream.contracts.client_order_id import client_order_id
from rebalance_stream.contracts.execution import OrderSide, SkipReason
from rebalance_stream.contracts.rebalance import RebalancePlanItem
from rebalance_stream.operators.order_sizing import (
    MarketFacts,
    SizedOrder,
    allocate_buying_power,
    round_qty_down,
    size_order,
)

PLAN_ID = "plan-sizing"
MIN_NOTIONAL = Decimal(1)


def plan_item(trade: Trade) -> RebalancePlanItem:
    return RebalancePlanItem.model_validate(item(trade))


def sized(
    symbol: str,
    side: OrderSide,
    qty: str,
    price: str | None,
    skip: SkipReason | None = None,
    priority: int = 3,
) -> SizedOrder:
    return SizedOrder(
        symbol=symbol,
        side=side,
        client_order_id=client_order_id(PLAN_ID, symbol, side),
        priority=priority,
        qty=Decimal(qty),
        expected_price=None if price is None else Decimal(price),
        skip=skip,
    )


def facts(price: str | None, held: str = "0", fractionable: bool = False) -> MarketFacts:
    return MarketFacts(
        price=None if price is None else Decimal(price),
        held_qty=Decimal(held),
        fractionable=fractionable,
    )


# -- size_order ------------------------------------------------------------------------------


def test_size_order_liquidation_sells_exactly_the_held_qty() -> None:
    liquidation = plan_item(liquidate("TQQQ", "-7000.00", priority=1))

    order = size_order(PLAN_ID, liquidation, facts("80.00", held="100"), MIN_NOTIONAL)

    assert order == sized("TQQQ", OrderSide.SELL, "100", "80.00", priority=1)


def test_size_order_liquidation_of_fractional_position_sells_all_of_it() -> None:
    liquidation = plan_item(liquidate("VTI", "-100.00"))

    order = size_order(PLAN_ID, liquidation, facts("250.00", "0.123456789", True), MIN_NOTIONAL)

    assert order == sized("VTI", OrderSide.SELL, "0.123456789", "250.00", priority=1)


@pytest.mark.parametrize(
    "trade",
    [liquidate("IWM", "-2100.00", priority=3), Trade("IWM", "SELL", "-5000.00")],
    ids=["liquidation", "sell-capped-at-held"],
)
def test_size_order_sell_of_fractional_non_fractionable_position_rounds_down(
    trade: Trade,
) -> None:
    sell = plan_item(trade)

    order = size_order(PLAN_ID, sell, facts("200.00", held="10.5"), MIN_NOTIONAL)

    assert order == sized("IWM", OrderSide.SELL, "10", "200.00")


@pytest.mark.parametrize("amount", ["-1000.00", "-1039.99"])
def test_size_order_partial_sell_of_non_fractionable_rounds_down_to_whole_shares(
    amount: str,
) -> None:
    sell = plan_item(Trade("TQQQ", "SELL", amount))

    order = size_order(PLAN_ID, sell, facts("80.00", held="100"), MIN_NOTIONAL)

    assert order == sized("TQQQ", OrderSide.SELL, "12", "80.00")


def test_size_order_fractionable_buy_rounds_down_to_nine_decimals() -> None:
    buy = plan_item(Trade("GLD", "BUY", "5000.00"))

    order = size_order(PLAN_ID, buy, facts("190.00", fractionable=True), MIN_NOTIONAL)

    assert order == sized("GLD", OrderSide.BUY, "26.315789473", "190.00")
    assert order.qty.as_tuple().exponent == -9


def test_size_order_fractionable_sell_rounds_down_to_nine_decimals() -> None:
    sell = plan_item(Trade("VTI", "SELL", "-10.00"))

    order = size_order(PLAN_ID, sell, facts("3.00", held="50", fractionable=True), MIN_NOTIONAL)

    assert order == sized("VTI", OrderSide.SELL, "3.333333333", "3.00")


def test_size_order_sell_larger_than_position_is_capped_at_held() -> None:
    sell = plan_item(Trade("IWM", "SELL", "-5000.00"))

    order = size_order(PLAN_ID, sell, facts("200.00", held="10"), MIN_NOTIONAL)

    assert order == sized("IWM", OrderSide.SELL, "10", "200.00")


@pytest.mark.parametrize(
    "trade",
    [Trade("TQQQ", "SELL", "-800.00"), liquidate("TQQQ", "-800.00", priority=3)],
    ids=["partial-sell", "liquidation"],
)
def test_size_order_sell_without_position_skips_no_position(trade: Trade) -> None:
    sell = plan_item(trade)

    order = size_order(PLAN_ID, sell, facts("80.00", held="0"), MIN_NOTIONAL)

    assert order == sized("TQQQ", OrderSide.SELL, "0", "80.00", SkipReason.NO_POSITION)


def test_size_order_buy_below_min_notional_skips_below_min_notional() -> None:
    buy = plan_item(Trade("VTI", "BUY", "0.50"))

    order = size_order(PLAN_ID, buy, facts("250.00", fractionable=True), MIN_NOTIONAL)

    assert order == sized(
        "VTI", OrderSide.BUY, "0.002000000", "250.00", SkipReason.BELOW_MIN_NOTIONAL
    )


def test_size_order_liquidation_worth_less_than_min_notional_skips_below_min_notional() -> None:
    liquidation = plan_item(liquidate("VTI", "-5000.00"))

    order = size_order(PLAN_ID, liquidation, facts("100.00", "0.005", True), MIN_NOTIONAL)

    assert order == sized(
        "VTI", OrderSide.SELL, "0.005", "100.00", SkipReason.BELOW_MIN_NOTIONAL, priority=1
    )


@pytest.mark.parametrize(
    ("trade", "market"),
    [
        (Trade("VTI", "SELL", "-50.00"), facts("100.00", held="0.005", fractionable=True)),
        (Trade("ARKK", "BUY", "1.50"), facts("0.80")),
    ],
    ids=["sell-capped-at-held", "whole-share-rounding"],
)
def test_size_order_order_notional_below_min_skips_below_min_notional(
    trade: Trade, market: MarketFacts
) -> None:
    order = size_order(PLAN_ID, plan_item(trade), market, MIN_NOTIONAL)

    assert order.skip is SkipReason.BELOW_MIN_NOTIONAL


def test_size_order_qty_rounding_to_zero_skips_rounds_to_zero() -> None:
    buy = plan_item(Trade("SPY", "BUY", "100.00"))

    order = size_order(PLAN_ID, buy, facts("500.00"), MIN_NOTIONAL)

    assert order == sized("SPY", OrderSide.BUY, "0", "500.00", SkipReason.ROUNDS_TO_ZERO)


@pytest.mark.parametrize("price", [None, "0"])
def test_size_order_without_price_skips_no_quote(price: str | None) -> None:
    buy = plan_item(Trade("VTI", "BUY", "1000.00"))

    order = size_order(PLAN_ID, buy, facts(price, fractionable=True), MIN_NOTIONAL)

    assert order == sized("VTI", OrderSide.BUY, "0", price, SkipReason.NO_QUOTE)


def test_size_order_hold_item_raises_value_error() -> None:
    hold = plan_item(Trade("SPY", "HOLD", "0"))

    with pytest.raises(ValueError, match=r"^SPY: HOLD items are not orders$"):
        size_order(PLAN_ID, hold, facts("500.00", held="40"), MIN_NOTIONAL)


def test_sized_order_without_price_has_zero_notional() -> None:
    order = sized("VTI", OrderSide.BUY, "3", None, SkipReason.NO_QUOTE)

    assert order.notional == Decimal(0)


# -- size_order properties -------------------------------------------------------------------

held_quantities = st.one_of(
    st.just(Decimal(0)),
    st.integers(min_value=0, max_value=10_000).map(Decimal),
    st.decimals(min_value=0, max_value=10_000, places=9, allow_nan=False, allow_infinity=False),
)
prices = st.one_of(
    st.none(),
    st.decimals(
        min_value=Decimal("0.01"),
        max_value=Decimal(5_000),
        places=2,
        allow_nan=False,
        allow_infinity=False,
    ),
)
trade_amounts = st.decimals(
    min_value=Decimal("0.01"),
    max_value=Decimal(100_000),
    places=2,
    allow_nan=False,
    allow_infinity=False,
)


def item_for(action: str, amount: Decimal) -> RebalancePlanItem:
    if action == "LIQUIDATE":
        return plan_item(liquidate("XYZ", f"-{amount}"))
    if action == "SELL":
        return plan_item(Trade("XYZ", "SELL", f"-{amount}"))
    return plan_item(Trade("XYZ", "BUY", str(amount)))


def is_whole(qty: Decimal) -> bool:
    return qty == qty.to_integral_value()


actions = st.sampled_from(["BUY", "SELL", "LIQUIDATE"])


@given(
    held=held_quantities,
    price=prices,
    amount=trade_amounts,
    fractionable=st.booleans(),
    action=actions,
)
def test_size_order_any_item_sizes_within_position_and_amount(
    held: Decimal, price: Decimal | None, amount: Decimal, fractionable: bool, action: str
) -> None:
    plan_item_ = item_for(action, amount)
    market = MarketFacts(price=price, held_qty=held, fractionable=fractionable)

    order = size_order(PLAN_ID, plan_item_, market, MIN_NOTIONAL)

    assert order.qty >= 0
    if order.side is OrderSide.SELL:
        assert order.qty <= held
    if price is not None and not plan_item_.liquidates:
        assert order.qty * price <= amount
    if not fractionable:
        assert is_whole(order.qty)
    if plan_item_.liquidates and price is not None and order.skip is None:
        assert order.qty == round_qty_down(held, fractionable)


@given(
    held=held_quantities,
    price=prices,
    amount=trade_amounts,
    fractionable=st.just(False),
    action=actions,
)
@example(
    held=Decimal("10.5"),
    price=Decimal("200.00"),
    amount=Decimal("2100.00"),
    fractionable=False,
    action="LIQUIDATE",
)
def test_size_order_any_non_fractionable_item_sizes_whole_shares(
    held: Decimal, price: Decimal | None, amount: Decimal, fractionable: bool, action: str
) -> None:
    market = MarketFacts(price=price, held_qty=held, fractionable=fractionable)

    order = size_order(PLAN_ID, item_for(action, amount), market, MIN_NOTIONAL)

    assert is_whole(order.qty)


# -- allocate_buying_power -------------------------------------------------------------------


def test_allocate_buying_power_buy_that_no_longer_fits_is_skipped_in_priority_order() -> None:
    first = sized("VTI", OrderSide.BUY, "24", "25.00", priority=1)
    second = sized("GLD", OrderSide.BUY, "5", "100.00", priority=2)
    third = sized("SPY", OrderSide.BUY, "3", "100.00", priority=3)

    allocated = allocate_buying_power([first, second, third], Decimal("1000.00"))

    assert allocated == [
        first,
        sized("GLD", OrderSide.BUY, "5", "100.00", SkipReason.INSUFFICIENT_BUYING_POWER, 2),
        third,
    ]


def test_allocate_buying_power_exact_fit_is_allocated() -> None:
    buys = [
        sized("VTI", OrderSide.BUY, "2", "250.00", priority=1),
        sized("GLD", OrderSide.BUY, "5", "100.00", priority=2),
    ]

    allocated = allocate_buying_power(buys, Decimal("1000.00"))

    assert allocated == buys


def test_allocate_buying_power_skipped_order_keeps_its_reason_and_uses_nothing() -> None:
    dust = sized("SPY", OrderSide.BUY, "0", "500.00", SkipReason.ROUNDS_TO_ZERO, priority=1)
    buy = sized("VTI", OrderSide.BUY, "4", "250.00", priority=2)

    allocated = allocate_buying_power([dust, buy], Decimal("1000.00"))

    assert allocated == [dust, buy]


sized_buys = st.lists(
    st.builds(
        lambda index, qty, price, skip: SizedOrder(
            f"S{index}", OrderSide.BUY, f"cid-{index}", 1 + index % 5, qty, price, skip
        ),
        index=st.integers(min_value=0, max_value=999),
        qty=st.decimals(min_value=0, max_value=1_000, places=9),
        price=st.decimals(min_value=Decimal("0.01"), max_value=Decimal(5_000), places=2),
        skip=st.sampled_from([None, None, None, SkipReason.ROUNDS_TO_ZERO, SkipReason.NO_QUOTE]),
    ),
    max_size=12,
)


@given(
    buys=sized_buys,
    buying_power=st.decimals(min_value=0, max_value=1_000_000, places=2),
)
def test_allocate_buying_power_any_buys_allocate_at_most_buying_power(
    buys: list[SizedOrder], buying_power: Decimal
) -> None:
    allocated = allocate_buying_power(buys, buying_power)

    assert sum((o.notional for o in allocated if o.skip is None), Decimal(0)) <= buying_power
    assert [(o.symbol, o.qty) for o in allocated] == [(o.symbol, o.qty) for o in buys]
    for before, after in zip(buys, allocated, strict=True):
        assert after.skip in {before.skip, SkipReason.INSUFFICIENT_BUYING_POWER}
        if before.skip is not None:
            assert after == before
