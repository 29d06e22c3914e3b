"""dedupe: each plan_id is executed at most once, whatever its event_id (SPEC 1, 3.9)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import reactivex
from plan_factory import Trade, planned
from reactivex import operators as ops
from reactivex.testing import ReactiveTest, TestScheduler
from support import T0, record, validated

from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.ledger.protocol import Claim, ClaimStatus, PlanClaim
from rebalance_stream.operators.decode import decode_record
from rebalance_stream.operators.dedupe import claim_request, dedupe
from rebalance_stream.operators.flow import Envelope, Failed, Recorded, Skipped
from rebalance_stream.operators.output_events import disposition_of

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed

ITEMS = [Trade("SPY", "BUY", "1500.00")]
OTHER_ITEMS = [Trade("SPY", "BUY", "2500.00")]


def conflict(plan_id: str, first_event_id: str) -> Failed:
    return Failed(
        stage=FailureStep.VALIDATION,
        reason_code="PLAN_ID_CONFLICT",
        reason=(
            f"plan_id {plan_id} was already received with different items "
            f"(first event_id {first_event_id}); this plan is not executed"
        ),
        error_type="PlanIdConflict",
        step="dedupe",
        dead_letter=False,
        notify=True,
    )


def skipped(reason_code: str, plan_id: str, first_event_id: str) -> Skipped:
    return Skipped(
        reason_code, f"plan_id {plan_id} already decided (first event_id {first_event_id})"
    )


class FailingStore:
    """A ClaimStore whose ledger is unavailable for one plan_id."""

    def __init__(self, failing_plan_id: str) -> None:
        self.failing_plan_id = failing_plan_id
        self.inner = InMemoryLedger()

    def claim(self, request: PlanClaim) -> Claim:
        if request.plan_id == self.failing_plan_id:
            raise OSError("ledger unavailable")
        return self.inner.claim(request)


class RecordingStore:
    """A ClaimStore that remembers what it was asked."""

    def __init__(self) -> None:
        self.requests: list[PlanClaim] = []

    def claim(self, request: PlanClaim) -> Claim:
        self.requests.append(request)
        return Claim(ClaimStatus.NEW, request.event_id, request.received_at)


def outcome(envelope: Envelope[Any]) -> tuple[str, str, int]:
    """A Failed or Skipped as its reason_code, a plan as its plan_id; each with its offset."""
    payload = envelope.payload
    offset = envelope.position.offset
    if isinstance(payload, Failed | Skipped):
        return (type(payload).__name__, payload.reason_code, offset)
    assert isinstance(payload, RebalancePlanned)
    return ("plan", payload.rebalance_plan.plan_id, offset)


def timeline(messages: list[Any]) -> list[tuple[float, tuple[str, str, int] | str]]:
    return [
        (m.time, outcome(m.value.value) if m.value.kind == "N" else m.value.kind) for m in messages
    ]


def test_dedupe_operator_conflicting_items_fail_and_later_plans_still_arrive() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, validated(planned("p1", ITEMS, event_id="e1"), 1)),
        on_next(220, validated(planned("p1", OTHER_ITEMS, event_id="e2"), 2)),
        on_next(230, validated(planned("p3", ITEMS, event_id="e3"), 3)),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(dedupe(InMemoryLedger())))

    assert timeline(results.messages) == [
        (210, ("plan", "p1", 1)),
        (220, ("Failed", "PLAN_ID_CONFLICT", 2)),
        (230, ("plan", "p3", 3)),
        (240, "C"),
    ]
    assert results.messages[1].value.value.payload == conflict("p1", "e1")
    assert results.messages[1].value.value.event.event_id == "e2"


def test_dedupe_operator_repeats_are_skipped_or_failed_in_order() -> None:
    scheduler = TestScheduler()
    first = validated(planned("p1", ITEMS, event_id="e1"), 1)
    conflicting = validated(planned("p1", OTHER_ITEMS, event_id="e3"), 4)
    source = scheduler.create_hot_observable(
        on_next(210, first),
        on_next(220, validated(planned("p1", ITEMS, event_id="e1"), 2)),
        on_next(230, validated(planned("p1", ITEMS, event_id="e2"), 3)),
        on_next(240, conflicting),
        on_next(250, conflicting),
        on_next(260, validated(planned("p6", ITEMS, event_id="e6"), 6)),
        on_completed(270),
    )

    results = scheduler.start(lambda: source.pipe(dedupe(InMemoryLedger())))

    assert timeline(results.messages) == [
        (210, ("plan", "p1", 1)),
        (220, ("Skipped", "DUPLICATE_EVENT", 2)),
        (230, ("Skipped", "DUPLICATE_PLAN", 3)),
        (240, ("Failed", "PLAN_ID_CONFLICT", 4)),
        (250, ("Skipped", "DUPLICATE_EVENT", 4)),
        (260, ("plan", "p6", 6)),
        (270, "C"),
    ]
    assert results.messages[0].value.value == replace(first, owns_outcome=True)
    assert [m.value.value.payload for m in results.messages[1:5]] == [
        skipped("DUPLICATE_EVENT", "p1", "e1"),
        skipped("DUPLICATE_PLAN", "p1", "e1"),
        conflict("p1", "e1"),
        skipped("DUPLICATE_EVENT", "p1", "e1"),
    ]


def test_dedupe_operator_store_failure_fails_and_later_plans_still_arrive() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, validated(planned("p1", ITEMS), 1)),
        on_next(220, validated(planned("p2", ITEMS), 2)),
        on_next(230, validated(planned("p3", ITEMS), 3)),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(dedupe(FailingStore("p2"))))

    assert timeline(results.messages) == [
        (210, ("plan", "p1", 1)),
        (220, ("Failed", "UNEXPECTED_ERROR", 2)),
        (230, ("plan", "p3", 3)),
        (240, "C"),
    ]
    assert results.messages[1].value.value.payload == Failed(
        stage=FailureStep.EXECUTION,
        reason_code="UNEXPECTED_ERROR",
        reason="unexpected error in dedupe: OSError: ledger unavailable",
        error_type="OSError",
        step="dedupe",
        dead_letter=False,
        notify=True,
    )


def test_dedupe_operator_settled_inputs_pass_through_without_a_claim() -> None:
    scheduler = TestScheduler()
    store = RecordingStore()
    undecodable = decode_record(record(b"not json", 1))
    already_failed = validated(planned("p2", ITEMS), 2).failed(conflict("p2", "e0"))
    source = scheduler.create_hot_observable(
        on_next(210, undecodable),
        on_next(220, already_failed),
        on_next(230, validated(planned("p3", ITEMS), 3)),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(dedupe(store)))

    assert timeline(results.messages) == [
        (210, ("Failed", "MALFORMED_JSON", 1)),
        (220, ("Failed", "PLAN_ID_CONFLICT", 2)),
        (230, ("plan", "p3", 3)),
        (240, "C"),
    ]
    assert results.messages[0].value.value is undecodable
    assert results.messages[1].value.value is already_failed
    assert [r.plan_id for r in store.requests] == ["p3"]


def test_dedupe_operator_claims_plan_event_fingerprint_and_receive_time() -> None:
    scheduler = TestScheduler()
    store = RecordingStore()
    envelope = validated(planned("p1", ITEMS, event_id="e1"), 1)
    source = scheduler.create_hot_observable(on_next(210, envelope), on_completed(240))

    scheduler.start(lambda: source.pipe(dedupe(store)))

    assert store.requests == [
        PlanClaim(
            plan_id="p1",
            event_id="e1",
            items_fingerprint=envelope.payload.rebalance_plan.items_fingerprint(),
            received_at=T0,
            account_id=envelope.payload.rebalance_plan.account_id,
            partition=envelope.record.position.partition,
            input_digest=hashlib.sha256(envelope.record.value).hexdigest(),
            correlation_id="corr-p1",
        )
    ]


def test_dedupe_operator_prefilled_store_skips_known_event() -> None:
    store = InMemoryLedger()
    envelope = validated(planned("p1", ITEMS, event_id="e1"), 1)
    store.claim(claim_request(envelope, envelope.payload))
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(210, envelope), on_completed(240))

    results = scheduler.start(lambda: source.pipe(dedupe(store)))

    assert timeline(results.messages) == [(210, ("Skipped", "DUPLICATE_EVENT", 1)), (240, "C")]


def test_dedupe_operator_same_items_written_differently_are_duplicate_plan() -> None:
    scheduler = TestScheduler()
    as_string = planned("p1", ITEMS, event_id="e1")
    as_number = json.loads(json.dumps(planned("p1", ITEMS, event_id="e2")))
    as_number["rebalance_plan"]["items"][0]["trade_amount"] = 1500
    first, second = validated(as_string, 1), validated(as_number, 2)
    source = scheduler.create_hot_observable(
        on_next(210, first), on_next(220, second), on_completed(240)
    )

    results = scheduler.start(lambda: source.pipe(dedupe(InMemoryLedger())))

    assert first.payload.rebalance_plan.items == second.payload.rebalance_plan.items
    assert timeline(results.messages) == [
        (210, ("plan", "p1", 1)),
        (220, ("Skipped", "DUPLICATE_PLAN", 2)),
        (240, "C"),
    ]


def test_dedupe_operator_event_id_reused_by_another_plan_fails_it() -> None:
    store = InMemoryLedger()
    first = validated(planned("p1", ITEMS, event_id="e1"), 1)
    second = validated(planned("p2", ITEMS, event_id="e1"), 2)

    results = reactivex.from_iterable([first, second]).pipe(dedupe(store), ops.to_list()).run()

    assert results[0].payload == first.payload
    failure = results[1].payload
    assert isinstance(failure, Failed)
    assert (failure.stage, failure.reason_code, failure.dead_letter, failure.notify) == (
        FailureStep.VALIDATION,
        "EVENT_ID_REUSED",
        False,
        True,
    )


def failed_outputs(plan_id: str) -> tuple[Any, ...]:
    """A plan's outputs when it fails: one WorkflowFailed."""
    envelope = validated(planned(plan_id, ITEMS, event_id=f"e-{plan_id}"), 1)
    return disposition_of(envelope.failed(conflict(plan_id, "e0")), T0).outputs


class ResumingStore:
    """A ClaimStore answering as the durable ledger does after a restart."""

    def __init__(self, status: ClaimStatus, outputs: tuple[Any, ...] = ()) -> None:
        self.status = status
        self.outputs = outputs

    def claim(self, request: PlanClaim) -> Claim:
        first_received = T0 - timedelta(minutes=5)
        return Claim(self.status, request.event_id, first_received, self.outputs)


def test_dedupe_operator_resumed_plan_goes_on_timed_from_its_first_receipt() -> None:
    envelope = validated(planned("p1", ITEMS, event_id="e1"), 1)

    [result] = (
        reactivex.of(envelope).pipe(dedupe(ResumingStore(ClaimStatus.RESUME)), ops.to_list()).run()
    )

    assert result.payload == envelope.payload
    assert result.owns_outcome is True
    assert result.record.received_at == T0 - timedelta(minutes=5)


def test_dedupe_operator_decided_but_unpublished_plan_carries_its_record() -> None:
    outputs = failed_outputs("p1")
    envelope = validated(planned("p1", ITEMS, event_id="e1"), 1)

    [result] = (
        reactivex.of(envelope)
        .pipe(dedupe(ResumingStore(ClaimStatus.REPUBLISH, outputs)), ops.to_list())
        .run()
    )

    assert result.payload == Recorded(outputs)
    assert result.owns_outcome is True


def test_dedupe_operator_redelivery_while_in_flight_here_is_skipped() -> None:
    store = InMemoryLedger()
    first = validated(planned("p1", ITEMS, event_id="e1"), 1)
    again = validated(planned("p1", ITEMS, event_id="e1"), 1)

    results = reactivex.of(first, again).pipe(dedupe(store), ops.to_list()).run()

    assert results[0].owns_outcome is True
    assert results[1].payload == skipped("DUPLICATE_EVENT", "p1", "e1")
    assert results[1].owns_outcome is False
