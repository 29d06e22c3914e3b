"""Limit prices for ``limit_then_market``: inside the spread, moved toward the far side.

Attempt 1 rests at the mid; each re-peg moves an equal step toward the far side (the ask for
a buy, the bid for a sell) without reaching it, and the market order that follows crosses:

    bid 99.00, ask 101.00, max_repegs 2:   buy  100.00 -> 100.33 -> 100.66 -> market
                                           sell 100.00 ->  99.67 ->  99.34 -> market

Prices are on Alpaca's tick (a cent at $1 and above, 1/100 of a cent below), rounded away
from the far side, so a limit never pays more than the step it was given. Pure functions.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from rebalance_stream.brokers.protocol import Quote
from rebalance_stream.contracts.execution import OrderSide

CENT = Decimal("0.01")
SUB_DOLLAR_TICK = Decimal("0.0001")
ONE_DOLLAR = Decimal(1)


def tick_of(price: Decimal) -> Decimal:
    """The smallest price increment at ``price``."""
    return CENT if price >= ONE_DOLLAR else SUB_DOLLAR_TICK


def limit_price(side: OrderSide, quote: Quote, attempt: int, max_repegs: int) -> Decimal:
    """The limit price of ``attempt`` (1 = first placement, up to ``max_repegs + 1``)."""
    if not 1 <= attempt <= max_repegs + 1:
        raise ValueError(f"attempt {attempt} is not a limit attempt of {max_repegs} re-pegs")
    half_spread = quote.spread / 2
    toward_far_side = half_spread * (attempt - 1) / (max_repegs + 1)
    if side is OrderSide.BUY:
        raw = quote.mid + toward_far_side
        return max(raw.quantize(tick_of(raw), rounding=ROUND_FLOOR), tick_of(raw))
    raw = quote.mid - toward_far_side
    return raw.quantize(tick_of(raw), rounding=ROUND_CEILING)
