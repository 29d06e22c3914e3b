"""execution_status, failure_reason, classify_execution and classify_outcome (SPEC 3.6, 3.7)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plan_factory import Trade, planned
from reactivex.testing import ReactiveTest, TestScheduler
from support import T0, record

from rebalance_stream.contracts.client_order_id import client_order_id
from rebalance_stream.contracts.execution import (
    ExecutionMetadata,
    ExecutionResult,
    ExecutionStatus,
    OrderResult,
    OrderSide,
    Scenario,
    SkipReason,
)
from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.classify import (
    classify_execution,
    classify_outcome,
    execution_status,
    failure_reason,
)
from rebalance_stream.operators.flow import (
    Classified,
    Envelope,
    EventIdentity,
    Failed,
    PlanExecution,
    Skipped,
)

PLAN_ID = "plan-classify"
STARTED = T0
COMPLETED = T0 + timedelta(seconds=3)
TIMINGS = {"sells": 0, "buying_power_wait": 1, "buys": 2}
DUST = (SkipReason.BELOW_MIN_NOTIONAL, SkipReason.ROUNDS_TO_ZERO)
NOT_DUST = (
    SkipReason.NO_POSITION,
    SkipReason.INSUFFICIENT_BUYING_POWER,
    SkipReason.NO_QUOTE,
)


def event(plan_id: str = PLAN_ID) -> RebalancePlanned:
    trades = [Trade("VTI", "BUY", "10000.00"), Trade("ARKK", "BUY", "2000.00")]
    return RebalancePlanned.model_validate(planned(plan_id, trades))


def placed(
    symbol: str, qty: str, filled: str, price: str = "100.00", status: str | None = None
) -> OrderResult:
    full = Decimal(filled) == Decimal(qty)
    return OrderResult(
        symbol=symbol,
        side=OrderSide.BUY,
        client_order_id=client_order_id(PLAN_ID, symbol, OrderSide.BUY),
        broker_order_id=f"broker-{symbol}",
        planned_qty=Decimal(qty),
        filled_qty=Decimal(filled),
        filled_avg_price=Decimal(price) if Decimal(filled) > 0 else None,
        status=status or ("filled" if full else "canceled"),
        success=full,
        submitted_at=STARTED,
        filled_at=STARTED if Decimal(filled) > 0 else None,
        expected_price=Decimal(price),
    )


def skipped(symbol: str, reason: SkipReason) -> OrderResult:
    return OrderResult(
        symbol=symbol,
        side=OrderSide.BUY,
        client_order_id=client_order_id(PLAN_ID, symbol, OrderSide.BUY),
        planned_qty=Decimal(0),
        status="skipped",
        success=False,
        skipped=True,
        skip_reason=reason,
    )


def execution(
    orders: tuple[OrderResult, ...],
    scenario: Scenario = Scenario.EXECUTED,
    decided_by: str = "execute_orders",
) -> PlanExecution:
    return PlanExecution(scenario, orders, STARTED, COMPLETED, decided_by)


def classify(orders: tuple[OrderResult, ...], treat_partial_as_failure: bool = True) -> Classified:
    return classify_execution(event(), execution(orders), TIMINGS, treat_partial_as_failure)


# -- classify_execution ----------------------------------------------------------------------


def test_classify_execution_all_filled_is_success() -> None:
    orders = (placed("VTI", "40", "40", "250.00"), placed("ARKK", "50", "50", "40.00"))

    classified = classify(orders)

    assert classified == Classified(
        result=ExecutionResult(
            plan_id=PLAN_ID,
            correlation_id=f"corr-{PLAN_ID}",
            status=ExecutionStatus.SUCCESS,
            success=True,
            orders=orders,
            orders_placed=2,
            orders_succeeded=2,
            total_trade_value=Decimal("12000.00"),
            started_at=STARTED,
            completed_at=COMPLETED,
            metadata=ExecutionMetadata(scenario=Scenario.EXECUTED, timings_ms=TIMINGS),
        ),
        workflow_success=True,
        failure_reason=None,
        reason_code=None,
        failed_symbols=(),
        decided_by="classify_outcome",
    )


def test_classify_execution_some_filled_is_partial_success_with_stable_reason() -> None:
    orders = (placed("VTI", "40", "40", "250.00"), placed("ARKK", "50", "25", "40.00"))

    classified = classify(orders)

    assert classified.result.status is ExecutionStatus.PARTIAL_SUCCESS
    assert classified.failure_reason == "partial execution: 1/2 orders filled; failed: ARKK"
    assert classified.reason_code == "PARTIAL_EXECUTION"
    assert classified.failed_symbols == ("ARKK",)


def test_classify_execution_none_placed_is_failure_no_orders_placed() -> None:
    orders = (
        skipped("VTI", SkipReason.INSUFFICIENT_BUYING_POWER),
        skipped("ARKK", SkipReason.NO_QUOTE),
    )

    classified = classify(orders)

    assert classified.result.status is ExecutionStatus.FAILURE
    assert classified.result.success is False
    assert classified.workflow_success is False
    assert classified.failure_reason == "execution failed: no orders were placed"
    assert classified.reason_code == "NO_ORDERS_PLACED"
    assert classified.failed_symbols == ("VTI", "ARKK")
    assert classified.result.orders_placed == 0


def test_classify_execution_placed_but_nothing_filled_is_failure_no_orders_filled() -> None:
    orders = (
        placed("VTI", "40", "0", status="rejected"),
        placed("ARKK", "50", "0", status="canceled"),
    )

    classified = classify(orders)

    assert classified.result.status is ExecutionStatus.FAILURE
    assert classified.failure_reason == "execution failed: 0/2 orders filled; failed: VTI, ARKK"
    assert classified.reason_code == "NO_ORDERS_FILLED"
    assert classified.result.orders_placed == 2
    assert classified.result.orders_succeeded == 0
    assert classified.result.total_trade_value == Decimal(0)


def test_classify_execution_all_dust_skips_is_success_with_no_trades_needed() -> None:
    orders = (
        skipped("VTI", SkipReason.BELOW_MIN_NOTIONAL),
        skipped("ARKK", SkipReason.ROUNDS_TO_ZERO),
    )

    classified = classify(orders)

    assert classified.result.status is ExecutionStatus.SUCCESS
    assert classified.workflow_success is True
    assert classified.result.metadata.scenario is Scenario.NO_TRADES_NEEDED
    assert classified.failure_reason is None
    assert classified.reason_code is None
    assert classified.failed_symbols == ()
    assert classified.decided_by == "execute_orders"


def test_classify_execution_no_position_skip_alone_is_failure() -> None:
    orders = (skipped("VTI", SkipReason.NO_POSITION),)

    classified = classify(orders)

    assert classified.result.status is ExecutionStatus.FAILURE
    assert classified.workflow_success is False
    assert classified.reason_code == "NO_ORDERS_PLACED"
    assert classified.failed_symbols == ("VTI",)
    assert classified.result.metadata.scenario is Scenario.EXECUTED


def test_classify_execution_dust_skip_beside_fills_is_not_counted() -> None:
    orders = (
        placed("VTI", "40", "40", "250.00"),
        skipped("ARKK", SkipReason.ROUNDS_TO_ZERO),
    )

    classified = classify(orders)

    assert classified.result.status is ExecutionStatus.SUCCESS
    assert classified.failed_symbols == ()
    assert classified.result.metadata.scenario is Scenario.EXECUTED


@pytest.mark.parametrize(
    ("treat_partial_as_failure", "expected_success"), [(True, False), (False, True)]
)
def test_classify_execution_partial_success_follows_the_flag(
    treat_partial_as_failure: bool, expected_success: bool
) -> None:
    orders = (placed("VTI", "40", "40"), placed("ARKK", "50", "25"))

    classified = classify(orders, treat_partial_as_failure)

    assert classified.result.status is ExecutionStatus.PARTIAL_SUCCESS
    assert classified.workflow_success is expected_success
    assert classified.result.success is expected_success
    assert classified.reason_code == "PARTIAL_EXECUTION"


def test_classify_execution_total_trade_value_is_filled_notional() -> None:
    orders = (
        placed("VTI", "40", "40", "250.00"),
        placed("ARKK", "50", "25", "40.00"),
        placed("GLD", "10", "0", "190.00", status="rejected"),
    )

    classified = classify(orders)

    assert classified.result.total_trade_value == Decimal("11000.00")


def test_classify_execution_orders_placed_counts_orders_with_broker_order_id() -> None:
    orders = (
        placed("VTI", "40", "40"),
        placed("ARKK", "50", "25"),
        skipped("GLD", SkipReason.INSUFFICIENT_BUYING_POWER),
    )

    classified = classify(orders)

    assert classified.result.orders_placed == 2
    assert classified.result.orders_succeeded == 1
    assert classified.failure_reason == "partial execution: 1/3 orders filled; failed: ARKK, GLD"


@pytest.mark.parametrize(
    ("scenario", "decided_by"),
    [
        (Scenario.NO_TRADES_NEEDED, "skip_when_no_trades"),
        (Scenario.MARKET_CLOSED, "gate_on_market_clock"),
    ],
)
def test_classify_execution_not_executed_scenario_is_success_decided_by_its_step(
    scenario: Scenario, decided_by: str
) -> None:
    classified = classify_execution(event(), execution((), scenario, decided_by), {}, True)

    assert classified.result.status is ExecutionStatus.SUCCESS
    assert classified.workflow_success is True
    assert classified.result.metadata.scenario is scenario
    assert classified.decided_by == decided_by


# -- execution_status and failure_reason -----------------------------------------------------


def test_execution_status_no_orders_is_success() -> None:
    assert execution_status(Scenario.EXECUTED, ()) is ExecutionStatus.SUCCESS


def test_failure_reason_success_is_none() -> None:
    orders = (placed("VTI", "40", "40"),)

    assert failure_reason(ExecutionStatus.SUCCESS, orders) is None


# -- properties ------------------------------------------------------------------------------


@st.composite
def order_results(draw: st.DrawFn, index: int) -> OrderResult:
    symbol = f"S{index}"
    if draw(st.booleans()):
        return skipped(symbol, draw(st.sampled_from(DUST + NOT_DUST)))
    qty = draw(st.integers(min_value=1, max_value=1_000))
    filled = draw(st.sampled_from(["none", "part", "all"]))
    filled_qty = {"none": 0, "part": draw(st.integers(1, qty)) if qty > 1 else 0, "all": qty}
    return placed(symbol, str(qty), str(filled_qty[filled]))


order_lists = st.integers(min_value=0, max_value=8).flatmap(
    lambda n: st.tuples(*(order_results(i) for i in range(n)))
)


@given(orders=order_lists, treat_partial_as_failure=st.booleans())
def test_classify_execution_any_orders_follow_the_classification_rules(
    orders: tuple[OrderResult, ...], treat_partial_as_failure: bool
) -> None:
    counted = [o for o in orders if not o.is_dust_skip]
    all_filled = all(o.filled_qty == o.planned_qty and not o.skipped for o in counted)
    nothing_filled = all(o.filled_qty == 0 for o in counted)

    classified = classify(orders, treat_partial_as_failure)

    status = classified.result.status
    assert (status is ExecutionStatus.SUCCESS) == all_filled
    assert (status is ExecutionStatus.FAILURE) == (bool(counted) and nothing_filled)
    assert (status is ExecutionStatus.PARTIAL_SUCCESS) == (not all_filled and not nothing_filled)
    assert classified.workflow_success == (
        status is ExecutionStatus.SUCCESS
        or (status is ExecutionStatus.PARTIAL_SUCCESS and not treat_partial_as_failure)
    )
    assert (classified.reason_code is None) == (status is ExecutionStatus.SUCCESS)


# -- classify_outcome ------------------------------------------------------------------------


def envelope(offset: int, payload: Any, with_event: bool = True) -> Envelope[Any]:
    plan_event = event(f"plan-{offset}")
    identity = EventIdentity(
        plan_event.event_id, plan_event.correlation_id, "RebalancePlanned", "1.0"
    )
    return Envelope(
        record=record(planned(f"plan-{offset}", []), offset),
        payload=payload,
        identity=identity,
        event=plan_event if with_event else None,
        timings_ms=TIMINGS,
    )


def test_classify_outcome_plan_execution_without_event_fails_and_later_values_arrive() -> None:
    scheduler = TestScheduler()
    orders = (placed("VTI", "40", "40"),)
    first = envelope(1, execution(orders))
    broken = envelope(2, execution(orders), with_event=False)
    duplicate = envelope(3, Skipped("DUPLICATE_EVENT", "seen before"))
    last = envelope(4, execution((placed("VTI", "40", "20"),)))
    source = scheduler.create_hot_observable(
        ReactiveTest.on_next(210, first),
        ReactiveTest.on_next(220, broken),
        ReactiveTest.on_next(230, duplicate),
        ReactiveTest.on_next(240, last),
        ReactiveTest.on_completed(250),
    )

    results = scheduler.start(lambda: source.pipe(classify_outcome(False)))

    failed = Failed(
        stage=FailureStep.CLASSIFICATION,
        reason_code="UNEXPECTED_ERROR",
        reason=(
            "unexpected error in classify_outcome: "
            "ValueError: a PlanExecution without its RebalancePlanned"
        ),
        error_type="ValueError",
        step="classify_outcome",
    )
    assert results.messages == [
        ReactiveTest.on_next(
            210,
            first.with_payload(classify_execution(first.event, first.payload, TIMINGS, False)),
        ),
        ReactiveTest.on_next(220, broken.failed(failed)),
        ReactiveTest.on_next(230, duplicate),
        ReactiveTest.on_next(
            240, last.with_payload(classify_execution(last.event, last.payload, TIMINGS, False))
        ),
        ReactiveTest.on_completed(250),
    ]
    assert results.messages[3].value.value.payload.result.status is (
        ExecutionStatus.PARTIAL_SUCCESS
    )
    assert results.messages[3].value.value.payload.workflow_success is True
