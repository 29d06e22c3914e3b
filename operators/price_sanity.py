"""The price sanity check (SPEC 3.10): each traded symbol's fresh quote, against itself and
against the price the orders are sized at. A breach denies the whole plan before any order.

    quote 99.00/101.00 (spread 200 bps of the mid), max_spread_bps 100 -> SPREAD_TOO_WIDE
    latest trade 112.00, quote mid 100.00, max_price_deviation_bps 500 -> PRICE_DEVIATES_FROM_QUOTE

A symbol without a quote or a price is not judged here: its order is skipped as NO_QUOTE.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from rebalance_stream.brokers.protocol import Quote
from rebalance_stream.operators.execution_config import PriceSanity
from rebalance_stream.operators.order_results import BASIS_POINTS, BPS_STEP
from rebalance_stream.operators.risk import RiskDenial


def _bps(part: Decimal, whole: Decimal) -> Decimal:
    return (part / whole * BASIS_POINTS).quantize(BPS_STEP)


def _spread_breach(symbol: str, quote: Quote, limit: Decimal) -> str | None:
    spread = _bps(quote.spread, quote.mid)
    if spread <= limit:
        return None
    return f"{symbol} quote {quote.bid}/{quote.ask} spread {spread} bps above {limit}"


def _deviation_breach(symbol: str, price: Decimal, quote: Quote, limit: Decimal) -> str | None:
    deviation = _bps(abs(price - quote.mid), quote.mid)
    if deviation <= limit:
        return None
    return (
        f"{symbol} price {price} is {deviation} bps from the quote mid {quote.mid} (above {limit})"
    )


def check_prices(
    prices: Mapping[str, Decimal | None], quotes: Mapping[str, Quote], sanity: PriceSanity
) -> RiskDenial | None:
    """The first breach over the symbols of ``prices``, in their order, or None."""
    spreads, deviations = [], []
    for symbol, price in prices.items():
        quote = quotes.get(symbol)
        if quote is None:
            continue
        if sanity.max_spread_bps is not None:
            spreads.append(_spread_breach(symbol, quote, sanity.max_spread_bps))
        if sanity.max_price_deviation_bps is not None and price is not None:
            deviations.append(
                _deviation_breach(symbol, price, quote, sanity.max_price_deviation_bps)
            )
    wide = [breach for breach in spreads if breach is not None]
    if wide:
        return RiskDenial("SPREAD_TOO_WIDE", "; ".join(wide))
    off = [breach for breach in deviations if breach is not None]
    if off:
        return RiskDenial("PRICE_DEVIATES_FROM_QUOTE", "; ".join(off))
    return None
