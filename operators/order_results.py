"""OrderResults (SPEC 3.6) of one plan item: from the orders placed for it, or why none was.

An item placed as several orders (a limit, its re-pegs, then a market order for the rest) has
one result: the fills summed, the average price weighted by quantity, the last order's ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from rebalance_stream.brokers.protocol import BrokerOrder, BrokerOrderStatus
from rebalance_stream.contracts.execution import OrderResult, OrderSide
from rebalance_stream.ledger.protocol import OrderTerminal
from rebalance_stream.operators.order_sizing import SizedOrder

BASIS_POINTS = Decimal(10_000)
BPS_STEP = Decimal("0.01")
PRICE_STEP = Decimal("1E-9")


def slippage_bps(side: OrderSide, expected: Decimal, filled: Decimal) -> Decimal:
    """Positive when the fill was worse than expected: paid more, or received less."""
    signed = (filled - expected) if side is OrderSide.BUY else (expected - filled)
    return (signed / expected * BASIS_POINTS).quantize(BPS_STEP)


def skipped_result(order: SizedOrder) -> OrderResult:
    return OrderResult(
        symbol=order.symbol,
        side=order.side,
        client_order_id=order.client_order_id,
        planned_qty=order.qty,
        status="skipped",
        success=False,
        skipped=True,
        skip_reason=order.skip,
        expected_price=order.expected_price,
        attempts=0,
    )


def failed_result(
    order: SizedOrder,
    status: str,
    message: str,
    placed: Sequence[BrokerOrder] = (),
    attempts: int = 0,
) -> OrderResult:
    """An item that did not end well; what was placed for it before still counts.
    ``attempts`` counts the orders sent, including one whose submit failed."""
    if placed:
        result = result_of(order, placed)
        changes = {
            "success": False,
            "status": status,
            "error_message": message,
            "attempts": max(attempts, len(placed)),
        }
        return result.model_copy(update=changes)
    return OrderResult(
        symbol=order.symbol,
        side=order.side,
        client_order_id=order.client_order_id,
        planned_qty=order.qty,
        status=status,
        success=False,
        error_message=message,
        expected_price=order.expected_price,
        attempts=attempts,
    )


def terminals_of(placed: Sequence[BrokerOrder]) -> list[OrderTerminal]:
    """The terminal states to put on record, one per order that ended."""
    return [
        OrderTerminal(o.client_order_id, o.status.value, o.filled_qty, o.filled_avg_price)
        for o in placed
        if o.is_terminal
    ]


def _average_price(placed: Sequence[BrokerOrder], filled: Decimal) -> Decimal | None:
    if filled <= 0:
        return None
    spent = sum(
        (o.filled_qty * o.filled_avg_price for o in placed if o.filled_avg_price is not None),
        Decimal(0),
    )
    average = spent / filled
    if average == average.quantize(PRICE_STEP):
        return average
    return average.quantize(PRICE_STEP)


def result_of(order: SizedOrder, placed: Sequence[BrokerOrder]) -> OrderResult:
    """The OrderResult of the orders placed for one item; success means filled completely."""
    last = placed[-1]
    filled = sum((o.filled_qty for o in placed), Decimal(0))
    fill_price = _average_price(placed, filled)
    slippage = None
    if order.expected_price is not None and fill_price is not None:
        slippage = slippage_bps(order.side, order.expected_price, fill_price)
    complete = filled >= order.qty and last.status is BrokerOrderStatus.FILLED
    filled_at = max((o.filled_at for o in placed if o.filled_at is not None), default=None)
    return OrderResult(
        symbol=order.symbol,
        side=order.side,
        client_order_id=order.client_order_id,
        broker_order_id=last.broker_order_id,
        order_type=last.order_type,
        planned_qty=order.qty,
        filled_qty=filled,
        filled_avg_price=fill_price,
        status=last.status.value,
        success=complete,
        error_message=last.reject_reason,
        submitted_at=placed[0].submitted_at,
        filled_at=filled_at,
        expected_price=order.expected_price,
        slippage_bps=slippage,
        attempts=len(placed),
    )
