"""validate: a decoded document to a schema-valid RebalancePlanned (SPEC 2, 3.11)."""

from __future__ import annotations

from typing import Any

import pytest
from plan_factory import Trade, planned
from pydantic import ValidationError
from reactivex.testing import ReactiveTest, TestScheduler
from support import record

from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.decode import decode_record
from rebalance_stream.operators.flow import DecodedDocument, Envelope, Failed, Skipped
from rebalance_stream.operators.validate import (
    describe_validation_error,
    is_mis_keyed,
    validate,
    validate_envelope,
)

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed

BAD_PRIORITY_REASON = (
    "schema-invalid RebalancePlanned: rebalance_plan.items.0.priority: "
    "Input should be less than or equal to 5"
)


def plan_document(plan_id: str = "p1", **changes: Any) -> dict[str, Any]:
    return planned(plan_id, [Trade("SPY", "BUY", "1500.00")], **changes)


def bad_priority_document(plan_id: str = "p2") -> dict[str, Any]:
    document = plan_document(plan_id)
    document["rebalance_plan"]["items"][0]["priority"] = 9
    return document


def decoded(
    document: dict[str, Any], offset: int = 0, key: bytes | None = None
) -> Envelope[DecodedDocument]:
    envelope = decode_record(record(document, offset, key=key))
    assert isinstance(envelope.payload, DecodedDocument)
    return envelope


def validate_decoded(envelope: Envelope[DecodedDocument]) -> Envelope[Any]:
    payload = envelope.payload
    assert isinstance(payload, DecodedDocument)
    return validate_envelope(envelope, payload)


def schema_invalid(reason: str) -> Failed:
    return Failed(
        stage=FailureStep.VALIDATION,
        reason_code="SCHEMA_INVALID",
        reason=reason,
        error_type="ValidationError",
        step="validate",
        dead_letter=True,
        notify=True,
    )


def validation_error(document: object) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        RebalancePlanned.model_validate(document)
    return raised.value


def test_describe_validation_error_one_error_names_the_field() -> None:
    error = validation_error(bad_priority_document())

    assert describe_validation_error(error) == BAD_PRIORITY_REASON


def test_describe_validation_error_more_than_three_errors_counts_the_rest() -> None:
    document = bad_priority_document()
    document["timestamp"] = "2026-11-30T14:30:00"
    document["trades_required"] = "maybe"
    del document["source_module"]

    described = describe_validation_error(validation_error(document))

    assert described == (
        "schema-invalid RebalancePlanned: timestamp: Input should have timezone info; "
        "source_module: Field required; "
        "rebalance_plan.items.0.priority: Input should be less than or equal to 5 "
        "(and 1 more)"
    )


def test_describe_validation_error_not_an_object_is_located_at_root() -> None:
    described = describe_validation_error(validation_error([1, 2]))

    assert described == (
        "schema-invalid RebalancePlanned: (root): "
        "Input should be a valid dictionary or instance of RebalancePlanned"
    )


@pytest.mark.parametrize(
    ("key", "expected"),
    [(b"acct-1", False), (b"acct-2", True), (b"", True), (None, True), (b"ACCT-1", True)],
)
def test_is_mis_keyed_key_other_than_account_id_is_mis_keyed(
    key: bytes | None, expected: bool
) -> None:
    event = RebalancePlanned.model_validate(plan_document(account_id="acct-1"))

    assert is_mis_keyed(key, event) is expected


def test_is_mis_keyed_default_account_matches_key_default() -> None:
    document = plan_document()
    del document["rebalance_plan"]["account_id"]
    event = RebalancePlanned.model_validate(document)

    assert is_mis_keyed(b"default", event) is False


def test_validate_envelope_valid_document_gives_event_payload_and_event() -> None:
    envelope = decoded(plan_document(), key=b"acct-1")

    validated = validate_decoded(envelope)

    assert isinstance(validated.payload, RebalancePlanned)
    assert validated.payload == RebalancePlanned.model_validate(plan_document())
    assert validated.event is validated.payload
    assert validated.mis_keyed is False
    assert validated.record is envelope.record
    assert validated.identity == envelope.identity
    assert validated.timings_ms == {}


def test_validate_envelope_key_other_than_account_id_marks_mis_keyed_and_passes() -> None:
    envelope = decoded(plan_document(account_id="acct-1"), key=b"acct-9")

    validated = validate_decoded(envelope)

    assert validated.mis_keyed is True
    assert isinstance(validated.payload, RebalancePlanned)
    assert validated.payload.rebalance_plan.account_id == "acct-1"
    assert validated.event is validated.payload


def test_validate_envelope_schema_invalid_document_fails_naming_the_field() -> None:
    envelope = decoded(bad_priority_document())

    validated = validate_decoded(envelope)

    assert validated == envelope.failed(schema_invalid(BAD_PRIORITY_REASON))
    assert validated.event is None
    assert validated.mis_keyed is False


def test_validate_envelope_action_disagreeing_with_sign_fails_schema_invalid() -> None:
    document = planned("p1", [Trade("SPY", "BUY", "-1500.00")])
    envelope = decoded(document)

    validated = validate_decoded(envelope)

    assert validated.payload == schema_invalid(
        "schema-invalid RebalancePlanned: rebalance_plan.items.0: "
        "Value error, SPY: action BUY disagrees with trade_amount -1500.00"
    )


def kind(envelope: Envelope[Any]) -> tuple[str, str, bool]:
    """A Failed as its reason_code, an event as its plan_id; each with mis_keyed."""
    payload = envelope.payload
    if isinstance(payload, Failed):
        return ("failed", payload.reason_code, envelope.mis_keyed)
    if isinstance(payload, Skipped):
        return ("skipped", payload.reason_code, envelope.mis_keyed)
    assert isinstance(payload, RebalancePlanned)
    assert envelope.event is payload
    return ("event", payload.rebalance_plan.plan_id, envelope.mis_keyed)


def timeline(messages: list[Any]) -> list[tuple[float, tuple[str, str, bool] | str]]:
    return [
        (m.time, kind(m.value.value) if m.value.kind == "N" else m.value.kind) for m in messages
    ]


def test_validate_operator_schema_invalid_fails_and_later_plans_still_arrive() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, decoded(plan_document("p1"), 1)),
        on_next(220, decoded(bad_priority_document("p2"), 2)),
        on_next(230, decoded(plan_document("p3"), 3, key=b"someone-else")),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(validate()))

    assert timeline(results.messages) == [
        (210, ("event", "p1", False)),
        (220, ("failed", "SCHEMA_INVALID", False)),
        (230, ("event", "p3", True)),
        (240, "C"),
    ]
    assert results.messages[1].value.value.payload == schema_invalid(BAD_PRIORITY_REASON)


def test_validate_operator_settled_inputs_pass_through_untouched() -> None:
    scheduler = TestScheduler()
    undecodable = decode_record(record(b"not json", 1))
    skipped = decoded(plan_document("p2"), 2).with_payload(Skipped("DUPLICATE_EVENT", "seen"))
    source = scheduler.create_hot_observable(
        on_next(210, undecodable),
        on_next(220, skipped),
        on_next(230, decoded(plan_document("p3"), 3)),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(validate()))

    assert timeline(results.messages) == [
        (210, ("failed", "MALFORMED_JSON", False)),
        (220, ("skipped", "DUPLICATE_EVENT", False)),
        (230, ("event", "p3", False)),
        (240, "C"),
    ]
    assert results.messages[0].value.value is undecodable
    assert results.messages[1].value.value is skipped
