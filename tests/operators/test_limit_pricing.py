"""Limit prices walk from the mid toward the far side, on the tick, never reaching it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rebalance_stream.brokers.protocol import Quote
from rebalance_stream.contracts.execution import OrderSide
from rebalance_stream.operators.limit_pricing import limit_price, tick_of

QUOTE = Quote(Decimal("99.00"), Decimal("101.00"))


def test_buy_limits_walk_from_the_mid_toward_the_ask() -> None:
    prices = [limit_price(OrderSide.BUY, QUOTE, attempt, 2) for attempt in (1, 2, 3)]
    assert prices == [Decimal("100.00"), Decimal("100.33"), Decimal("100.66")]


def test_sell_limits_walk_from_the_mid_toward_the_bid() -> None:
    prices = [limit_price(OrderSide.SELL, QUOTE, attempt, 2) for attempt in (1, 2, 3)]
    assert prices == [Decimal("100.00"), Decimal("99.67"), Decimal("99.34")]


def test_sub_dollar_prices_use_the_hundredth_of_a_cent_tick() -> None:
    quote = Quote(Decimal("0.5000"), Decimal("0.5003"))
    assert limit_price(OrderSide.BUY, quote, 1, 1) == Decimal("0.5001")
    assert limit_price(OrderSide.SELL, quote, 1, 1) == Decimal("0.5002")
    assert tick_of(Decimal("0.99")) == Decimal("0.0001")


def test_an_attempt_past_the_repegs_is_not_a_limit() -> None:
    with pytest.raises(ValueError, match="attempt 4 is not a limit attempt of 2 re-pegs"):
        limit_price(OrderSide.BUY, QUOTE, 4, 2)


@given(
    st.decimals(min_value="0.01", max_value=5_000, places=2),
    st.decimals(min_value=0, max_value=50, places=2),
    st.integers(min_value=0, max_value=5),
    st.sampled_from(OrderSide),
)
def test_limits_stay_between_the_near_side_and_the_far_side(
    bid: Decimal, spread: Decimal, max_repegs: int, side: OrderSide
) -> None:
    quote = Quote(bid, bid + spread)
    previous = None
    for attempt in range(1, max_repegs + 2):
        price = limit_price(side, quote, attempt, max_repegs)
        assert price > 0
        assert price == price.quantize(tick_of(price))
        if side is OrderSide.BUY:
            assert price <= quote.ask
            assert previous is None or price >= previous
        else:
            assert price >= quote.bid
            assert previous is None or price <= previous
        previous = price
