"""Event contracts of rebalance-stream (SPEC 2): frozen pydantic models, canonical JSON."""

from rebalance_stream.contracts.client_order_id import client_order_id, plan_hash
from rebalance_stream.contracts.envelope import SCHEMA_VERSION, SOURCE_MODULE, EventEnvelope
from rebalance_stream.contracts.execution import (
    DUST_SKIPS,
    ExecutionMetadata,
    ExecutionResult,
    ExecutionStatus,
    OrderResult,
    OrderSide,
    Scenario,
    SkipReason,
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
from rebalance_stream.contracts.rebalance import (
    AllocationComparison,
    ExecutionUrgency,
    RebalancePlan,
    RebalancePlanItem,
    RebalancePlanned,
    TradeAction,
)
from rebalance_stream.contracts.wire import canonical_json, derived_event_id, format_timestamp

__all__ = [
    "DUST_SKIPS",
    "SCHEMA_VERSION",
    "SOURCE_MODULE",
    "AllocationComparison",
    "ErrorDetails",
    "EventEnvelope",
    "ExecutionMetadata",
    "ExecutionResult",
    "ExecutionStatus",
    "ExecutionUrgency",
    "FailureStep",
    "OrderResult",
    "OrderSide",
    "OutputEvent",
    "RebalancePlan",
    "RebalancePlanItem",
    "RebalancePlanned",
    "Scenario",
    "SkipReason",
    "SourceOffset",
    "TradeAction",
    "TradeExecuted",
    "WorkflowCompleted",
    "WorkflowFailed",
    "WorkflowSummary",
    "canonical_json",
    "client_order_id",
    "derived_event_id",
    "format_timestamp",
    "plan_hash",
]
