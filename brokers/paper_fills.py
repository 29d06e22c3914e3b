"""The paper broker's fill arithmetic: quantities from notionals, rounding, filled orders."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from rebalance_stream.brokers.protocol import BrokerOrder, BrokerOrderStatus
from rebalance_stream.contracts.wire import strip_trailing_zeros

QTY_QUANTUM = Decimal("1E-9")  # fractional quantities carry at most 9 decimal places
WHOLE_SHARE = Decimal(1)


def round_down(qty: Decimal, quantum: Decimal) -> Decimal:
    """Round down to ``quantum`` and drop trailing zeros: 20.000000000 -> 20."""
    return strip_trailing_zeros(qty.quantize(quantum, rounding=ROUND_DOWN))


def quantity_of(qty: Decimal | None, notional: Decimal | None, price: Decimal) -> Decimal:
    """An order's quantity; a notional order's is notional/price, rounded down to 9 dp."""
    if qty is not None:
        return qty
    if notional is None:
        raise ValueError("an order has exactly one of qty or notional")
    return round_down(notional / price, QTY_QUANTUM)


def executed(
    order: BrokerOrder, filled_qty: Decimal, price: Decimal, status: BrokerOrderStatus, at: datetime
) -> BrokerOrder:
    """``order`` in ``status`` with ``filled_qty`` filled at ``price``; 0 filled leaves no fill."""
    if filled_qty == 0:
        return replace(order, status=status)
    return replace(
        order, status=status, filled_qty=filled_qty, filled_avg_price=price, filled_at=at
    )
