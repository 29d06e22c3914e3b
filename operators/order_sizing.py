"""Pure sizing of one plan item into an order (SPEC 3.4): liquidation, rounding, dust.

Guarantees: a sell never asks for more than is held; a quantity is rounded down (whole
shares for assets that cannot be fractional, 9 decimals otherwise); a skip says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, Decimal

from rebalance_stream.contracts.client_order_id import client_order_id
from rebalance_stream.contracts.execution import OrderSide, SkipReason
from rebalance_stream.contracts.rebalance import RebalancePlanItem, TradeAction
from rebalance_stream.contracts.wire import strip_trailing_zeros

FRACTIONAL_QTY_STEP = Decimal("0.000000001")
WHOLE_SHARE = Decimal(1)


@dataclass(frozen=True, slots=True)
class MarketFacts:
    """What the broker said about a symbol just before sizing."""

    price: Decimal | None
    held_qty: Decimal
    fractionable: bool


@dataclass(frozen=True, slots=True)
class SizedOrder:
    """An item sized into an order, or the reason it is skipped."""

    symbol: str
    side: OrderSide
    client_order_id: str
    priority: int
    qty: Decimal
    expected_price: Decimal | None
    skip: SkipReason | None = None
    # Facts about the order, not part of what it is: equality ignores them.
    fractionable: bool = field(default=True, compare=False)
    cost_price: Decimal | None = field(default=None, compare=False)
    """The price buying power is reserved at: the ask when known, if above expected_price."""

    @property
    def notional(self) -> Decimal:
        return self.qty * self.expected_price if self.expected_price is not None else Decimal(0)

    @property
    def cost(self) -> Decimal:
        """What the order needs of the buying power: qty at the cost price, else expected."""
        price = self.cost_price or self.expected_price
        return self.qty * price if price is not None else Decimal(0)

    def costed_at(self, price: Decimal) -> SizedOrder:
        """This order with buying power reserved at ``price`` when above its expected price."""
        expected = self.expected_price or Decimal(0)
        return replace(self, cost_price=max(price, expected))


def round_qty_down(qty: Decimal, fractionable: bool) -> Decimal:
    """Round down to the asset's step; trailing zeros are dropped (20.000000000 -> 20)."""
    step = FRACTIONAL_QTY_STEP if fractionable else WHOLE_SHARE
    return strip_trailing_zeros(qty.quantize(step, rounding=ROUND_DOWN))


def side_of(item: RebalancePlanItem) -> OrderSide:
    return OrderSide.BUY if item.action is TradeAction.BUY else OrderSide.SELL


def _target_qty(item: RebalancePlanItem, facts: MarketFacts, price: Decimal) -> Decimal:
    # The held quantity is rounded down too: a non-fractionable asset can still be held in a
    # fraction (after a split, say), and only whole shares of it can be sold.
    sellable = round_qty_down(max(facts.held_qty, Decimal(0)), facts.fractionable)
    if item.liquidates:
        return sellable
    qty = round_qty_down(abs(item.trade_amount) / price, facts.fractionable)
    if item.action is TradeAction.SELL:
        qty = min(qty, sellable)
    return qty


def _skip_reason(
    item: RebalancePlanItem, facts: MarketFacts, qty: Decimal, min_notional: Decimal
) -> SkipReason | None:
    """Why not to send the order, judged on the order itself (qty x price), not the plan."""
    if item.action is TradeAction.SELL and facts.held_qty <= 0:
        return SkipReason.NO_POSITION
    if qty <= 0:
        planned = abs(item.trade_amount)
        dust = planned < min_notional and not item.liquidates
        return SkipReason.BELOW_MIN_NOTIONAL if dust else SkipReason.ROUNDS_TO_ZERO
    if facts.price is not None and qty * facts.price < min_notional:
        return SkipReason.BELOW_MIN_NOTIONAL
    return None


def size_order(
    plan_id: str, item: RebalancePlanItem, facts: MarketFacts, min_notional: Decimal
) -> SizedOrder:
    """Size a BUY or SELL item at the given price; HOLD items are never sized."""
    if item.action is TradeAction.HOLD:
        raise ValueError(f"{item.symbol}: HOLD items are not orders")
    side = side_of(item)
    order_id = client_order_id(plan_id, item.symbol, side)

    def sized(qty: Decimal, skip: SkipReason | None) -> SizedOrder:
        return SizedOrder(
            item.symbol, side, order_id, item.priority, qty, facts.price, skip, facts.fractionable
        )

    if facts.price is None or facts.price <= 0:
        return sized(Decimal(0), SkipReason.NO_QUOTE)
    qty = _target_qty(item, facts, facts.price)
    return sized(qty, _skip_reason(item, facts, qty, min_notional))


def buys_cost(buys: list[SizedOrder]) -> Decimal:
    """The buying power that the buys not skipped need."""
    return sum((order.cost for order in buys if order.skip is None), Decimal(0))


def allocate_buying_power(buys: list[SizedOrder], buying_power: Decimal) -> list[SizedOrder]:
    """Skip, in priority order, each buy that no longer fits the remaining buying power."""
    remaining = buying_power
    allocated = []
    for order in buys:
        if order.skip is None:
            if order.cost > remaining:
                order = replace(order, skip=SkipReason.INSUFFICIENT_BUYING_POWER)
            else:
                remaining -= order.cost
        allocated.append(order)
    return allocated


def scale_buys(
    buys: list[SizedOrder], buying_power: Decimal, min_notional: Decimal
) -> list[SizedOrder]:
    """Scale every buy by one factor so that together they fit the buying power; each qty is
    rounded down to its asset's step. A buy that scales below the minimum notional (or to 0)
    is skipped as INSUFFICIENT_BUYING_POWER. Buys that fit already are returned unchanged."""
    needed = buys_cost(buys)
    if needed <= buying_power:
        return buys
    factor = max(buying_power, Decimal(0)) / needed
    scaled = []
    for order in buys:
        if order.skip is None:
            qty = round_qty_down(order.qty * factor, order.fractionable)
            order = replace(order, qty=qty)
            if qty <= 0 or order.notional < min_notional:
                order = replace(order, skip=SkipReason.INSUFFICIENT_BUYING_POWER)
        scaled.append(order)
    return scaled
