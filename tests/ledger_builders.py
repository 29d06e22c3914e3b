"""Builders of ledger calls shared by the ledger tests: claims, intents, terminals, and
outcomes with exact, canonical outputs."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from support import T0

from rebalance_stream.contracts.client_order_id import client_order_id
from rebalance_stream.contracts.execution import (
    ExecutionMetadata,
    ExecutionResult,
    ExecutionStatus,
    OrderResult,
    OrderSide,
)
from rebalance_stream.contracts.outcomes import (
    ErrorDetails,
    FailureStep,
    OutputEvent,
    SourceOffset,
    TradeExecuted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowSummary,
)
from rebalance_stream.contracts.wire import canonical_json, derived_event_id
from rebalance_stream.ledger.protocol import (
    OrderIntent,
    OrderTerminal,
    PlanClaim,
    PlanOutcome,
)

ACCOUNT = "acct-1"
ITEMS = "sha256:items-1"
OTHER_ITEMS = "sha256:items-2"
DECIDED_AT = T0 + timedelta(seconds=2, milliseconds=345)
NEW_YORK = ZoneInfo("America/New_York")
TODAY = date(2026, 11, 30)


# -- builders --------------------------------------------------------------------------------


def plan_claim(
    plan_id: str,
    event_id: str | None = None,
    *,
    items: str = ITEMS,
    received_at: datetime = T0,
    account_id: str = ACCOUNT,
    input_digest: str | None = None,
    correlation_id: str | None = "",
) -> PlanClaim:
    """``correlation_id`` "" is ``corr-<plan_id>``, as in ``header``."""
    return PlanClaim(
        plan_id,
        event_id or f"evt-{plan_id}",
        items,
        received_at,
        account_id,
        input_digest=input_digest,
        correlation_id=f"corr-{plan_id}" if correlation_id == "" else correlation_id,
    )


def header(plan_id: str, event_type: str) -> dict[str, Any]:
    event_id = f"evt-{plan_id}"
    return {
        "event_id": derived_event_id(event_id, event_type),
        "correlation_id": f"corr-{plan_id}",
        "causation_id": event_id,
        "event_type": event_type,
        "timestamp": DECIDED_AT,
        "source_module": "rebalance_stream",
        "source_component": "classify_outcome",
        "metadata": {"note": f"variant for {plan_id}"},
    }


def execution(plan_id: str, filled_qty: str) -> ExecutionResult:
    """One VTI buy, filled ``filled_qty`` of 40 at 250.00 (exact decimals, trailing zeros)."""
    filled = Decimal(filled_qty) == Decimal(40)
    order = OrderResult(
        symbol="VTI",
        side=OrderSide.BUY,
        client_order_id=client_order_id(plan_id, "VTI", OrderSide.BUY),
        broker_order_id="broker-VTI",
        planned_qty=Decimal("40.000000000"),
        filled_qty=Decimal(filled_qty),
        filled_avg_price=Decimal("250.00"),
        status="filled" if filled else "canceled",
        success=filled,
        submitted_at=T0,
        filled_at=DECIDED_AT,
        expected_price=Decimal("249.99"),
        slippage_bps=Decimal("0.40"),
    )
    return ExecutionResult(
        plan_id=plan_id,
        correlation_id=f"corr-{plan_id}",
        status=ExecutionStatus.SUCCESS if filled else ExecutionStatus.FAILURE,
        success=filled,
        orders=(order,),
        orders_placed=1,
        orders_succeeded=1 if filled else 0,
        total_trade_value=order.filled_notional,
        started_at=T0,
        completed_at=DECIDED_AT,
        metadata=ExecutionMetadata(timings_ms={"risk": 1, "buys": 4}),
    )


@cache
def outputs_for(plan_id: str, variant: int = 0) -> tuple[OutputEvent, ...]:
    """Real outputs of a plan: variant 0 completes it, any other fails it."""
    result = execution(plan_id, "40" if variant == 0 else f"{variant}.5")
    traded = TradeExecuted(
        **header(plan_id, "TradeExecuted"),
        success=result.success,
        orders_placed=1,
        orders_succeeded=result.orders_succeeded,
        failure_reason=None if result.success else "nothing filled",
        failed_symbols=() if result.success else ("VTI",),
        execution_data=result,
    )
    if result.success:
        summary = WorkflowSummary(
            orders_placed=1,
            orders_succeeded=1,
            total_trade_value=result.total_trade_value,
            plan_id=plan_id,
        )
        completed = WorkflowCompleted(
            **header(plan_id, "WorkflowCompleted"), workflow_duration_ms=2345, summary=summary
        )
        return (traded, completed)
    details = ErrorDetails(
        original_event_id=f"evt-{plan_id}",
        original_event_type="RebalancePlanned",
        error_type="ExecutionFailed",
        reason_code="PARTIAL_EXECUTION",
        offset=SourceOffset(topic="rebalance.planned", partition=0, offset=variant),
    )
    failed = WorkflowFailed(
        **header(plan_id, "WorkflowFailed"),
        failure_reason="nothing filled",
        failure_step=FailureStep.EXECUTION,
        error_details=details,
    )
    return (traded, failed)


def outcome(plan_id: str, variant: int = 0) -> PlanOutcome:
    return PlanOutcome(plan_id, outputs_for(plan_id, variant), DECIDED_AT)


def wire(outputs: tuple[OutputEvent, ...]) -> list[bytes]:
    return [canonical_json(event) for event in outputs]


def intent(
    plan_id: str,
    symbol: str = "VTI",
    qty: str = "40",
    price: str | None = "250.00",
    *,
    account_id: str = ACCOUNT,
    recorded_at: datetime = T0,
) -> OrderIntent:
    order_id = client_order_id(plan_id, symbol, OrderSide.BUY)
    expected = Decimal(price) if price is not None else None
    return OrderIntent(
        plan_id, account_id, order_id, symbol, OrderSide.BUY, Decimal(qty), expected, recorded_at
    )


def terminal(order: OrderIntent, filled_qty: str, price: str | None) -> OrderTerminal:
    average = Decimal(price) if price is not None else None
    return OrderTerminal(order.client_order_id, "filled", Decimal(filled_qty), average)
