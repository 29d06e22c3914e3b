"""to_output_events: every envelope to its Disposition, the records of SPEC 1's table."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from reactivex import operators as ops

from rebalance_stream.contracts.envelope import SCHEMA_VERSION, SOURCE_MODULE
from rebalance_stream.contracts.execution import (
    ExecutionMetadata,
    ExecutionResult,
    ExecutionStatus,
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
from rebalance_stream.contracts.rebalance import RebalancePlanned, TradeAction
from rebalance_stream.contracts.wire import derived_event_id
from rebalance_stream.operators.flow import (
    Classified,
    Clock,
    DeadLetter,
    Disposition,
    Envelope,
    Failed,
    NotStarted,
    Op,
    Recorded,
    Skipped,
    elapsed_ms,
)

log = structlog.get_logger(__name__)

STEP = "to_output_events"
_TRADE_STAGES = frozenset(
    {FailureStep.MARKET_GATE, FailureStep.RISK, FailureStep.EXECUTION, FailureStep.CLASSIFICATION}
)


def input_event_id(envelope: Envelope[Any]) -> str:
    """The input's event_id; when unreadable, a stable id made from its source position."""
    if envelope.event is not None:
        return envelope.event.event_id
    if envelope.identity.event_id is not None:
        return envelope.identity.event_id
    position = envelope.position
    return f"kafka:{position.topic}:{position.partition}:{position.offset}"


def _correlation_id(envelope: Envelope[Any]) -> str | None:
    if envelope.event is not None:
        return envelope.event.correlation_id
    return envelope.identity.correlation_id


def _envelope_fields(
    envelope: Envelope[Any], event_type: str, component: str, decided_at: datetime
) -> dict[str, Any]:
    causation_id = input_event_id(envelope)
    return {
        "event_id": derived_event_id(causation_id, event_type),
        "correlation_id": _correlation_id(envelope),
        "causation_id": causation_id,
        "event_type": event_type,
        "timestamp": decided_at,
        "source_module": SOURCE_MODULE,
        "source_component": component,
        "schema_version": SCHEMA_VERSION,
    }


def _trade_executed(
    envelope: Envelope[Any], classified: Classified, decided_at: datetime
) -> TradeExecuted:
    result = classified.result
    return TradeExecuted(
        **_envelope_fields(envelope, "TradeExecuted", classified.decided_by, decided_at),
        success=classified.workflow_success,
        orders_placed=result.orders_placed,
        orders_succeeded=result.orders_succeeded,
        failure_reason=classified.failure_reason,
        failed_symbols=classified.failed_symbols,
        execution_data=result,
    )


def _workflow_failed(
    envelope: Envelope[Any], failure: Failed, component: str, decided_at: datetime
) -> WorkflowFailed:
    position = envelope.position
    return WorkflowFailed(
        **_envelope_fields(envelope, "WorkflowFailed", component, decided_at),
        failure_reason=failure.reason,
        failure_step=failure.stage,
        error_details=ErrorDetails(
            original_event_id=envelope.identity.event_id,
            original_event_type=envelope.identity.event_type,
            error_type=failure.error_type,
            reason_code=failure.reason_code,
            offset=SourceOffset(
                topic=position.topic, partition=position.partition, offset=position.offset
            ),
        ),
    )


def _classified_outputs(
    envelope: Envelope[Any], classified: Classified, decided_at: datetime
) -> tuple[OutputEvent, ...]:
    traded = _trade_executed(envelope, classified, decided_at)
    result = classified.result
    if classified.workflow_success:
        completed = WorkflowCompleted(
            **_envelope_fields(envelope, "WorkflowCompleted", classified.decided_by, decided_at),
            workflow_duration_ms=elapsed_ms(envelope.record.received_at, decided_at),
            summary=WorkflowSummary(
                orders_placed=result.orders_placed,
                orders_succeeded=result.orders_succeeded,
                total_trade_value=result.total_trade_value,
                plan_id=result.plan_id,
            ),
        )
        return traded, completed
    failure = Failed(
        stage=FailureStep.EXECUTION,
        reason_code=classified.reason_code or "EXECUTION_FAILED",
        reason=classified.failure_reason or "execution failed",
        error_type="ExecutionFailed",
        step=classified.decided_by,
    )
    return traded, _workflow_failed(envelope, failure, classified.decided_by, decided_at)


def _failed_trade(
    envelope: Envelope[Any], event: RebalancePlanned, failure: Failed, decided_at: datetime
) -> TradeExecuted:
    """A TradeExecuted for a plan stopped before or during execution: 0 orders, failure."""
    plan = event.rebalance_plan
    result = ExecutionResult(
        plan_id=plan.plan_id,
        correlation_id=event.correlation_id,
        status=ExecutionStatus.FAILURE,
        success=False,
        started_at=envelope.record.received_at,
        completed_at=decided_at,
        total_trade_value=Decimal(0),
        metadata=ExecutionMetadata(timings_ms=dict(envelope.timings_ms)),
    )
    traded = tuple(item.symbol for item in plan.items if item.action is not TradeAction.HOLD)
    classified = Classified(
        result, False, failure.reason, failure.reason_code, traded, failure.step
    )
    return _trade_executed(envelope, classified, decided_at)


def _failed_outputs(
    envelope: Envelope[Any], failure: Failed, decided_at: datetime
) -> tuple[OutputEvent | DeadLetter, ...]:
    outputs: list[OutputEvent | DeadLetter] = []
    if failure.dead_letter:
        outputs.append(DeadLetter(envelope.record, failure))
    if failure.stage in _TRADE_STAGES and envelope.event is not None:
        outputs.append(_failed_trade(envelope, envelope.event, failure, decided_at))
    if failure.notify and _correlation_id(envelope) is not None:
        outputs.append(_workflow_failed(envelope, failure, failure.step, decided_at))
    return tuple(outputs)


def _undecided(envelope: Envelope[Any]) -> Failed:
    payload_type = type(envelope.payload).__name__
    return Failed(
        stage=FailureStep.CLASSIFICATION,
        reason_code="UNDECIDED",
        reason=f"the pipeline ended before a decision; last payload was {payload_type}",
        error_type="Undecided",
        step=STEP,
    )


def disposition_of(envelope: Envelope[Any], decided_at: datetime) -> Disposition:
    """The output records of one input, in producing order (SPEC 1); never raises."""
    payload = envelope.payload
    skipped = payload if isinstance(payload, Skipped) else None
    outputs: tuple[OutputEvent | DeadLetter, ...] = ()
    if isinstance(payload, Recorded):
        outputs = payload.outputs
    elif isinstance(payload, Classified):
        outputs = _classified_outputs(envelope, payload, decided_at)
    elif isinstance(payload, Failed):
        outputs = _failed_outputs(envelope, payload, decided_at)
    elif skipped is None:
        outputs = _failed_outputs(envelope, _undecided(envelope), decided_at)
    plan_id = envelope.event.rebalance_plan.plan_id if envelope.event else None
    if isinstance(payload, NotStarted):
        return Disposition(
            envelope.record,
            (),
            decided_at,
            plan_id=plan_id,
            owns_outcome=envelope.owns_outcome,
            not_started=True,
        )
    return Disposition(
        envelope.record,
        outputs,
        decided_at,
        skipped,
        envelope.mis_keyed,
        plan_id=plan_id,
        owns_outcome=envelope.owns_outcome,
    )


def log_decision(envelope: Envelope[Any], disposition: Disposition) -> None:
    """The ``input_decided`` line of one input: its outputs, and how long it took."""
    kinds = [type(output).__name__ for output in disposition.outputs]
    age_ms = None
    if envelope.event is not None:
        age_ms = elapsed_ms(envelope.event.timestamp, disposition.decided_at)
    log.info(
        "input_decided",
        outputs=kinds,
        duration_ms=elapsed_ms(envelope.record.received_at, disposition.decided_at),
        end_to_end_age_ms=age_ms,
        **envelope.log_fields(),
    )


def to_output_events(clock: Clock) -> Op[Envelope[Any], Disposition]:
    """Turn each envelope into its Disposition: output events and dead letters, or nothing.

    -C-F-S-|   ->   -D(TE,WC)-D(DLQ,WF)-D()-|
    """

    def decide(envelope: Envelope[Any]) -> Disposition:
        decided_at = clock()
        try:
            disposition = disposition_of(envelope, decided_at)
        except Exception as exc:  # an input must still get a disposition: its dead letter
            log.exception("output_events_failed", **envelope.log_fields())
            failure = Failed(
                FailureStep.CLASSIFICATION,
                "OUTPUT_BUILD_FAILED",
                f"{type(exc).__name__}: {exc}",
                type(exc).__name__,
                STEP,
                True,
            )
            outputs = (DeadLetter(envelope.record, failure),)
            disposition = Disposition(envelope.record, outputs, decided_at)
        log_decision(envelope, disposition)
        return disposition

    return ops.map(decide)
