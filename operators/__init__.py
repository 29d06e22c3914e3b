"""The pipeline's Rx operators. Each is a factory returning ``Op[In, Out]`` for ``.pipe()``.

In SPEC 3.1 order: decode, validate, dedupe, reject_stale, skip_when_no_trades,
gate_on_market_clock, check_risk, execute_orders (inside serialize_by_account),
classify_outcome, to_output_events, then record_outcomes (the ledger keeps each plan's outputs).
With a ledger that knows published inputs, skip_published_inputs wraps all of them: a
replay's inputs whose exact bytes were published get their duplicate's Disposition, undecoded.
"""

from rebalance_stream.operators.classify import classify_execution, classify_outcome
from rebalance_stream.operators.decode import DEFAULT_MAX_INPUT_BYTES, decode, decode_record
from rebalance_stream.operators.dedupe import dedupe
from rebalance_stream.operators.execute import execute_orders
from rebalance_stream.operators.flow import (
    Classified,
    Clock,
    DeadLetter,
    DecodedDocument,
    Disposition,
    Envelope,
    EventIdentity,
    Failed,
    InputRecord,
    Op,
    PlanExecution,
    Recorded,
    Skipped,
    SourcePosition,
)
from rebalance_stream.operators.market_gate import MarketClockFailure, gate_on_market_clock
from rebalance_stream.operators.no_trade import skip_when_no_trades
from rebalance_stream.operators.order_execution import ExecutionConfig, PlanOrderExecutor
from rebalance_stream.operators.output_events import disposition_of, to_output_events
from rebalance_stream.operators.per_account import serialize_by_account
from rebalance_stream.operators.record_outcomes import record_outcomes
from rebalance_stream.operators.risk import KillSwitch, RiskLimits, check_risk, evaluate_risk
from rebalance_stream.operators.skip_published import (
    published_among,
    skip_published_inputs,
    skipped_envelope,
)
from rebalance_stream.operators.staleness import reject_stale
from rebalance_stream.operators.validate import validate

__all__ = [
    "DEFAULT_MAX_INPUT_BYTES",
    "Classified",
    "Clock",
    "DeadLetter",
    "DecodedDocument",
    "Disposition",
    "Envelope",
    "EventIdentity",
    "ExecutionConfig",
    "Failed",
    "InputRecord",
    "KillSwitch",
    "MarketClockFailure",
    "Op",
    "PlanExecution",
    "PlanOrderExecutor",
    "Recorded",
    "RiskLimits",
    "Skipped",
    "SourcePosition",
    "check_risk",
    "classify_execution",
    "classify_outcome",
    "decode",
    "decode_record",
    "dedupe",
    "disposition_of",
    "evaluate_risk",
    "execute_orders",
    "gate_on_market_clock",
    "published_among",
    "record_outcomes",
    "reject_stale",
    "serialize_by_account",
    "skip_published_inputs",
    "skip_when_no_trades",
    "skipped_envelope",
    "to_output_events",
    "validate",
]
