"""The paper venue's acceptance rules: which orders it takes, what its open orders hold back,
and when a limit order may fill.

An open buy holds back what its unfilled rest may still cost: at the limit price for a limit
order, at the account's price otherwise. An open sell holds back its unfilled shares.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from rebalance_stream.brokers.paper_account import PaperAccount
from rebalance_stream.brokers.paper_fills import QTY_QUANTUM, quantity_of
from rebalance_stream.brokers.paper_state import PaperState
from rebalance_stream.brokers.protocol import BrokerOrder, OrderRejected, OrderRequest
from rebalance_stream.contracts.execution import OrderSide


def price_or_reject(account: PaperAccount, symbol: str) -> Decimal:
    """The account's price for ``symbol``; OrderRejected when it has none (an unknown asset)."""
    price = account.price_of(symbol)
    if price is None:
        raise OrderRejected(f"unknown asset {symbol}")
    return price


def is_marketable(side: OrderSide, limit_price: Decimal | None, price: Decimal) -> bool:
    """Whether an order may fill at ``price``: a market order always; a limit buy at or below
    its limit, a limit sell at or above it."""
    if limit_price is None:
        return True
    return price <= limit_price if side is OrderSide.BUY else price >= limit_price


def open_cost(order: BrokerOrder, price: Decimal) -> Decimal:
    """What the unfilled rest of an open buy may still cost, ``price`` being the account's."""
    if order.notional is not None:
        return order.notional - order.filled_qty * price
    unit = price if order.limit_price is None else order.limit_price
    return (quantity_of(order.qty, None, price) - order.filled_qty) * unit


def buying_power(state: PaperState, account: PaperAccount) -> Decimal:
    """Cash minus what the open buy orders hold back."""
    reserved = sum(
        (
            open_cost(order, price_or_reject(account, order.symbol))
            for order in state.open_orders()
            if order.side is OrderSide.BUY
        ),
        Decimal(0),
    )
    return state.cash - reserved


def open_sell_qty(state: PaperState, account: PaperAccount, symbol: str) -> Decimal:
    """The shares of ``symbol`` that open sell orders may still sell."""
    price = price_or_reject(account, symbol)
    return sum(
        (
            quantity_of(o.qty, o.notional, price) - o.filled_qty
            for o in state.open_orders()
            if o.side is OrderSide.SELL and o.symbol == symbol
        ),
        Decimal(0),
    )


def check_order(state: PaperState, account: PaperAccount, request: OrderRequest) -> Decimal:
    """The account's price if the venue would accept ``request``; else raises OrderRejected.

    A buy must fit the buying power (a limit buy at its limit price); a sell must not exceed
    the position less what open sells hold back.
    """
    symbol = request.symbol.upper()
    price = price_or_reject(account, symbol)
    check_amount(request, account.is_fractionable(symbol))
    qty = quantity_of(request.qty, request.notional, price)
    if qty == 0:
        raise OrderRejected(f"notional {request.notional} buys less than 1E-9 {symbol}")
    if request.side is OrderSide.BUY:
        unit = price if request.limit_price is None else request.limit_price
        cost = request.notional if request.notional is not None else qty * unit
        if cost > buying_power(state, account):
            raise OrderRejected(f"insufficient buying power for {cost} of {symbol}")
        return price
    available = state.position(symbol) - open_sell_qty(state, account, symbol)
    if qty > available:
        raise OrderRejected(f"cannot sell {qty} {symbol}: {available} available")
    return price


def check_amount(request: OrderRequest, fractionable: bool) -> None:
    """Raises OrderRejected for a non-positive amount, a notional or fractional qty of a
    symbol that is not fractionable, or a qty with more than 9 decimal places."""
    if any(amount is not None and amount <= 0 for amount in (request.qty, request.notional)):
        raise OrderRejected("order qty and notional must be positive")
    if request.notional is not None and not fractionable:
        raise OrderRejected(f"{request.symbol} is not fractionable: no notional orders")
    if request.qty is None:
        return
    if not fractionable and request.qty != request.qty.to_integral_value():
        raise OrderRejected(f"{request.symbol} is not fractionable: qty must be whole")
    if request.qty != request.qty.quantize(QTY_QUANTUM, rounding=ROUND_DOWN):
        raise OrderRejected("qty has more than 9 decimal places")
