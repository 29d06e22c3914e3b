"""PlanOrderExecutor and execute_orders against the embedded paper broker (SPEC 3.4, 3.5)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from plan_factory import Trade, liquidate, planned
from reactivex.testing import ReactiveTest, TestScheduler
from support import T0, FixedClock, paper_account, record, started_broker

from rebalance_stream.brokers.paper import (
    FILL_MODEL_REJECT_REASON,
    PaperBroker,
    broker_order_id_for,
)
from rebalance_stream.brokers.protocol import (
    AccountSnapshot,
    AssetInfo,
    BrokerOrder,
    BrokerOrderStatus,
    BrokerUnavailable,
    DuplicateClientOrderId,
    OrderRequest,
    UnknownAsset,
)
from rebalance_stream.contracts.client_order_id import client_order_id
from rebalance_stream.contracts.execution import OrderResult, OrderSide, Scenario, SkipReason
from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlan, RebalancePlanned
from rebalance_stream.operators.execute import execute_orders
from rebalance_stream.operators.flow import (
    Envelope,
    EventIdentity,
    Failed,
    PlanExecution,
    Skipped,
)
from rebalance_stream.operators.order_execution import (
    ExecutionConfig,
    OrderRecording,
    PlanOrderExecutor,
    slippage_bps,
)
from rebalance_stream.streams.pipeline import utc_now

PLAN_ID = "plan-exec"
BUY = OrderSide.BUY
SELL = OrderSide.SELL
ROTATION = [
    liquidate("TQQQ", "-8000.00", priority=1),
    Trade("VTI", "BUY", "10000.00", priority=2),
    Trade("GLD", "BUY", "5000.00", priority=3),
]


def planned_event(trades: list[Trade], plan_id: str = PLAN_ID) -> RebalancePlanned:
    return RebalancePlanned.model_validate(planned(plan_id, trades))


def plan_of(trades: list[Trade], plan_id: str = PLAN_ID) -> RebalancePlan:
    return planned_event(trades, plan_id).rebalance_plan


def cid(symbol: str, side: OrderSide, plan_id: str = PLAN_ID) -> str:
    return client_order_id(plan_id, symbol, side)


class SleepLog:
    """Replaces time.sleep: advances the fixed clock and remembers each sleep."""

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)


class ProxyBroker:
    """A Broker that delegates to a PaperBroker, with faults injected per symbol."""

    def __init__(self, inner: PaperBroker) -> None:
        self.inner = inner
        self.unknown_assets: set[str] = set()
        self.broken_assets: set[str] = set()
        self.unavailable_on_submit: set[str] = set()
        self.duplicate_on_submit: set[str] = set()
        self.placed_before_submit: set[str] = set()
        self.unreadable_orders: set[str] = set()
        self.submitted: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_asset(self, symbol: str) -> AssetInfo:
        if symbol in self.unknown_assets:
            raise UnknownAsset(symbol)
        if symbol in self.broken_assets:
            raise RuntimeError(f"asset lookup crashed for {symbol}")
        return self.inner.get_asset(symbol)

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        self.submitted.append(request.client_order_id)
        if request.symbol in self.unavailable_on_submit:
            raise BrokerUnavailable("connection reset")
        if request.symbol in self.duplicate_on_submit:
            raise DuplicateClientOrderId(request.client_order_id)
        if request.symbol in self.placed_before_submit:
            # Another instance placed the same order between our lookup and our submit.
            self.inner.submit_order(request)
            raise DuplicateClientOrderId(request.client_order_id)
        return self.inner.submit_order(request)

    def get_order(self, broker_order_id: str) -> BrokerOrder:
        if broker_order_id in self.unreadable_orders:
            raise BrokerUnavailable("connection reset")
        return self.inner.get_order(broker_order_id)


class ConcurrencyRecorder:
    """A Broker proxy that counts how many submit_order calls run at the same time."""

    def __init__(self, inner: PaperBroker) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._running = 0
        self.max_running = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        with self._lock:
            self._running += 1
            self.max_running = max(self.max_running, self._running)
        try:
            return self.inner.submit_order(request)
        finally:
            with self._lock:
                self._running -= 1


@pytest.fixture
def sleep(clock: FixedClock) -> SleepLog:
    return SleepLog(clock)


def executor(broker: Any, clock: FixedClock, sleep: SleepLog, **config: Any) -> PlanOrderExecutor:
    return PlanOrderExecutor(broker, ExecutionConfig(**config), clock, sleep)


def filled_result(
    symbol: str, side: OrderSide, qty: str, price: str, plan_id: str = PLAN_ID
) -> OrderResult:
    client_id = cid(symbol, side, plan_id)
    return OrderResult(
        symbol=symbol,
        side=side,
        client_order_id=client_id,
        broker_order_id=broker_order_id_for(client_id),
        planned_qty=Decimal(qty),
        filled_qty=Decimal(qty),
        filled_avg_price=Decimal(price),
        status="filled",
        success=True,
        submitted_at=T0,
        filled_at=T0,
        expected_price=Decimal(price),
        slippage_bps=Decimal("0.00"),
    )


def filled_order(symbol: str, side: OrderSide, qty: str, price: str) -> BrokerOrder:
    client_id = cid(symbol, side)
    return BrokerOrder(
        broker_order_id=broker_order_id_for(client_id),
        client_order_id=client_id,
        symbol=symbol,
        side=side,
        status=BrokerOrderStatus.FILLED,
        qty=Decimal(qty),
        notional=None,
        filled_qty=Decimal(qty),
        filled_avg_price=Decimal(price),
        submitted_at=T0,
        filled_at=T0,
    )


# -- PlanOrderExecutor -----------------------------------------------------------------------


def test_executor_rotation_fills_every_order_exactly(
    paper: PaperBroker, clock: FixedClock, sleep: SleepLog
) -> None:
    plan = plan_of(ROTATION)

    outcome = executor(paper, clock, sleep).execute(plan)

    assert outcome.orders == (
        filled_result("TQQQ", SELL, "100", "80.00"),
        filled_result("VTI", BUY, "40", "250.00"),
        filled_result("GLD", BUY, "26.315789473", "190.00"),
    )
    assert outcome.timings_ms == {"sells": 0, "buying_power_wait": 0, "buys": 0}
    assert paper.list_orders("rs1-") == [
        filled_order("TQQQ", SELL, "100", "80.00"),
        filled_order("VTI", BUY, "40", "250.00"),
        filled_order("GLD", BUY, "26.315789473", "190.00"),
    ]
    assert paper.get_account() == AccountSnapshot(
        cash=Decimal("13000.00000013"), buying_power=Decimal("13000.00000013")
    )
    assert {s: paper.get_position_qty(s) for s in ["TQQQ", "VTI", "GLD", "SPY", "IWM"]} == {
        "TQQQ": Decimal(0),
        "VTI": Decimal(40),
        "GLD": Decimal("26.315789473"),
        "SPY": Decimal(40),
        "IWM": Decimal(10),
    }
    assert sleep.calls == []


def test_executor_sells_and_buys_every_sell_is_submitted_before_any_buy(
    paper: PaperBroker, clock: FixedClock, sleep: SleepLog
) -> None:
    plan = plan_of(
        [
            Trade("VTI", "BUY", "1000.00", priority=1),
            Trade("SPY", "SELL", "-1000.00", priority=5),
            Trade("GLD", "BUY", "1000.00", priority=1),
            liquidate("IWM", "-2000.00", priority=4),
        ]
    )

    outcome = executor(paper, clock, sleep).execute(plan)

    assert [o.side for o in paper.list_orders("rs1-")] == [SELL, SELL, BUY, BUY]
    assert [o.symbol for o in outcome.orders] == ["VTI", "SPY", "GLD", "IWM"]
    assert [o.status for o in outcome.orders] == ["filled"] * 4


def test_executor_one_slot_submits_in_priority_order(
    paper: PaperBroker, clock: FixedClock, sleep: SleepLog
) -> None:
    plan = plan_of(
        [
            Trade("GLD", "BUY", "1000.00", priority=3),
            Trade("SPY", "SELL", "-1000.00", priority=2),
            Trade("VTI", "BUY", "1000.00", priority=1),
            Trade("IWM", "SELL", "-400.00", priority=1),
            Trade("ARKK", "BUY", "400.00", priority=3),
            Trade("TQQQ", "SELL", "-800.00", priority=5),
        ]
    )

    executor(paper, clock, sleep, max_concurrent_orders=1).execute(plan)

    assert [o.symbol for o in paper.list_orders("rs1-")] == [
        "IWM",
        "SPY",
        "TQQQ",
        "VTI",
        "GLD",
        "ARKK",
    ]


def test_executor_buy_exceeding_buying_power_after_sells_is_skipped_and_never_sent(
    paper: PaperBroker, clock: FixedClock, sleep: SleepLog
) -> None:
    plan = plan_of(
        [
            liquidate("IWM", "-2000.00", priority=1),
            Trade("VTI", "BUY", "15000.00", priority=1),
            Trade("GLD", "BUY", "9000.00", priority=2),
            Trade("SPY", "BUY", "5000.00", priority=3),
        ]
    )

    outcome = executor(paper, clock, sleep).execute(plan)

    assert outcome.orders[2] == OrderResult(
        symbol="GLD",
        side=BUY,
        client_order_id=cid("GLD", BUY),
        planned_qty=Decimal("47.368421052"),
        status="skipped",
        success=False,
        skipped=True,
        skip_reason=SkipReason.INSUFFICIENT_BUYING_POWER,
        expected_price=Decimal("190.00"),
        attempts=0,
    )
    assert [o.symbol for o in paper.list_orders("rs1-")] == ["IWM", "VTI", "SPY"]
    assert [o.status for o in outcome.orders] == ["filled", "filled", "skipped", "filled"]
    assert paper.get_account().cash == Decimal("2000.00")


def test_executor_reject_fill_model_is_rejected_without_success(
    clock: FixedClock, sleep: SleepLog
) -> None:
    account = paper_account(fill={"default": "immediate", "VTI": "reject"})
    broker = started_broker(account, clock)
    client_id = cid("VTI", BUY)

    outcome = executor(broker, clock, sleep).execute(plan_of([Trade("VTI", "BUY", "1000.00")]))

    assert outcome.orders == (
        OrderResult(
            symbol="VTI",
            side=BUY,
            client_order_id=client_id,
            broker_order_id=broker_order_id_for(client_id),
            planned_qty=Decimal(4),
            status="rejected",
            success=False,
            error_message=FILL_MODEL_REJECT_REASON,
            submitted_at=T0,
            expected_price=Decimal("250.00"),
        ),
    )
    assert broker.get_account().cash == Decimal("20000.00")
    broker.close()


def test_executor_partial_fill_model_is_canceled_with_half_filled(
    paper: PaperBroker, clock: FixedClock, sleep: SleepLog
) -> None:
    plan = plan_of([Trade("ARKK", "BUY", "2000.00")])

    outcome = executor(paper, clock, sleep).execute(plan)

    (result,) = outcome.orders
    assert (result.status, result.success) == ("canceled", False)
    assert (result.planned_qty, result.filled_qty) == (Decimal(50), Decimal(25))
    assert paper.get_position_qty("ARKK") == Decimal(25)


def test_executor_delayed_fill_is_filled_after_polling(clock: FixedClock, sleep: SleepLog) -> None:
    account = paper_account(fill={"default": "immediate", "VTI": {"delay_ms": 500}})
    broker = started_broker(account, clock)

    outcome = executor(broker, clock, sleep).execute(plan_of([Trade("VTI", "BUY", "1000.00")]))

    (result,) = outcome.orders
    assert (result.status, result.success, result.filled_qty) == ("filled", True, Decimal(4))
    assert result.submitted_at == T0
    assert result.filled_at == T0 + timedelta(milliseconds=500)
    assert sleep.calls == [0.1] * 5
    assert outcome.timings_ms == {"sells": 0, "buying_power_wait": 0, "buys": 500}
    assert broker.get_position_qty("VTI") == Decimal(4)
    broker.close()


def test_executor_fill_slower_than_deadline_is_canceled_with_nothing_filled(
    clock: FixedClock, sleep: SleepLog
) -> None:
    account = paper_account(fill={"default": "immediate", "VTI": {"delay_ms": 5000}})
    broker = started_broker(account, clock)
    config = {"order_deadline_s": 1.0, "cancel_grace_s": 0.5, "poll_interval_s": 0.1}

    outcome = executor(broker, clock, sleep, **config).execute(
        plan_of([Trade("VTI", "BUY", "1000.00")])
    )

    (result,) = outcome.orders
    assert (result.status, result.success, result.filled_qty) == ("canceled", False, Decimal(0))
    assert (result.filled_avg_price, result.filled_at) == (None, None)
    assert sleep.calls == [0.1] * 10
    assert [o.status for o in broker.list_orders("rs1-")] == [BrokerOrderStatus.CANCELED]
    assert broker.get_account() == AccountSnapshot(
        cash=Decimal("20000.00"), buying_power=Decimal("20000.00")
    )
    broker.close()


def test_executor_same_plan_again_adopts_orders_and_places_none(
    paper: PaperBroker, clock: FixedClock, sleep: SleepLog
) -> None:
    plan = plan_of(ROTATION)
    first = executor(paper, clock, sleep).execute(plan)
    orders_before = paper.list_orders("rs1-")
    broker = ProxyBroker(paper)

    again = executor(broker, clock, sleep).execute(plan)

    assert paper.list_orders("rs1-") == orders_before
    assert len(orders_before) == 3
    assert broker.submitted == []
    # An adopted order is not priced again, so it carries no expected price or slippage.
    unpriced = {"expected_price": None, "slippage_bps": None}
    assert again.orders == tuple(o.model_copy(update=unpriced) for o in first.orders)


def test_executor_duplicate_on_submit_adopts_the_order_at_the_broker(
    paper: PaperBroker, clock: FixedClock, sleep: SleepLog
) -> None:
    broker = ProxyBroker(paper)
    broker.placed_before_submit.add("VTI")
    client_id = cid("VTI", BUY)

    outcome = executor(broker, clock, sleep).execute(plan_of([Trade("VTI", "BUY", "1000.00")]))

    assert outcome.orders == (filled_result("VTI", BUY, "4", "250.00"),)
    assert [o.client_order_id for o in paper.list_orders("rs1-")] == [client_id]


def test_executor_adopted_open_order_that_cannot_be_read_is_an_error_result(
    clock: FixedClock, sleep: SleepLog
) -> None:
    account = paper_account(fill={"default": "immediate", "VTI": {"delay_ms": 60_000}})
    paper = started_broker(account, clock)
    client_id = cid("VTI", BUY)
    paper.submit_order(OrderRequest(client_id, "VTI", BUY, qty=Decimal(3)))
    broker = ProxyBroker(paper)
    broker.unreadable_orders.add(broker_order_id_for(client_id))

    outcome = executor(broker, clock, sleep).execute(plan_of([Trade("VTI", "BUY", "1000.00")]))

    assert outcome.orders == (
        OrderResult(
            symbol="VTI",
            side=BUY,
            client_order_id=client_id,
            # The adopted order is named, and when it was sent.
            broker_order_id=broker_order_id_for(client_id),
            planned_qty=Decimal(3),
            status="error",
            success=False,
            error_message="BrokerUnavailable: connection reset",
            submitted_at=T0,
        ),
    )
    assert broker.submitted == []
    paper.close()


def test_executor_unknown_asset_is_skipped_no_quote(
    paper: PaperBroker, clock: FixedClock, sleep: SleepLog
) -> None:
    broker = ProxyBroker(paper)
    broker.unknown_assets.add("GLD")
    plan = plan_of([Trade("VTI", "BUY", "1000.00"), Trade("GLD", "BUY", "1000.00")])

    outcome = executor(broker, clock, sleep).execute(plan)

    assert outcome.orders[1] == OrderResult(
        symbol="GLD",
        side=BUY,
        client_order_id=cid("GLD", BUY),
        planned_qty=Decimal(0),
        status="skipped",
        success=False,
        skipped=True,
        skip_reason=SkipReason.NO_QUOTE,
        attempts=0,
    )
    assert [o.symbol for o in paper.list_orders("rs1-")] == ["VTI"]


def test_executor_broker_unavailable_on_submit_is_an_error_result(
    paper: PaperBroker, clock: FixedClock, sleep: SleepLog
) -> None:
    broker = ProxyBroker(paper)
    broker.unavailable_on_submit.add("VTI")

    outcome = executor(broker, clock, sleep).execute(plan_of([Trade("VTI", "BUY", "1000.00")]))

    assert outcome.orders == (
        OrderResult(
            symbol="VTI",
            side=BUY,
            client_order_id=cid("VTI", BUY),
            planned_qty=Decimal(4),
            status="error",
            success=False,
            error_message="BrokerUnavailable: connection reset",
            expected_price=Decimal("250.00"),
        ),
    )


def test_executor_sell_of_reserved_shares_refused_by_broker_is_a_rejected_result(
    clock: FixedClock, sleep: SleepLog
) -> None:
    account = paper_account(fill={"default": "immediate", "IWM": {"delay_ms": 60_000}})
    broker = started_broker(account, clock)
    broker.submit_order(OrderRequest("manual-1", "IWM", SELL, qty=Decimal(10)))

    outcome = executor(broker, clock, sleep).execute(plan_of([liquidate("IWM", "-2000.00")]))

    assert outcome.orders == (
        OrderResult(
            symbol="IWM",
            side=SELL,
            client_order_id=cid("IWM", SELL),
            planned_qty=Decimal(10),
            status="rejected",
            success=False,
            error_message="cannot sell 10 IWM: 0 available",
            expected_price=Decimal("200.00"),
        ),
    )
    assert broker.list_orders("rs1-") == []
    broker.close()


def test_executor_liquidation_of_fractional_non_fractionable_position_sells_whole_shares(
    clock: FixedClock, sleep: SleepLog
) -> None:
    broker = started_broker(paper_account(positions={"IWM": "10.5"}), clock)

    outcome = executor(broker, clock, sleep).execute(plan_of([liquidate("IWM", "-2100.00")]))

    assert outcome.orders == (filled_result("IWM", SELL, "10", "200.00"),)
    assert broker.get_position_qty("IWM") == Decimal("0.5")
    broker.close()


def test_executor_duplicate_without_order_at_broker_is_unknown(
    paper: PaperBroker, clock: FixedClock, sleep: SleepLog
) -> None:
    broker = ProxyBroker(paper)
    broker.duplicate_on_submit.add("VTI")

    outcome = executor(broker, clock, sleep).execute(plan_of([Trade("VTI", "BUY", "1000.00")]))

    assert outcome.orders == (
        OrderResult(
            symbol="VTI",
            side=BUY,
            client_order_id=cid("VTI", BUY),
            planned_qty=Decimal(4),
            status="unknown",
            success=False,
            error_message="order outcome unknown and not found",
            expected_price=Decimal("250.00"),
        ),
    )


@pytest.mark.parametrize(
    ("side", "filled", "expected"),
    [
        (BUY, "101.00", "100.00"),
        (BUY, "99.00", "-100.00"),
        (SELL, "99.00", "100.00"),
        (SELL, "100.50", "-50.00"),
    ],
)
def test_slippage_bps_worse_fill_is_positive(side: OrderSide, filled: str, expected: str) -> None:
    assert slippage_bps(side, Decimal("100.00"), Decimal(filled)) == Decimal(expected)


@pytest.fixture
def slow_broker() -> Iterator[PaperBroker]:
    broker = PaperBroker(paper_account(latency_ms=100), clock=utc_now)
    broker.start()
    yield broker
    broker.close()


def test_executor_four_buys_with_four_slots_overlap_at_the_broker(
    slow_broker: PaperBroker,
) -> None:
    broker = ConcurrencyRecorder(slow_broker)
    plan = plan_of([Trade(s, "BUY", "1000.00") for s in ["VTI", "GLD", "SPY", "IWM"]])
    config = ExecutionConfig(max_concurrent_orders=4)

    outcome = PlanOrderExecutor(broker, config, utc_now, time.sleep).execute(plan)

    assert [(o.symbol, o.status) for o in outcome.orders] == [
        ("VTI", "filled"),
        ("GLD", "filled"),
        ("SPY", "filled"),
        ("IWM", "filled"),
    ]
    assert len(slow_broker.list_orders("rs1-")) == 4
    assert broker.max_running >= 2


# -- execute_orders --------------------------------------------------------------------------


def envelope(offset: int, payload: Any, event: RebalancePlanned | None) -> Envelope[Any]:
    identity = EventIdentity()
    if event is not None:
        identity = EventIdentity(event.event_id, event.correlation_id, "RebalancePlanned", "1.0")
    doc = planned(f"plan-{offset}", [])
    return Envelope(record(doc, offset), payload, identity, event, {"risk": 3})


def test_execute_orders_broker_crash_fails_the_plan_and_later_plans_still_run(
    paper: PaperBroker, clock: FixedClock, sleep: SleepLog
) -> None:
    broker = ProxyBroker(paper)
    broker.broken_assets.add("GLD")
    first_event = planned_event([Trade("VTI", "BUY", "1000.00")], "plan-1")
    broken_event = planned_event([Trade("GLD", "BUY", "1000.00")], "plan-2")
    last_event = planned_event([Trade("SPY", "SELL", "-1000.00")], "plan-4")
    first = envelope(1, first_event, first_event)
    broken = envelope(2, broken_event, broken_event)
    duplicate = envelope(3, Skipped("DUPLICATE_EVENT", "seen before"), None)
    last = envelope(4, last_event, last_event)
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        ReactiveTest.on_next(210, first),
        ReactiveTest.on_next(220, broken),
        ReactiveTest.on_next(230, duplicate),
        ReactiveTest.on_next(240, last),
        ReactiveTest.on_completed(250),
    )
    op = execute_orders(broker, ExecutionConfig(), clock, sleep)

    results = scheduler.start(lambda: source.pipe(op))

    timings = {"risk": 3, "sells": 0, "buying_power_wait": 0, "buys": 0}
    failed = Failed(
        stage=FailureStep.EXECUTION,
        reason_code="UNEXPECTED_ERROR",
        reason="unexpected error in execute_orders: RuntimeError: asset lookup crashed for GLD",
        error_type="RuntimeError",
        step="execute_orders",
    )
    first_result = filled_result("VTI", BUY, "4", "250.00", "plan-1")
    last_result = filled_result("SPY", SELL, "2", "500.00", "plan-4")
    assert results.messages == [
        ReactiveTest.on_next(
            210,
            first.with_payload(
                PlanExecution(Scenario.EXECUTED, (first_result,), T0, T0, "execute_orders"),
                timings_ms=timings,
            ),
        ),
        ReactiveTest.on_next(220, broken.failed(failed)),
        ReactiveTest.on_next(230, duplicate),
        ReactiveTest.on_next(
            240,
            last.with_payload(
                PlanExecution(Scenario.EXECUTED, (last_result,), T0, T0, "execute_orders"),
                timings_ms=timings,
            ),
        ),
        ReactiveTest.on_completed(250),
    ]


# -- recording: intents before orders, terminals after, checkpoints --------------------------


class JournalLog:
    """An OrderJournal and checkpoint that write every call to one shared timeline."""

    def __init__(self) -> None:
        self.timeline: list[tuple[str, Any]] = []

    def record_intents(self, intents: Any) -> None:
        self.timeline.append(("intents", [(i.symbol, i.qty, i.expected_price) for i in intents]))

    def record_terminals(self, terminals: Any) -> None:
        self.timeline.append(("terminals", [(t.client_order_id, t.status) for t in terminals]))

    def checkpoint(self, name: str) -> None:
        self.timeline.append(("checkpoint", name))


def test_executor_records_each_phase_intents_before_sending_and_terminals_after(
    paper: PaperBroker, clock: FixedClock, sleep: SleepLog
) -> None:
    log = JournalLog()
    recording = OrderRecording(log, log.checkpoint)
    # One slot, so the two buys' checkpoints cannot interleave.
    one_slot = ExecutionConfig(max_concurrent_orders=1)
    run = PlanOrderExecutor(paper, one_slot, clock, sleep, recording)

    run.execute(plan_of(ROTATION))

    assert log.timeline == [
        ("intents", [("TQQQ", Decimal(100), Decimal("80.00"))]),
        ("checkpoint", "before_order"),
        ("checkpoint", "between_orders"),
        ("terminals", [(cid("TQQQ", SELL), "filled")]),
        (
            "intents",
            [
                ("VTI", Decimal(40), Decimal("250.00")),
                ("GLD", Decimal("26.315789473"), Decimal("190.00")),
            ],
        ),
        ("checkpoint", "before_order"),
        ("checkpoint", "between_orders"),
        ("checkpoint", "before_order"),
        ("checkpoint", "between_orders"),
        ("terminals", [(cid("VTI", BUY), "filled"), (cid("GLD", BUY), "filled")]),
        ("checkpoint", "after_orders"),
    ]


def test_executor_adopted_orders_are_not_intended_again_but_their_terminals_are_recorded(
    paper: PaperBroker, clock: FixedClock, sleep: SleepLog
) -> None:
    executor(paper, clock, sleep).execute(plan_of([Trade("VTI", "BUY", "1000.00")]))
    log = JournalLog()
    recording = OrderRecording(log, log.checkpoint)

    PlanOrderExecutor(paper, ExecutionConfig(), clock, sleep, recording).execute(
        plan_of([Trade("VTI", "BUY", "1000.00")])
    )

    assert log.timeline == [
        ("terminals", [(cid("VTI", BUY), "filled")]),
        ("checkpoint", "after_orders"),
    ]


def test_executor_skipped_orders_are_neither_intended_nor_recorded(
    paper: PaperBroker, clock: FixedClock, sleep: SleepLog
) -> None:
    log = JournalLog()
    recording = OrderRecording(log, log.checkpoint)

    outcome = PlanOrderExecutor(paper, ExecutionConfig(), clock, sleep, recording).execute(
        plan_of([Trade("VTI", "BUY", "0.50")])
    )

    assert [o.skip_reason for o in outcome.orders] == [SkipReason.BELOW_MIN_NOTIONAL]
    assert log.timeline == [("checkpoint", "after_orders")]


def test_executor_plan_deadline_cuts_the_sell_short_and_sends_no_buy(
    clock: FixedClock, sleep: SleepLog
) -> None:
    account = paper_account(fill={"default": "immediate", "TQQQ": {"delay_ms": 60_000}})
    broker = started_broker(account, clock)
    config = {"order_deadline_s": 30.0, "plan_deadline_s": 2.0, "poll_interval_s": 0.5}
    plan = plan_of([Trade("TQQQ", "SELL", "-800.00", 1), Trade("VTI", "BUY", "1000.00", 2)])

    outcome = executor(broker, clock, sleep, **config).execute(plan)

    sell, buy = outcome.orders
    assert (sell.symbol, sell.status, sell.filled_qty) == ("TQQQ", "canceled", Decimal(0))
    assert (buy.symbol, buy.status, buy.success) == ("VTI", "not_sent", False)
    assert buy.error_message == "the plan's deadline passed before sending"
    assert sleep.calls == [0.5] * 4
    assert [o.symbol for o in broker.list_orders("rs1-")] == ["TQQQ"]
    broker.close()
