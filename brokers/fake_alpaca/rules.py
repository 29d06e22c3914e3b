"""The fake Alpaca venue's order rules as pure functions: quantities, matching, refusals.

A ``check_*`` function takes a ticket with an upper-case symbol and the facts it needs, and
returns the ApiError Alpaca would answer for it, or None when the ticket passes.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from decimal import ROUND_DOWN, Decimal

from rebalance_stream.brokers.fake_alpaca.model import (
    ApiError,
    FillBehaviour,
    Order,
    OrderQuery,
    OrderTicket,
    Quote,
    Reject,
)
from rebalance_stream.contracts.wire import strip_trailing_zeros

QTY_QUANTUM = Decimal("1E-9")  # Alpaca takes at most 9 decimal places
WHOLE_SHARE = Decimal(1)


def round_down(qty: Decimal, quantum: Decimal) -> Decimal:
    return strip_trailing_zeros(qty.quantize(quantum, rounding=ROUND_DOWN))


def order_qty(order: Order, price: Decimal) -> Decimal:
    """The order's quantity; a notional order's is notional/price, rounded down to 9 dp."""
    if order.qty is not None:
        return order.qty
    return round_down((order.notional or Decimal(0)) / price, QTY_QUANTUM)


def crosses(ticket: OrderTicket, other: Order) -> bool:
    """Whether two opposite limit orders could fill against each other."""
    if ticket.limit_price is None or other.limit_price is None:
        return True
    buy, sell = (ticket.limit_price, other.limit_price)
    if ticket.side == "sell":
        buy, sell = sell, buy
    return buy >= sell


def matches(order: Order, query: OrderQuery) -> bool:
    """Whether an order passes a list filter."""
    if query.status != "all" and order.is_open != (query.status == "open"):
        return False
    if query.after is not None and order.submitted_at <= query.after:
        return False
    if query.until is not None and order.submitted_at >= query.until:
        return False
    if query.symbols and order.symbol not in query.symbols:
        return False
    return query.side is None or order.side == query.side


def check_unique(ticket: OrderTicket, client_order_ids: Container[str]) -> ApiError | None:
    if ticket.client_order_id in client_order_ids:
        return ApiError(422, 40010001, "client_order_id must be unique")
    return None


def check_asset(ticket: OrderTicket, symbols: Container[str]) -> ApiError | None:
    if ticket.symbol not in symbols:
        return ApiError(422, 42210000, f'asset "{ticket.symbol}" not found')
    return None


def check_fractional(ticket: OrderTicket, fractionable: bool) -> ApiError | None:
    whole = ticket.qty is not None and ticket.qty == ticket.qty.to_integral_value()
    if not whole and not fractionable:
        return ApiError(422, 42210000, "requested asset is not fractionable")
    if not whole and ticket.time_in_force != "day":
        return ApiError(422, 42210000, "fractional orders must be DAY orders")
    return None


def check_sync_reject(behaviour: FillBehaviour) -> ApiError | None:
    if isinstance(behaviour, Reject) and behaviour.sync:
        return ApiError(403, 40310000, behaviour.reason)
    return None


def check_wash(ticket: OrderTicket, orders: Iterable[Order]) -> ApiError | None:
    """An open opposite order on the symbol that a market order or a crossing limit hits."""
    for other in orders:
        if not other.is_open or other.symbol != ticket.symbol or other.side == ticket.side:
            continue
        if "market" in (other.type, ticket.type) or crosses(ticket, other):
            return ApiError(403, 40310000, "potential wash trade detected. use complex orders")
    return None


def check_buying_power(ticket: OrderTicket, quote: Quote, power: Decimal) -> ApiError | None:
    """A buy costs its notional, or its qty at the limit price (else the ask)."""
    price = ticket.limit_price or quote.ask
    cost = ticket.notional or (ticket.qty or Decimal(0)) * price
    if cost <= power:
        return None
    extra = {"buying_power": _text(power), "cost_basis": _text(cost)}
    return ApiError(403, 40310000, "insufficient buying power", extra)


def check_sell_qty(
    ticket: OrderTicket, quote: Quote, existing: Decimal, held: Decimal
) -> ApiError | None:
    """A sell needs its qty (a notional's at the bid) out of the position less open sells."""
    notional = ticket.notional or Decimal(0)
    wanted = ticket.qty or round_down(notional / quote.bid, QTY_QUANTUM)
    available = existing - held
    if wanted <= available:
        return None
    message = "insufficient qty available for order (requested: {}, available: {})"
    extra = {
        "available": _text(available),
        "existing_qty": _text(existing),
        "held_for_orders": _text(held),
        "symbol": ticket.symbol,
    }
    return ApiError(403, 40310000, message.format(_text(wanted), _text(available)), extra)


def _text(value: Decimal) -> str:
    return format(strip_trailing_zeros(value), "f")
