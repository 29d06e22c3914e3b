"""disposition_of and to_output_events: the output records of SPEC 1's table."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from plan_factory import Trade, planned
from reactivex.testing import ReactiveTest, TestScheduler
from support import T0, FixedClock, record

from rebalance_stream.contracts.client_order_id import client_order_id
from rebalance_stream.contracts.execution import (
    ExecutionMetadata,
    ExecutionResult,
    ExecutionStatus,
    OrderResult,
    OrderSide,
    Scenario,
)
from rebalance_stream.contracts.outcomes import (
    ErrorDetails,
    FailureStep,
    SourceOffset,
    TradeExecuted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowSummary,
)
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.contracts.wire import derived_event_id
from rebalance_stream.operators import output_events
from rebalance_stream.operators.classify import classify_execution
from rebalance_stream.operators.flow import (
    Classified,
    DeadLetter,
    DecodedDocument,
    Disposition,
    Envelope,
    EventIdentity,
    Failed,
    PlanExecution,
    Skipped,
)
from rebalance_stream.operators.output_events import disposition_of, to_output_events

PLAN_ID = "plan-out"
RECEIVED_AT = T0
DECIDED_AT = T0 + timedelta(seconds=2, milliseconds=345)
DURATION_MS = 2345
OFFSET = 17
TRADES = [
    Trade("VTI", "BUY", "10000.00"),
    Trade("ARKK", "BUY", "2000.00"),
    Trade("SPY", "HOLD", "0"),
]
TIMINGS = {"risk": 1, "sells": 0, "buying_power_wait": 0, "buys": 4}


def planned_event(plan_id: str = PLAN_ID) -> RebalancePlanned:
    return RebalancePlanned.model_validate(planned(plan_id, TRADES))


def envelope(
    payload: Any,
    *,
    validated: bool = True,
    identity: EventIdentity | None = None,
    offset: int = OFFSET,
    plan_id: str = PLAN_ID,
) -> Envelope[Any]:
    event = planned_event(plan_id)
    if identity is None:
        identity = EventIdentity(event.event_id, event.correlation_id, "RebalancePlanned", "1.0")
    return Envelope(
        record=record(planned(plan_id, TRADES), offset, received_at=RECEIVED_AT),
        payload=payload,
        identity=identity,
        event=event if validated else None,
        timings_ms=TIMINGS,
    )


def order(symbol: str, qty: str, filled: str, price: str) -> OrderResult:
    client_id = client_order_id(PLAN_ID, symbol, OrderSide.BUY)
    return OrderResult(
        symbol=symbol,
        side=OrderSide.BUY,
        client_order_id=client_id,
        broker_order_id=f"broker-{symbol}",
        planned_qty=Decimal(qty),
        filled_qty=Decimal(filled),
        filled_avg_price=Decimal(price),
        status="filled" if filled == qty else "canceled",
        success=filled == qty,
        submitted_at=T0,
        filled_at=T0,
    )


def classified(orders: tuple[OrderResult, ...], treat_partial_as_failure: bool) -> Classified:
    execution = PlanExecution(Scenario.EXECUTED, orders, T0, T0, "execute_orders")
    return classify_execution(planned_event(), execution, TIMINGS, treat_partial_as_failure)


SUCCESS = classified((order("VTI", "40", "40", "250.00"),), True)
PARTIAL = classified((order("VTI", "40", "40", "250.00"), order("ARKK", "50", "25", "40.00")), True)


def header(event_type: str, component: str, event_id: str = f"evt-{PLAN_ID}") -> dict[str, Any]:
    """The envelope fields every output of the input ``event_id`` carries."""
    return {
        "event_id": derived_event_id(event_id, event_type),
        "correlation_id": f"corr-{PLAN_ID}",
        "causation_id": event_id,
        "event_type": event_type,
        "timestamp": DECIDED_AT,
        "source_module": "rebalance_stream",
        "source_component": component,
        "schema_version": "1.0",
    }


def error_details(failure: Failed, offset: int = OFFSET) -> ErrorDetails:
    return ErrorDetails(
        original_event_id=f"evt-{PLAN_ID}",
        original_event_type="RebalancePlanned",
        error_type=failure.error_type,
        reason_code=failure.reason_code,
        offset=SourceOffset(topic="rebalance.planned", partition=0, offset=offset),
    )


def failed_trade(failure: Failed) -> TradeExecuted:
    """The TradeExecuted of a plan stopped before execution: 0 orders, failure."""
    return TradeExecuted(
        **header("TradeExecuted", failure.step),
        success=False,
        orders_placed=0,
        orders_succeeded=0,
        failure_reason=failure.reason,
        failed_symbols=("VTI", "ARKK"),
        execution_data=ExecutionResult(
            plan_id=PLAN_ID,
            correlation_id=f"corr-{PLAN_ID}",
            status=ExecutionStatus.FAILURE,
            success=False,
            started_at=RECEIVED_AT,
            completed_at=DECIDED_AT,
            metadata=ExecutionMetadata(timings_ms=TIMINGS),
        ),
    )


def workflow_failed(failure: Failed) -> WorkflowFailed:
    return WorkflowFailed(
        **header("WorkflowFailed", failure.step),
        failure_reason=failure.reason,
        failure_step=failure.stage,
        error_details=error_details(failure),
    )


def assert_output_identity(disposition: Disposition, input_event_id: str) -> None:
    for output in disposition.outputs:
        if isinstance(output, DeadLetter):
            assert output.record == disposition.record
            continue
        assert output.causation_id == input_event_id
        assert output.correlation_id == f"corr-{PLAN_ID}"
        assert output.event_id == derived_event_id(input_event_id, output.event_type)
        assert output.timestamp == DECIDED_AT
        assert output.source_module == "rebalance_stream"
        assert output.schema_version == "1.0"
        if isinstance(output, WorkflowFailed):
            assert output.error_details.offset == SourceOffset(
                topic="rebalance.planned", partition=0, offset=OFFSET
            )


# -- disposition_of: SPEC 1's table ----------------------------------------------------------


def test_disposition_of_classified_success_is_trade_executed_then_workflow_completed() -> None:
    success = envelope(SUCCESS)

    disposition = disposition_of(success, DECIDED_AT)

    assert disposition == Disposition(
        record=success.record,
        outputs=(
            TradeExecuted(
                **header("TradeExecuted", "classify_outcome"),
                success=True,
                orders_placed=1,
                orders_succeeded=1,
                failure_reason=None,
                failed_symbols=(),
                execution_data=SUCCESS.result,
            ),
            WorkflowCompleted(
                **header("WorkflowCompleted", "classify_outcome"),
                workflow_duration_ms=DURATION_MS,
                summary=WorkflowSummary(
                    orders_placed=1,
                    orders_succeeded=1,
                    total_trade_value=Decimal("10000.00"),
                    plan_id=PLAN_ID,
                ),
            ),
        ),
        decided_at=DECIDED_AT,
        plan_id=PLAN_ID,
    )
    assert_output_identity(disposition, f"evt-{PLAN_ID}")


def test_disposition_of_partial_success_allowed_completes_with_its_failure_reason() -> None:
    partial = envelope(classified(PARTIAL.result.orders, treat_partial_as_failure=False))

    disposition = disposition_of(partial, DECIDED_AT)

    traded, completed = disposition.outputs
    assert isinstance(traded, TradeExecuted)
    assert isinstance(completed, WorkflowCompleted)
    assert traded.success is True
    assert traded.failure_reason == "partial execution: 1/2 orders filled; failed: ARKK"
    assert completed.summary.total_trade_value == Decimal("11000.00")


def test_disposition_of_classified_failure_is_trade_executed_then_workflow_failed() -> None:
    partial = envelope(PARTIAL)

    disposition = disposition_of(partial, DECIDED_AT)

    failure = Failed(
        stage=FailureStep.EXECUTION,
        reason_code="PARTIAL_EXECUTION",
        reason="partial execution: 1/2 orders filled; failed: ARKK",
        error_type="ExecutionFailed",
        step="classify_outcome",
    )
    assert disposition.outputs == (
        TradeExecuted(
            **header("TradeExecuted", "classify_outcome"),
            success=False,
            orders_placed=2,
            orders_succeeded=1,
            failure_reason="partial execution: 1/2 orders filled; failed: ARKK",
            failed_symbols=("ARKK",),
            execution_data=PARTIAL.result,
        ),
        workflow_failed(failure),
    )
    assert disposition.outputs[1].error_details.reason_code == "PARTIAL_EXECUTION"
    assert_output_identity(disposition, f"evt-{PLAN_ID}")


def test_disposition_of_decode_failure_without_notify_is_dead_letter_only() -> None:
    failure = Failed(
        FailureStep.DECODE,
        "UNEXPECTED_EVENT_TYPE",
        "unexpected event_type 'Other'",
        "UnexpectedEventType",
        "decode",
        dead_letter=True,
        notify=False,
    )
    identity = EventIdentity(f"evt-{PLAN_ID}", f"corr-{PLAN_ID}", "Other", "1.0")
    other = envelope(failure, validated=False, identity=identity)

    disposition = disposition_of(other, DECIDED_AT)

    assert disposition == Disposition(
        other.record, (DeadLetter(other.record, failure),), DECIDED_AT
    )


def test_disposition_of_unreadable_envelope_with_correlation_id_is_dead_letter_and_failed() -> None:
    failure = Failed(
        FailureStep.DECODE,
        "UNREADABLE_ENVELOPE",
        "unreadable envelope: missing or empty event_type",
        "DecodeError",
        "decode",
        dead_letter=True,
        notify=True,
    )
    identity = EventIdentity(f"evt-{PLAN_ID}", f"corr-{PLAN_ID}", None, None)
    unreadable = envelope(failure, validated=False, identity=identity)

    disposition = disposition_of(unreadable, DECIDED_AT)

    expected_failed = WorkflowFailed(
        **header("WorkflowFailed", "decode"),
        failure_reason="unreadable envelope: missing or empty event_type",
        failure_step=FailureStep.DECODE,
        error_details=ErrorDetails(
            original_event_id=f"evt-{PLAN_ID}",
            original_event_type=None,
            error_type="DecodeError",
            reason_code="UNREADABLE_ENVELOPE",
            offset=SourceOffset(topic="rebalance.planned", partition=0, offset=OFFSET),
        ),
    )
    assert disposition.outputs == (DeadLetter(unreadable.record, failure), expected_failed)
    assert_output_identity(disposition, f"evt-{PLAN_ID}")


def test_disposition_of_unreadable_envelope_without_correlation_id_is_dead_letter_only() -> None:
    failure = Failed(
        FailureStep.DECODE,
        "UNREADABLE_ENVELOPE",
        "unreadable envelope: missing or empty correlation_id",
        "DecodeError",
        "decode",
        dead_letter=True,
        notify=True,
    )
    identity = EventIdentity(f"evt-{PLAN_ID}", None, "RebalancePlanned", "1.0")
    unreadable = envelope(failure, validated=False, identity=identity)

    disposition = disposition_of(unreadable, DECIDED_AT)

    assert disposition.outputs == (DeadLetter(unreadable.record, failure),)


def test_disposition_of_unreadable_envelope_without_event_id_uses_the_source_position() -> None:
    failure = Failed(
        FailureStep.DECODE,
        "UNREADABLE_ENVELOPE",
        "unreadable envelope: missing or empty event_id",
        "DecodeError",
        "decode",
        dead_letter=True,
    )
    identity = EventIdentity(None, f"corr-{PLAN_ID}", "RebalancePlanned", "1.0")
    unreadable = envelope(failure, validated=False, identity=identity)

    disposition = disposition_of(unreadable, DECIDED_AT)

    _, notified = disposition.outputs
    assert notified.causation_id == f"kafka:rebalance.planned:0:{OFFSET}"
    assert_output_identity(disposition, f"kafka:rebalance.planned:0:{OFFSET}")


def test_disposition_of_schema_invalid_is_dead_letter_then_workflow_failed() -> None:
    failure = Failed(
        FailureStep.VALIDATION,
        "SCHEMA_INVALID",
        "rebalance_plan.items: at least one item",
        "ValidationError",
        "validate",
        dead_letter=True,
    )
    invalid = envelope(failure, validated=False)

    disposition = disposition_of(invalid, DECIDED_AT)

    assert disposition.outputs == (DeadLetter(invalid.record, failure), workflow_failed(failure))
    assert_output_identity(disposition, f"evt-{PLAN_ID}")


def test_disposition_of_stale_plan_is_workflow_failed_only() -> None:
    failure = Failed(
        FailureStep.VALIDATION,
        "PLAN_STALE",
        "plan plan-out is 7200 s old, older than max_plan_age 3600 s; not executed",
        "StalePlan",
        "reject_stale",
    )
    stale = envelope(failure)

    disposition = disposition_of(stale, DECIDED_AT)

    assert disposition == Disposition(
        stale.record, (workflow_failed(failure),), DECIDED_AT, plan_id=PLAN_ID
    )
    assert_output_identity(disposition, f"evt-{PLAN_ID}")


@pytest.mark.parametrize(
    "failure",
    [
        Failed(
            FailureStep.RISK,
            "NOTIONAL_EXCEEDS_MAX_PER_ORDER",
            "VTI: notional 10000.00 exceeds max_notional_per_order 5000",
            "RiskDenied",
            "check_risk",
        ),
        Failed(
            FailureStep.MARKET_GATE,
            "MARKET_CLOCK_UNAVAILABLE",
            "market clock unavailable: BrokerUnavailable: timeout",
            "BrokerUnavailable",
            "gate_on_market_clock",
        ),
    ],
    ids=["risk", "market_gate"],
)
def test_disposition_of_risk_or_market_gate_failure_is_failed_trade_then_workflow_failed(
    failure: Failed,
) -> None:
    denied = envelope(failure)

    disposition = disposition_of(denied, DECIDED_AT)

    assert disposition.outputs == (failed_trade(failure), workflow_failed(failure))
    assert_output_identity(disposition, f"evt-{PLAN_ID}")


def test_disposition_of_skipped_is_nothing_with_skipped_set() -> None:
    skipped = Skipped("DUPLICATE_PLAN", "plan plan-out was decided before")
    duplicate = envelope(skipped)

    disposition = disposition_of(duplicate, DECIDED_AT)

    assert disposition == Disposition(
        duplicate.record, (), DECIDED_AT, skipped=skipped, plan_id=PLAN_ID
    )


def test_disposition_of_undecided_payload_is_failed_trade_then_workflow_failed() -> None:
    event = planned_event()
    undecided = envelope(event)

    disposition = disposition_of(undecided, DECIDED_AT)

    failure = Failed(
        FailureStep.CLASSIFICATION,
        "UNDECIDED",
        "the pipeline ended before a decision; last payload was RebalancePlanned",
        "Undecided",
        "to_output_events",
    )
    assert disposition.outputs == (failed_trade(failure), workflow_failed(failure))
    assert disposition.outputs[1].failure_step is FailureStep.CLASSIFICATION
    assert_output_identity(disposition, f"evt-{PLAN_ID}")


def test_disposition_of_undecided_document_without_event_is_workflow_failed_only() -> None:
    undecided = envelope(DecodedDocument({"event_id": f"evt-{PLAN_ID}"}), validated=False)

    disposition = disposition_of(undecided, DECIDED_AT)

    (notified,) = disposition.outputs
    assert isinstance(notified, WorkflowFailed)
    assert notified.error_details.reason_code == "UNDECIDED"
    assert disposition.plan_id is None


def test_disposition_of_mis_keyed_input_is_marked_mis_keyed() -> None:
    mis_keyed = Envelope(
        record=record(planned(PLAN_ID, TRADES), OFFSET, key=b"other-account"),
        payload=SUCCESS,
        identity=EventIdentity(f"evt-{PLAN_ID}", f"corr-{PLAN_ID}", "RebalancePlanned", "1.0"),
        event=planned_event(),
        mis_keyed=True,
    )

    disposition = disposition_of(mis_keyed, DECIDED_AT)

    assert disposition.mis_keyed is True


# -- to_output_events ------------------------------------------------------------------------


def test_to_output_events_disposition_that_raises_is_dead_lettered_and_later_inputs_arrive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = output_events.disposition_of

    def raise_for_offset_2(envelope: Envelope[Any], decided_at: datetime) -> Disposition:
        if envelope.position.offset == 2:
            raise RuntimeError("cannot build outputs")
        return original(envelope, decided_at)

    monkeypatch.setattr(output_events, "disposition_of", raise_for_offset_2)
    clock = FixedClock(DECIDED_AT)
    skipped = Skipped("DUPLICATE_EVENT", "seen before")
    first = envelope(SUCCESS, offset=1)
    broken = envelope(SUCCESS, offset=2)
    duplicate = envelope(skipped, offset=3)
    last = envelope(PARTIAL, offset=4)
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        ReactiveTest.on_next(210, first),
        ReactiveTest.on_next(220, broken),
        ReactiveTest.on_next(230, duplicate),
        ReactiveTest.on_next(240, last),
        ReactiveTest.on_completed(250),
    )

    results = scheduler.start(lambda: source.pipe(to_output_events(clock)))

    dead = Failed(
        FailureStep.CLASSIFICATION,
        "OUTPUT_BUILD_FAILED",
        "RuntimeError: cannot build outputs",
        "RuntimeError",
        "to_output_events",
        dead_letter=True,
    )
    assert results.messages == [
        ReactiveTest.on_next(210, original(first, DECIDED_AT)),
        ReactiveTest.on_next(
            220, Disposition(broken.record, (DeadLetter(broken.record, dead),), DECIDED_AT)
        ),
        ReactiveTest.on_next(230, original(duplicate, DECIDED_AT)),
        ReactiveTest.on_next(240, original(last, DECIDED_AT)),
        ReactiveTest.on_completed(250),
    ]
    assert [len(m.value.value.outputs) for m in results.messages[:4]] == [2, 1, 0, 2]
    assert results.messages[2].value.value.skipped == skipped
