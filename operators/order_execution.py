"""Execute one plan's orders at a Broker (SPEC 3.4): sells, then buys, each to a terminal state.

Before any order, every traded symbol's price and fresh quote pass the price sanity check; a
breach denies the plan with no order sent. Within a phase, orders run concurrently up to
``max_concurrent_orders`` and take their slots in priority order (1 first). Buys start after
every sell is terminal and the sells' proceeds show in buying power (or a bounded wait ends);
buys it cannot cover are skipped or scaled down, as configured, so that no buy is sent that
is certain to be rejected. A fault of one order becomes that order's failed OrderResult. Each
phase's new orders go on record as intents, durably, before any of them is sent (SPEC 3.9),
and every order's terminal state after the phase.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

import structlog

from rebalance_stream.brokers.account_reads import AccountReads, BrokerAccountReads
from rebalance_stream.brokers.order_watch import OrderWatch, PollingOrderWatch
from rebalance_stream.brokers.protocol import (
    Broker,
    BrokerOrder,
    BrokerOrderStatus,
    MarketData,
    MarketSnapshots,
    Quote,
    UnknownAsset,
)
from rebalance_stream.contracts.client_order_id import client_order_id, with_attempt
from rebalance_stream.contracts.execution import OrderResult
from rebalance_stream.contracts.rebalance import RebalancePlan, RebalancePlanItem, TradeAction
from rebalance_stream.operators.execution_config import (
    BuyingPowerShortfall,
    ExecutionConfig,
    ExecutionStrategy,
)
from rebalance_stream.operators.flow import Clock, elapsed_ms
from rebalance_stream.operators.order_placement import (
    BEFORE_ORDER,
    BETWEEN_ORDERS,
    ItemOutcome,
    OrderPlacer,
    PlacementHooks,
)
from rebalance_stream.operators.order_pool import OrderPool, PlanTasks
from rebalance_stream.operators.order_recording import (
    OrderRecording,
    always_active,
    intent_of,
    no_checkpoint,
)
from rebalance_stream.operators.order_results import (
    skipped_result,
    slippage_bps,
    terminals_of,
)
from rebalance_stream.operators.order_sizing import (
    MarketFacts,
    SizedOrder,
    allocate_buying_power,
    buys_cost,
    scale_buys,
    side_of,
    size_order,
)
from rebalance_stream.operators.price_sanity import check_prices
from rebalance_stream.operators.risk import KillSwitch, RiskDenial

__all__ = [
    "AFTER_ORDERS",
    "BEFORE_ORDER",
    "BETWEEN_ORDERS",
    "ExecutionConfig",
    "OrderRecording",
    "OrdersOutcome",
    "PlanOrderExecutor",
    "no_checkpoint",
    "slippage_bps",
]

log = structlog.get_logger(__name__)

AFTER_ORDERS = "after_orders"
"""Checkpoints: where a crash test may stop the process (before a submit, after each submit,
after the last order is terminal)."""
MAX_ATTEMPTS_LOOKED_UP = 20


@dataclass(frozen=True, slots=True)
class PreparedOrder:
    """A sized new order, or the orders that the broker already has for the item."""

    sized: SizedOrder
    existing: tuple[BrokerOrder, ...] = ()


@dataclass(frozen=True, slots=True)
class OrdersOutcome:
    """Every traded item's OrderResult in plan order and the time spent per phase, or the
    price sanity denial that stopped the plan before any order."""

    orders: tuple[OrderResult, ...]
    timings_ms: dict[str, int]
    denial: RiskDenial | None = None


@dataclass(frozen=True, slots=True)
class _PlanRun:
    """One execution of a plan: its deadline, and the prices, quotes and positions (read once,
    before any order) that its orders are sized at."""

    plan: RebalancePlan
    deadline: datetime
    prices: dict[str, Decimal | None]
    quotes: dict[str, Quote]
    positions: dict[str, Decimal]
    look_up_first: bool


class PlanOrderExecutor:
    """Places and follows one plan's orders. Calls block; run it off the event loop.

    ``watch`` follows placed orders (default: REST polling); ``kill_switch`` is read before
    every order, so a switch changed while a plan runs stops its next order. ``account``
    gives the positions and buying power orders are sized from (default: read from the
    broker for each plan).
    """

    def __init__(  # noqa: PLR0913 - each is an injected dependency
        self,
        broker: Broker,
        config: ExecutionConfig,
        clock: Clock,
        sleep: Callable[[float], None],
        recording: OrderRecording | None = None,
        *,
        watch: OrderWatch | None = None,
        kill_switch: Callable[[], KillSwitch] = always_active,
        pool: OrderPool | None = None,
        account: AccountReads | None = None,
    ) -> None:
        self._broker = broker
        self._account = account or BrokerAccountReads(broker)
        self._pool = pool or OrderPool()
        self._config = config
        self._clock = clock
        self._sleep = sleep
        self._recording = recording or OrderRecording()
        self._watch = watch or PollingOrderWatch(broker, clock, sleep, config.poll_interval_s)
        self._kill_switch = kill_switch

    def execute(self, plan: RebalancePlan, *, look_up_first: bool = True) -> OrdersOutcome:
        """Run sells then buys; return each non-HOLD item's result in plan order.

        ``look_up_first`` looks each item's orders up at the broker before sizing it (SPEC
        3.9, for a plan that may have been cut off). A plan the ledger has never seen skips
        the lookups: a submit whose client_order_id exists is refused, and that order is
        adopted then.
        """
        sells = _by_priority(plan.items, TradeAction.SELL)
        buys = _by_priority(plan.items, TradeAction.BUY)
        timings: dict[str, int] = {}
        with self._pool.plan_tasks(self._config.max_concurrent_orders) as pool:
            started = self._clock()
            deadline = started + timedelta(seconds=self._config.plan_deadline_s)
            symbols = [item.symbol for item in [*sells, *buys]]
            held = pool.submit(self._account.positions) if sells else None
            market = self._market_data(pool, symbols)
            positions = pool.result(held) if held is not None else {}
            prices: dict[str, Decimal | None] = {s: market.prices.get(s) for s in symbols}
            quotes = market.quotes
            denial = check_prices(prices, quotes, self._config.price_sanity)
            if denial is not None:
                log.warning("price_sanity_denied", plan_id=plan.plan_id, reason=denial.reason)
                return OrdersOutcome(
                    (), {"price_check": elapsed_ms(started, self._clock())}, denial
                )
            run = _PlanRun(plan, deadline, prices, quotes, positions, look_up_first)
            preparing_sells = [pool.submit(self._prepare, run, item) for item in sells]
            prepared_sells = [pool.result(future) for future in preparing_sells]
            selling = self._start_phase(pool, run, prepared_sells)
            # The buys are sized while the sells run (on the slots the sells leave free): their
            # prices are the plan's, and neither their assets nor their orders depend on them.
            buys_prepared = [pool.submit(self._prepare, run, item) for item in buys]
            sell_results = self._finish_phase(pool, selling)
            after_sells = self._clock()
            timings["sells"] = elapsed_ms(started, after_sells)
            prepared_buys = [pool.result(future) for future in buys_prepared]
            within = self._fit_buying_power(prepared_buys, deadline)
            after_wait = self._clock()
            timings["buying_power_wait"] = elapsed_ms(after_sells, after_wait)
            buy_results = self._run_buys(pool, run, within)
            timings["buys"] = elapsed_ms(after_wait, self._clock())
        self._recording.checkpoint(AFTER_ORDERS)
        by_symbol = {result.symbol: result for result in [*sell_results, *buy_results]}
        ordered = tuple(by_symbol[item.symbol] for item in plan.items if item.symbol in by_symbol)
        return OrdersOutcome(ordered, timings)

    def _market_data(self, pool: PlanTasks, symbols: list[str]) -> MarketData:
        """The plan's prices and quotes: one read at a venue with snapshots, else the prices
        on the pool while this thread reads the quotes."""
        broker = self._broker
        if isinstance(broker, MarketSnapshots):
            return broker.get_market_data(symbols)
        latest = pool.submit(broker.get_latest_prices, symbols)
        quotes = broker.get_quotes(symbols)
        return MarketData(pool.result(latest), quotes)

    def _run_buys(
        self, pool: PlanTasks, run: _PlanRun, prepared: list[PreparedOrder]
    ) -> list[OrderResult]:
        """The buy phase, with what its new orders cost declared to the account reads."""
        fresh = [p.sized for p in prepared if not p.existing and p.sized.skip is None]
        ids = [order.client_order_id for order in fresh]
        with self._account.spending(buys_cost(fresh), ids):
            return self._run_phase(pool, run, prepared)

    def _run_phase(
        self, pool: PlanTasks, run: _PlanRun, prepared: list[PreparedOrder]
    ) -> list[OrderResult]:
        """Record the phase's new orders as intents, run every order, record the terminals."""
        return self._finish_phase(pool, self._start_phase(pool, run, prepared))

    def _start_phase(
        self, pool: PlanTasks, run: _PlanRun, prepared: list[PreparedOrder]
    ) -> list[Future[ItemOutcome]]:
        """Record the phase's new orders as intents, then start every order on the pool."""
        fresh = [p.sized for p in prepared if not p.existing and p.sized.skip is None]
        if fresh and self._clock() < run.deadline:
            intents = [intent_of(run.plan, order, self._clock) for order in fresh]
            self._recording.journal.record_intents(intents)
        return [pool.submit(self._run, run, p) for p in prepared]

    def _finish_phase(
        self, pool: PlanTasks, running: list[Future[ItemOutcome]]
    ) -> list[OrderResult]:
        """Wait for every order of the phase; record their terminal states."""
        outcomes = [pool.result(future) for future in running]
        if any(outcome.result.status == BrokerOrderStatus.REJECTED for outcome in outcomes):
            self._account.stale("order_rejected")
        terminals = [t for outcome in outcomes for t in terminals_of(outcome.placed)]
        if terminals:
            self._recording.journal.record_terminals(terminals)
            self._account.orders_ended({t.client_order_id: t.filled_qty for t in terminals})
        return [outcome.result for outcome in outcomes]

    def _run(self, run: _PlanRun, prepared: PreparedOrder) -> ItemOutcome:
        order = prepared.sized
        if order.skip is not None and not prepared.existing:
            log.info(
                "order_skipped", client_order_id=order.client_order_id, skip_reason=order.skip.value
            )
            return ItemOutcome(skipped_result(order), ())

        def record_replacement(sized: SizedOrder, replacement_id: str, qty: Decimal) -> None:
            attempt = replace(sized, client_order_id=replacement_id, qty=qty)
            self._recording.journal.record_intents([intent_of(run.plan, attempt, self._clock)])

        hooks = PlacementHooks(self._recording.checkpoint, self._kill_switch, record_replacement)
        placer = OrderPlacer(self._broker, self._watch, self._config, self._clock, hooks)
        return placer.run(order, prepared.existing, run.deadline)

    def _prepare(self, run: _PlanRun, item: RebalancePlanItem) -> PreparedOrder:
        """Adopt the orders that exist for this item's client_order_ids, or size a new one.

        Looking up first is what makes a resumed plan safe: after a crash, the position may
        already reflect a fill, and sizing again would trade twice or skip wrongly. A new
        plan looks up only an item that sizing would skip (its position may be gone because
        an earlier attempt, recorded elsewhere, sold it).
        """
        first_id = client_order_id(run.plan.plan_id, item.symbol, side_of(item))
        existing = self._existing_orders(first_id) if run.look_up_first else ()
        if not existing:
            sized = self._size(run, item)
            if sized.skip is None or run.look_up_first:
                return PreparedOrder(sized)
            existing = self._existing_orders(first_id)
            if not existing:
                return PreparedOrder(sized)
        log.info("order_adopted", client_order_id=first_id, attempts=len(existing))
        first = existing[0]
        qty = first.qty if first.qty is not None else first.filled_qty
        # Not priced again: today's price is not what the order was sized at.
        sized = SizedOrder(item.symbol, side_of(item), first_id, item.priority, qty, None)
        return PreparedOrder(sized, existing)

    def _existing_orders(self, first_id: str) -> tuple[BrokerOrder, ...]:
        """The item's orders at the broker, attempt 1 upward until one is missing."""
        found: list[BrokerOrder] = []
        many = self._config.strategy is ExecutionStrategy.LIMIT_THEN_MARKET
        limit = MAX_ATTEMPTS_LOOKED_UP if many else 1
        while len(found) < limit:
            order = self._broker.get_order_by_client_id(with_attempt(first_id, len(found) + 1))
            if order is None:
                break
            found.append(order)
        return tuple(found)

    def _size(self, run: _PlanRun, item: RebalancePlanItem) -> SizedOrder:
        broker = self._broker
        price = run.prices.get(item.symbol)
        try:
            asset = broker.get_asset(item.symbol)
        except UnknownAsset:
            price, fractionable = None, False
        else:
            fractionable = asset.fractionable
        selling = item.action is TradeAction.SELL
        held = run.positions.get(item.symbol, Decimal(0)) if selling else Decimal(0)
        facts = MarketFacts(price=price, held_qty=held, fractionable=fractionable)
        sized = size_order(run.plan.plan_id, item, facts, self._config.min_order_notional)
        quote = run.quotes.get(item.symbol)
        if quote is not None and item.action is TradeAction.BUY:
            return sized.costed_at(quote.ask)
        return sized

    def _fit_buying_power(
        self, prepared: list[PreparedOrder], deadline: datetime
    ) -> list[PreparedOrder]:
        """Wait (bounded) for the buying power the new buys need; skip or scale what it
        still does not cover. Adopted orders are kept as they are."""
        fresh = [p.sized for p in prepared if not p.existing]
        needed = buys_cost(fresh)
        if needed <= 0:
            return prepared
        buying_power = self._wait_for_buying_power(needed, deadline)
        if self._config.buying_power_shortfall is BuyingPowerShortfall.SCALE:
            fitted = scale_buys(fresh, buying_power, self._config.min_order_notional)
        else:
            fitted = allocate_buying_power(fresh, buying_power)
        by_id = {order.client_order_id: order for order in fitted}
        return [
            p if p.existing else PreparedOrder(by_id[p.sized.client_order_id]) for p in prepared
        ]

    def _wait_for_buying_power(self, needed: Decimal, deadline: datetime) -> Decimal:
        started = self._clock()
        limit_s = min(self._config.buying_power_wait_s, (deadline - started).total_seconds())
        buying_power = self._account.buying_power(needed)
        while buying_power < needed and (self._clock() - started).total_seconds() < limit_s:
            self._sleep(self._config.poll_interval_s)
            buying_power = self._account.buying_power(needed)
        if buying_power < needed:
            log.warning(
                "buying_power_short",
                needed=str(needed),
                buying_power=str(buying_power),
                shortfall=self._config.buying_power_shortfall.value,
            )
        return buying_power


def _by_priority(
    items: Sequence[RebalancePlanItem], action: TradeAction
) -> list[RebalancePlanItem]:
    """Items of one action, priority 1 first, plan order within a priority."""
    return sorted((item for item in items if item.action is action), key=lambda i: i.priority)
