"""Execute one plan's orders at a Broker (SPEC 3.4): sells, then buys, each to a terminal state.

Within a phase, orders run concurrently up to ``max_concurrent_orders`` and take their slots in
priority order (1 first). Buys start after every sell is terminal and buying power was read
again. A fault of one order becomes that order's failed OrderResult; nothing here raises for a
single order's sake. Each phase's new orders go on record as intents, durably, before any of
them is sent (SPEC 3.9), and their terminal states after the phase.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import structlog

from rebalance_stream.brokers.protocol import (
    Broker,
    BrokerError,
    BrokerOrder,
    DuplicateClientOrderId,
    OrderRejected,
    OrderRequest,
    UnknownAsset,
)
from rebalance_stream.contracts.client_order_id import client_order_id
from rebalance_stream.contracts.execution import OrderResult, OrderSide
from rebalance_stream.contracts.rebalance import RebalancePlan, RebalancePlanItem, TradeAction
from rebalance_stream.ledger.protocol import OrderIntent, OrderJournal, OrderTerminal
from rebalance_stream.operators.flow import Clock, elapsed_ms
from rebalance_stream.operators.order_sizing import (
    MarketFacts,
    SizedOrder,
    allocate_buying_power,
    side_of,
    size_order,
)

log = structlog.get_logger(__name__)

BASIS_POINTS = Decimal(10_000)
BPS_STEP = Decimal("0.01")

BEFORE_ORDER = "before_order"
BETWEEN_ORDERS = "between_orders"
AFTER_ORDERS = "after_orders"
"""Checkpoints: where a crash test may stop the process (before a submit, after each submit,
after the last order is terminal)."""


class UnrecordedOrders:
    """An OrderJournal that keeps nothing: orders are then safe only by client_order_id."""

    def record_intents(self, intents: Sequence[OrderIntent]) -> None:
        """Keep nothing."""

    def record_terminals(self, terminals: Sequence[OrderTerminal]) -> None:
        """Keep nothing."""

    def open_intents(self) -> list[OrderIntent]:
        return []


def no_checkpoint(name: str) -> None:
    """Production's checkpoint: nothing happens."""


@dataclass(frozen=True, slots=True)
class OrderRecording:
    """Where orders are recorded, and the checkpoint hook that crash tests stop at."""

    journal: OrderJournal = field(default_factory=UnrecordedOrders)
    checkpoint: Callable[[str], None] = no_checkpoint


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    """How orders are sent and followed."""

    max_concurrent_orders: int = 4
    min_order_notional: Decimal = Decimal(1)
    order_deadline_s: float = 30.0
    plan_deadline_s: float = 300.0
    """No order of a plan is sent after this long, and following an order stops with it."""
    cancel_grace_s: float = 5.0
    poll_interval_s: float = 0.1


@dataclass(frozen=True, slots=True)
class PreparedOrder:
    """A sized new order, or an order that the broker already has for its client_order_id."""

    sized: SizedOrder
    existing: BrokerOrder | None


@dataclass(frozen=True, slots=True)
class OrdersOutcome:
    """Every traded item's OrderResult in plan order, and the time spent per phase."""

    orders: tuple[OrderResult, ...]
    timings_ms: dict[str, int]


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
    )


def failed_result(order: SizedOrder, status: str, message: str) -> OrderResult:
    return OrderResult(
        symbol=order.symbol,
        side=order.side,
        client_order_id=order.client_order_id,
        planned_qty=order.qty,
        status=status,
        success=False,
        error_message=message,
        expected_price=order.expected_price,
    )


def intent_of(plan: RebalancePlan, order: SizedOrder, clock: Clock) -> OrderIntent:
    return OrderIntent(
        plan_id=plan.plan_id,
        account_id=plan.account_id,
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        qty=order.qty,
        expected_price=order.expected_price,
        recorded_at=clock(),
    )


def terminal_of(result: OrderResult) -> OrderTerminal | None:
    """The terminal state to record, for an order that reached the broker."""
    if result.broker_order_id is None:
        return None
    return OrderTerminal(
        result.client_order_id, result.status, result.filled_qty, result.filled_avg_price
    )


def result_of(order: SizedOrder, placed: BrokerOrder) -> OrderResult:
    """The OrderResult of a placed order; success means filled completely."""
    fill_price = placed.filled_avg_price
    slippage = None
    if order.expected_price is not None and fill_price is not None and placed.filled_qty > 0:
        slippage = slippage_bps(order.side, order.expected_price, fill_price)
    return OrderResult(
        symbol=order.symbol,
        side=order.side,
        client_order_id=order.client_order_id,
        broker_order_id=placed.broker_order_id,
        planned_qty=order.qty,
        filled_qty=placed.filled_qty,
        filled_avg_price=fill_price,
        status=placed.status.value,
        success=placed.status.value == "filled" and placed.filled_qty >= order.qty,
        error_message=placed.reject_reason,
        submitted_at=placed.submitted_at,
        filled_at=placed.filled_at,
        expected_price=order.expected_price,
        slippage_bps=slippage,
    )


class PlanOrderExecutor:
    """Places and follows one plan's orders. Calls block; run it off the event loop."""

    def __init__(
        self,
        broker: Broker,
        config: ExecutionConfig,
        clock: Clock,
        sleep: Callable[[float], None],
        recording: OrderRecording | None = None,
    ) -> None:
        self._broker = broker
        self._config = config
        self._clock = clock
        self._sleep = sleep
        self._recording = recording or OrderRecording()

    def execute(self, plan: RebalancePlan) -> OrdersOutcome:
        """Run sells then buys; return each non-HOLD item's result in plan order."""
        sells = _by_priority(plan.items, TradeAction.SELL)
        buys = _by_priority(plan.items, TradeAction.BUY)
        timings: dict[str, int] = {}
        with ThreadPoolExecutor(max_workers=self._config.max_concurrent_orders) as pool:
            started = self._clock()
            deadline = started + timedelta(seconds=self._config.plan_deadline_s)
            prepared_sells = list(pool.map(lambda item: self._prepare(plan.plan_id, item), sells))
            sell_results = self._run_phase(pool, plan, prepared_sells, deadline)
            after_sells = self._clock()
            timings["sells"] = elapsed_ms(started, after_sells)
            buying_power = self._broker.get_account().buying_power if buys else Decimal(0)
            after_wait = self._clock()
            timings["buying_power_wait"] = elapsed_ms(after_sells, after_wait)
            prepared_buys = list(pool.map(lambda item: self._prepare(plan.plan_id, item), buys))
            within = _within(prepared_buys, buying_power)
            buy_results = self._run_phase(pool, plan, within, deadline)
            timings["buys"] = elapsed_ms(after_wait, self._clock())
        self._recording.checkpoint(AFTER_ORDERS)
        by_symbol = {result.symbol: result for result in [*sell_results, *buy_results]}
        ordered = tuple(by_symbol[item.symbol] for item in plan.items if item.symbol in by_symbol)
        return OrdersOutcome(ordered, timings)

    def _run_phase(
        self,
        pool: ThreadPoolExecutor,
        plan: RebalancePlan,
        prepared: list[PreparedOrder],
        deadline: datetime,
    ) -> list[OrderResult]:
        """Record the phase's new orders as intents, run every order, record the terminals."""
        journal = self._recording.journal
        fresh = [p.sized for p in prepared if p.existing is None and p.sized.skip is None]
        if fresh and self._clock() < deadline:
            journal.record_intents([intent_of(plan, order, self._clock) for order in fresh])
        results = list(pool.map(lambda p: self._run(p, deadline), prepared))
        terminals = [t for result in results if (t := terminal_of(result)) is not None]
        if terminals:
            journal.record_terminals(terminals)
        return results

    def _prepare(self, plan_id: str, item: RebalancePlanItem) -> PreparedOrder:
        """Adopt the order that exists for this item's client_order_id, or size a new one.

        Looking up first is what makes a resumed plan safe: after a crash, the position may
        already reflect a fill, and sizing again would trade twice or skip wrongly.
        """
        order_id = client_order_id(plan_id, item.symbol, side_of(item))
        existing = self._broker.get_order_by_client_id(order_id)
        if existing is not None:
            log.info("order_adopted", client_order_id=order_id, status=existing.status.value)
            qty = existing.qty if existing.qty is not None else existing.filled_qty
            sized = SizedOrder(item.symbol, side_of(item), order_id, item.priority, qty, None)
            return PreparedOrder(sized, existing)
        return PreparedOrder(self._size(plan_id, item), None)

    def _size(self, plan_id: str, item: RebalancePlanItem) -> SizedOrder:
        broker = self._broker
        try:
            asset = broker.get_asset(item.symbol)
            price = broker.get_latest_price(item.symbol)
            held = broker.get_position_qty(item.symbol)
        except UnknownAsset:
            price, held, fractionable = None, Decimal(0), False
        else:
            fractionable = asset.fractionable
        facts = MarketFacts(price=price, held_qty=held, fractionable=fractionable)
        return size_order(plan_id, item, facts, self._config.min_order_notional)

    def _run(self, prepared: PreparedOrder, deadline: datetime) -> OrderResult:
        if prepared.existing is None:
            return self._place_and_follow(prepared.sized, deadline)
        try:
            return result_of(prepared.sized, self._follow(prepared.existing, deadline))
        except BrokerError as exc:
            message = f"{type(exc).__name__}: {exc}"
            return failed_result(prepared.sized, "error", message)

    def _place_and_follow(self, order: SizedOrder, deadline: datetime) -> OrderResult:
        if order.skip is not None:
            log.info(
                "order_skipped", client_order_id=order.client_order_id, skip_reason=order.skip.value
            )
            return skipped_result(order)
        if self._clock() >= deadline:
            log.warning("order_not_sent_plan_deadline", client_order_id=order.client_order_id)
            return failed_result(order, "not_sent", "the plan's deadline passed before sending")
        try:
            placed = self._place(order)
            if placed is None:
                return failed_result(order, "unknown", "order outcome unknown and not found")
            return result_of(order, self._follow(placed, deadline))
        except OrderRejected as exc:
            log.warning("order_rejected", client_order_id=order.client_order_id, reason=str(exc))
            return failed_result(order, "rejected", str(exc))
        except BrokerError as exc:
            log.warning("order_failed", client_order_id=order.client_order_id, error=str(exc))
            return failed_result(order, "error", f"{type(exc).__name__}: {exc}")

    def _place(self, order: SizedOrder) -> BrokerOrder | None:
        """Submit once; an order that exists already is adopted, never sent again."""
        request = OrderRequest(order.client_order_id, order.symbol, order.side, qty=order.qty)
        self._recording.checkpoint(BEFORE_ORDER)
        try:
            placed = self._broker.submit_order(request)
        except DuplicateClientOrderId:
            log.info("order_adopted", client_order_id=order.client_order_id)
            return self._broker.get_order_by_client_id(order.client_order_id)
        self._recording.checkpoint(BETWEEN_ORDERS)
        log.info(
            "order_submitted",
            client_order_id=order.client_order_id,
            broker_order_id=placed.broker_order_id,
            qty=str(order.qty),
        )
        return placed

    def _follow(self, placed: BrokerOrder, deadline: datetime) -> BrokerOrder:
        """Poll until terminal; past the order's (or the plan's) deadline, cancel and read the
        final state."""
        left_s = max(0.0, (deadline - self._clock()).total_seconds())
        order = self._poll_until_terminal(placed, min(self._config.order_deadline_s, left_s))
        if not order.is_terminal:
            log.warning("order_deadline_cancel", client_order_id=order.client_order_id)
            self._broker.cancel_order(order.broker_order_id)
            order = self._broker.get_order(order.broker_order_id)
            order = self._poll_until_terminal(order, self._config.cancel_grace_s)
        log.info(
            "order_terminal",
            client_order_id=order.client_order_id,
            status=order.status.value,
            filled_qty=str(order.filled_qty),
        )
        return order

    def _poll_until_terminal(self, order: BrokerOrder, limit_s: float) -> BrokerOrder:
        started = self._clock()
        while not order.is_terminal and (self._clock() - started).total_seconds() < limit_s:
            self._sleep(self._config.poll_interval_s)
            order = self._broker.get_order(order.broker_order_id)
        return order


def _within(prepared: list[PreparedOrder], buying_power: Decimal) -> list[PreparedOrder]:
    """New buys that do not fit the buying power are skipped; adopted orders are kept."""
    fresh = [p.sized for p in prepared if p.existing is None]
    allocated = {
        order.client_order_id: order for order in allocate_buying_power(fresh, buying_power)
    }
    return [
        p if p.existing is not None else PreparedOrder(allocated[p.sized.client_order_id], None)
        for p in prepared
    ]


def _by_priority(
    items: Sequence[RebalancePlanItem], action: TradeAction
) -> list[RebalancePlanItem]:
    """Items of one action, priority 1 first, plan order within a priority."""
    return sorted((item for item in items if item.action is action), key=lambda i: i.priority)
