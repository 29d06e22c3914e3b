"""Placing one plan item's orders at the broker, with the configured strategy, to the end.

``market``: one market order, followed until its deadline, then canceled.
``limit_then_market``: a limit at the mid, canceled after ``repeg_after_s`` and replaced for
the remaining quantity nearer the far side, at most ``max_repegs`` times, then a market order
for what is left. Attempt n is sent as ``rs1-…-{n}``:

    limit 100.00 (-1) --rests, canceled--> limit 100.33 (-2) --4 of 10 filled, canceled-->
    limit 100.66 (-3) --rests, canceled--> market 6 (-4) --filled-->   10 filled in 4 orders

Guarantees: the next attempt is sent only once the previous order is terminal, so one item
never has two orders open (and a buy and a sell of a symbol are never open together); a
cancel that loses to a fill ends the item, with no further order; an attempt's intent is
on record before it is sent; an order already at the broker is adopted, never sent again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

import structlog

from rebalance_stream.brokers.order_watch import OrderWatch
from rebalance_stream.brokers.protocol import (
    Broker,
    BrokerError,
    BrokerOrder,
    BrokerOrderStatus,
    DuplicateClientOrderId,
    OrderRejected,
    OrderRequest,
)
from rebalance_stream.contracts.client_order_id import with_attempt
from rebalance_stream.contracts.execution import OrderResult, OrderSide
from rebalance_stream.operators.execution_config import ExecutionConfig, ExecutionStrategy
from rebalance_stream.operators.flow import Clock
from rebalance_stream.operators.limit_pricing import limit_price
from rebalance_stream.operators.order_results import failed_result, result_of
from rebalance_stream.operators.order_sizing import SizedOrder
from rebalance_stream.operators.risk import KillSwitch

log = structlog.get_logger(__name__)

BEFORE_ORDER = "before_order"
BETWEEN_ORDERS = "between_orders"
LIMIT = "limit"
MARKET = "market"
_ENDS_AN_ITEM = frozenset({BrokerOrderStatus.FILLED, BrokerOrderStatus.REJECTED})


class _Stopped(Exception):
    """No further order is sent for the item; ``status`` and the message say why."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """An item's result, and every order placed for it, oldest first."""

    result: OrderResult
    placed: tuple[BrokerOrder, ...]


@dataclass(frozen=True, slots=True)
class PlacementHooks:
    """What placement calls out to: the checkpoint crash tests stop at, the kill switch read
    before every order, and the journal write of a replacement's intent before it is sent."""

    checkpoint: Callable[[str], None]
    kill_switch: Callable[[], KillSwitch]
    record_replacement: Callable[[SizedOrder, str, Decimal], None]


class OrderPlacer:
    """Places and follows one item's orders. Calls block; thread-safe for separate items."""

    def __init__(
        self,
        broker: Broker,
        watch: OrderWatch,
        config: ExecutionConfig,
        clock: Clock,
        hooks: PlacementHooks,
    ) -> None:
        self._broker = broker
        self._watch = watch
        self._config = config
        self._clock = clock
        self._hooks = hooks

    def run(
        self, order: SizedOrder, existing: Sequence[BrokerOrder], deadline: datetime
    ) -> ItemOutcome:
        """Continue the item from the orders it already has (none for a new item)."""
        placed = list(existing)
        sent: list[str] = []
        try:
            order = self._continue(order, placed, sent, deadline)
        except _Stopped as stop:
            status, message = stop.status, str(stop)
            log.warning("order_not_sent", client_order_id=order.client_order_id, reason=message)
        except OrderRejected as exc:
            status, message = "rejected", str(exc)
            log.warning("order_rejected", client_order_id=order.client_order_id, reason=message)
        except BrokerError as exc:
            status, message = "error", f"{type(exc).__name__}: {exc}"
            log.warning("order_failed", client_order_id=order.client_order_id, error=str(exc))
        else:
            return ItemOutcome(result_of(order, placed), tuple(placed))
        attempts = len(existing) + len(sent)
        failed = failed_result(order, status, message, placed, attempts)
        return ItemOutcome(failed, tuple(placed))

    def _continue(
        self,
        order: SizedOrder,
        placed: list[BrokerOrder],
        sent: list[str],
        deadline: datetime,
    ) -> SizedOrder:
        """Follow the last order if open, then send the next ones; ``sent`` collects the
        client_order_id of each submit made, answered or not. Returns the item as sized when
        its first order was: an adopted first order keeps its own quantity."""
        order = _sized_as_first(order, placed)
        if placed and not placed[-1].is_terminal:
            placed[-1] = self._follow(placed[-1], deadline)
        while (request := self._next_request(order, placed)) is not None:
            self._may_send(order, deadline)
            if placed:
                qty = request.qty or Decimal(0)
                self._hooks.record_replacement(order, request.client_order_id, qty)
            sent.append(request.client_order_id)
            placed.append(self._follow(self._place(request), deadline))
            order = _sized_as_first(order, placed)
        return order

    def _may_send(self, order: SizedOrder, deadline: datetime) -> None:
        if self._clock() >= deadline:
            raise _Stopped("not_sent", "the plan's deadline passed before sending")
        state = self._hooks.kill_switch()
        if state is KillSwitch.HALTED:
            message = "KILL_SWITCH_HALTED: kill switch is halted, no further order is sent"
            raise _Stopped("not_sent", message)
        if state is KillSwitch.REDUCING and order.side is OrderSide.BUY:
            message = "KILL_SWITCH_REDUCING: kill switch is reducing (sells only), no buy is sent"
            raise _Stopped("not_sent", message)

    def _next_request(self, order: SizedOrder, placed: list[BrokerOrder]) -> OrderRequest | None:
        """The item's next order, or None when it is over."""
        if not placed:
            return self._request(order, 1, order.qty)
        last = placed[-1]
        strategy = self._config.strategy
        if strategy is ExecutionStrategy.MARKET or last.order_type == MARKET:
            return None
        if last.status in _ENDS_AN_ITEM:
            return None
        if not last.is_terminal:
            raise _Stopped(
                "unknown",
                f"the cancel of {last.client_order_id} was not confirmed; no further order sent",
            )
        remaining = order.qty - sum((o.filled_qty for o in placed), Decimal(0))
        price = order.expected_price or Decimal(0)
        if remaining <= 0 or remaining * price < self._config.min_order_notional:
            return None
        return self._request(order, len(placed) + 1, remaining)

    def _request(self, order: SizedOrder, attempt: int, qty: Decimal) -> OrderRequest:
        client_order_id = with_attempt(order.client_order_id, attempt)
        config = self._config
        if config.strategy is ExecutionStrategy.LIMIT_THEN_MARKET and (
            attempt <= config.max_repegs + 1
        ):
            quote = self._broker.get_quotes([order.symbol]).get(order.symbol)
            if quote is not None:
                price = limit_price(order.side, quote, attempt, config.max_repegs)
                return OrderRequest(
                    client_order_id, order.symbol, order.side, qty=qty, limit_price=price
                )
        return OrderRequest(client_order_id, order.symbol, order.side, qty=qty)

    def _place(self, request: OrderRequest) -> BrokerOrder:
        """Submit once; an order that exists already is adopted, never sent again."""
        try:
            return self._submit(request)
        except BaseException:
            self._watch.forget(request.client_order_id)
            raise

    def _submit(self, request: OrderRequest) -> BrokerOrder:
        client_order_id = request.client_order_id
        self._hooks.checkpoint(BEFORE_ORDER)
        self._watch.expect(client_order_id)
        try:
            placed = self._broker.submit_order(request)
        except DuplicateClientOrderId:
            log.info("order_adopted", client_order_id=client_order_id)
            found = self._broker.get_order_by_client_id(client_order_id)
            if found is None:
                raise _Stopped("unknown", "order outcome unknown and not found") from None
            return found
        self._hooks.checkpoint(BETWEEN_ORDERS)
        log.info(
            "order_submitted",
            client_order_id=client_order_id,
            broker_order_id=placed.broker_order_id,
            qty=str(request.qty),
            limit_price=None if request.limit_price is None else str(request.limit_price),
        )
        return placed

    def _follow(self, placed: BrokerOrder, deadline: datetime) -> BrokerOrder:
        """Wait until terminal; a limit past ``repeg_after_s``, or any order past its (or the
        plan's) deadline, is canceled and followed for ``cancel_grace_s`` more."""
        config = self._config
        wait_s = config.repeg_after_s if placed.order_type == LIMIT else config.order_deadline_s
        left_s = max(0.0, (deadline - self._clock()).total_seconds())
        order = self._watch.until_terminal(placed, min(wait_s, left_s))
        if not order.is_terminal:
            log.info("order_cancel_requested", client_order_id=order.client_order_id)
            self._broker.cancel_order(order.broker_order_id)
            order = self._watch.after_cancel(order, config.cancel_grace_s)
        self._watch.forget(order.client_order_id)
        log.info(
            "order_terminal" if order.is_terminal else "order_still_open",
            client_order_id=order.client_order_id,
            status=order.status.value,
            filled_qty=str(order.filled_qty),
        )
        return order


def _sized_as_first(order: SizedOrder, placed: list[BrokerOrder]) -> SizedOrder:
    """The item with its first order's quantity: sizing again after a crash may give another
    (the position moved), and what remains is measured against the first."""
    first_qty = placed[0].qty if placed else None
    if first_qty is None or first_qty == order.qty:
        return order
    return replace(order, qty=first_qty)
