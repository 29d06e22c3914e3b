"""The output events: TradeExecuted, WorkflowCompleted and WorkflowFailed (SPEC 2)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from rebalance_stream.contracts.envelope import Contract, EventEnvelope, NonEmptyStr
from rebalance_stream.contracts.execution import ExecutionResult
from rebalance_stream.contracts.wire import Money


class FailureStep(StrEnum):
    DECODE = "decode"
    VALIDATION = "validation"
    MARKET_GATE = "market_gate"
    RISK = "risk"
    EXECUTION = "execution"
    CLASSIFICATION = "classification"


class SourceOffset(Contract):
    topic: str
    partition: int
    offset: int


class ErrorDetails(Contract):
    original_event_id: str | None
    original_event_type: str | None
    error_type: str
    reason_code: str
    offset: SourceOffset


class WorkflowSummary(Contract):
    orders_placed: int = 0
    orders_succeeded: int = 0
    total_trade_value: Money = Decimal(0)
    plan_id: NonEmptyStr


class TradeExecuted(EventEnvelope):
    EVENT_TYPE: ClassVar[str] = "TradeExecuted"

    event_type: NonEmptyStr = "TradeExecuted"
    success: bool
    orders_placed: Annotated[int, Field(ge=0)]
    orders_succeeded: Annotated[int, Field(ge=0)]
    failure_reason: str | None = None
    failed_symbols: tuple[str, ...] = ()
    execution_data: ExecutionResult


class WorkflowCompleted(EventEnvelope):
    EVENT_TYPE: ClassVar[str] = "WorkflowCompleted"

    event_type: NonEmptyStr = "WorkflowCompleted"
    workflow_type: Literal["trading"] = "trading"
    workflow_duration_ms: Annotated[int, Field(ge=0)]
    success: Literal[True] = True
    summary: WorkflowSummary


class WorkflowFailed(EventEnvelope):
    EVENT_TYPE: ClassVar[str] = "WorkflowFailed"

    event_type: NonEmptyStr = "WorkflowFailed"
    workflow_type: Literal["trading"] = "trading"
    failure_reason: NonEmptyStr
    failure_step: FailureStep
    error_details: ErrorDetails


OutputEvent = TradeExecuted | WorkflowCompleted | WorkflowFailed
