"""classify_outcome: an execution to SUCCESS, PARTIAL_SUCCESS or FAILURE (SPEC 3.6, 3.7)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import structlog
from reactivex import operators as ops

from rebalance_stream.contracts.execution import (
    ExecutionMetadata,
    ExecutionResult,
    ExecutionStatus,
    OrderResult,
    Scenario,
)
from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.flow import Classified, Envelope, Op, PlanExecution
from rebalance_stream.operators.step import guarded

log = structlog.get_logger(__name__)

STEP = "classify_outcome"


def execution_status(scenario: Scenario, orders: tuple[OrderResult, ...]) -> ExecutionStatus:
    """SPEC 3.6. Dust skips do not count; any other skip counts as an order that did not fill."""
    counted = [order for order in orders if not order.is_dust_skip]
    if scenario is not Scenario.EXECUTED or not counted:
        return ExecutionStatus.SUCCESS
    if all(order.success for order in counted):
        return ExecutionStatus.SUCCESS
    if any(order.filled_qty > 0 for order in counted):
        return ExecutionStatus.PARTIAL_SUCCESS
    return ExecutionStatus.FAILURE


def failure_reason(
    status: ExecutionStatus, orders: tuple[OrderResult, ...]
) -> tuple[str, str] | None:
    """The stable ``(reason_code, reason)`` of a status other than SUCCESS."""
    counted = [order for order in orders if not order.is_dust_skip]
    failed = ", ".join(order.symbol for order in counted if not order.success)
    filled = sum(1 for order in counted if order.success)
    if status is ExecutionStatus.PARTIAL_SUCCESS:
        reason = f"partial execution: {filled}/{len(counted)} orders filled; failed: {failed}"
        return "PARTIAL_EXECUTION", reason
    if status is ExecutionStatus.FAILURE:
        if not any(order.broker_order_id for order in counted):
            return "NO_ORDERS_PLACED", "execution failed: no orders were placed"
        reason = f"execution failed: 0/{len(counted)} orders filled; failed: {failed}"
        return "NO_ORDERS_FILLED", reason
    return None


def classify_execution(
    event: RebalancePlanned,
    execution: PlanExecution,
    timings_ms: Mapping[str, int],
    treat_partial_execution_as_failure: bool,
) -> Classified:
    """The ExecutionResult of a plan and whether its workflow succeeded."""
    orders = execution.orders
    status = execution_status(execution.scenario, orders)
    scenario = execution.scenario
    if scenario is Scenario.EXECUTED and all(order.is_dust_skip for order in orders):
        scenario = Scenario.NO_TRADES_NEEDED
    workflow_success = status is ExecutionStatus.SUCCESS or (
        status is ExecutionStatus.PARTIAL_SUCCESS and not treat_partial_execution_as_failure
    )
    reason = failure_reason(status, orders)
    placed = [order for order in orders if order.broker_order_id]
    result = ExecutionResult(
        plan_id=event.rebalance_plan.plan_id,
        correlation_id=event.correlation_id,
        status=status,
        success=workflow_success,
        orders=orders,
        orders_placed=len(placed),
        orders_succeeded=sum(1 for order in placed if order.success),
        total_trade_value=sum((order.filled_notional for order in orders), Decimal(0)),
        started_at=execution.started_at,
        completed_at=execution.completed_at,
        metadata=ExecutionMetadata(scenario=scenario, timings_ms=dict(timings_ms)),
    )
    counted = [order for order in orders if not order.is_dust_skip]
    return Classified(
        result=result,
        workflow_success=workflow_success,
        failure_reason=reason[1] if reason else None,
        reason_code=reason[0] if reason else None,
        failed_symbols=tuple(order.symbol for order in counted if not order.success),
        decided_by=execution.decided_by if scenario is not Scenario.EXECUTED else STEP,
    )


def classify_outcome(
    treat_partial_execution_as_failure: bool = True,
) -> Op[Envelope[Any], Envelope[Any]]:
    """Classify each PlanExecution; the workflow fails on FAILURE, and on PARTIAL_SUCCESS
    when ``treat_partial_execution_as_failure`` is true.

    -X1-X2-|   ->   -C1-C2-|      (C is Classified: the ExecutionResult and the verdict)
    """

    def run(envelope: Envelope[Any], execution: PlanExecution) -> Envelope[Any]:
        if envelope.event is None:
            raise ValueError("a PlanExecution without its RebalancePlanned")
        classified = classify_execution(
            envelope.event, execution, envelope.timings_ms, treat_partial_execution_as_failure
        )
        log.info(
            "plan_classified",
            status=classified.result.status.value,
            workflow_success=classified.workflow_success,
            reason_code=classified.reason_code,
            **envelope.log_fields(),
        )
        return envelope.with_payload(classified)

    return ops.map(guarded(FailureStep.CLASSIFICATION, STEP, PlanExecution, run))
