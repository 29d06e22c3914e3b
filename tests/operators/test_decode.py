"""decode: input bytes to a RebalancePlanned v1 document, or a dead-lettered Failed (SPEC 1)."""

from __future__ import annotations

import importlib
import json
from decimal import Decimal
from typing import Any

import pytest
from plan_factory import Trade, planned
from reactivex.testing import ReactiveTest, TestScheduler
from support import record

from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.operators.decode import (
    DEFAULT_MAX_INPUT_BYTES,
    DecodeError,
    decode,
    decode_record,
    parse_json_object,
    read_identity,
)
from rebalance_stream.operators.flow import DecodedDocument, Envelope, EventIdentity, Failed

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed

PLAN_IDENTITY = EventIdentity(
    event_id="evt-p1",
    correlation_id="corr-p1",
    event_type="RebalancePlanned",
    schema_version="1.0",
)


def plan_document(**changes: Any) -> dict[str, Any]:
    """A valid RebalancePlanned document for plan p1, with top-level fields replaced."""
    return {**planned("p1", [Trade("SPY", "BUY", "1500.00")]), **changes}


def decode_failure(reason_code: str, reason: str, error_type: str, *, notify: bool) -> Failed:
    return Failed(
        stage=FailureStep.DECODE,
        reason_code=reason_code,
        reason=reason,
        error_type=error_type,
        step="decode",
        dead_letter=True,
        notify=notify,
    )


def malformed(reason: str) -> Failed:
    return decode_failure("MALFORMED_JSON", reason, "DecodeError", notify=False)


def test_parse_json_object_float_becomes_exact_decimal() -> None:
    document = parse_json_object(b'{"trade_amount": 1500.10, "tiny": 0.1, "count": 3}')

    assert document == {"trade_amount": Decimal("1500.10"), "tiny": Decimal("0.1"), "count": 3}
    assert type(document["trade_amount"]) is Decimal
    assert str(document["trade_amount"]) == "1500.10"
    assert type(document["count"]) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"not json", "not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        (b"", "not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'"text"', "expected a JSON object, got str"),
        (b"null", "expected a JSON object, got NoneType"),
        (b'{"a": NaN}', "NaN is not a valid JSON number"),
        (b'{"a": Infinity}', "Infinity is not a valid JSON number"),
        (b'{"a": -Infinity}', "-Infinity is not a valid JSON number"),
        (
            b'{"a": "\xff"}',
            "not valid JSON: 'utf-8' codec can't decode byte 0xff in position 7: "
            "invalid start byte",
        ),
    ],
)
def test_parse_json_object_not_a_json_object_raises_decode_error(
    value: bytes, message: str
) -> None:
    with pytest.raises(DecodeError) as raised:
        parse_json_object(value)

    assert str(raised.value) == message


def test_parse_json_object_nesting_too_deep_raises_decode_error() -> None:
    depth = 100_000
    value = b'{"a": ' + b"[" * depth + b"]" * depth + b"}"

    with pytest.raises(DecodeError) as raised:
        parse_json_object(value)

    assert str(raised.value) == (
        "not valid JSON: maximum recursion depth exceeded while decoding a JSON array "
        "from a unicode string"
    )


def test_read_identity_non_string_or_empty_fields_are_none() -> None:
    document = {"event_id": 7, "correlation_id": "", "event_type": "RebalancePlanned"}

    identity = read_identity(document)

    assert identity == EventIdentity(
        event_id=None, correlation_id=None, event_type="RebalancePlanned", schema_version=None
    )


def test_read_identity_string_with_a_lone_surrogate_is_none() -> None:
    document = json.loads('{"event_id": "e\\ud800", "correlation_id": "c1"}')

    identity = read_identity(document)

    assert (identity.event_id, identity.correlation_id) == (None, "c1")


def test_decode_record_unexpected_error_is_a_dead_lettered_failure_not_an_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(value: bytes) -> dict[str, Any]:
        raise RuntimeError("parser bug")

    module = importlib.import_module(decode_record.__module__)
    monkeypatch.setattr(module, "parse_json_object", broken)
    source = record(b'{"event_id": "e1"}')

    envelope = decode_record(source)

    assert envelope == Envelope(
        record=source,
        payload=decode_failure(
            "UNEXPECTED_ERROR",
            "unexpected error in decode: RuntimeError: parser bug",
            "RuntimeError",
            notify=False,
        ),
    )


def test_read_identity_full_envelope_reads_every_field() -> None:
    identity = read_identity(plan_document())

    assert identity == PLAN_IDENTITY


def test_decode_record_valid_document_gives_decoded_document_with_identity() -> None:
    document = plan_document()
    source = record(document)

    envelope = decode_record(source)

    assert envelope == Envelope(
        record=source, payload=DecodedDocument(document), identity=PLAN_IDENTITY
    )
    assert envelope.event is None
    assert envelope.is_settled is False


def test_decode_record_json_float_becomes_exact_decimal_in_document() -> None:
    text = json.dumps(plan_document()).replace(
        '"trade_amount": "1500.00"', '"trade_amount": 1500.10'
    )
    source = record(text.encode(), key=b"acct-1")

    envelope = decode_record(source)

    assert isinstance(envelope.payload, DecodedDocument)
    amount = envelope.payload.document["rebalance_plan"]["items"][0]["trade_amount"]
    assert type(amount) is Decimal
    assert str(amount) == "1500.10"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (
            b"{not json",
            "not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        (b"[1, 2]", "expected a JSON object, got list"),
        (
            b'{"event_id": "\xff"}',
            "not valid JSON: 'utf-8' codec can't decode byte 0xff in "
            "position 14: invalid start byte",
        ),
        (b'{"event_id": "e1", "amount": NaN}', "NaN is not a valid JSON number"),
        (
            b'{"n": ' + b"1" * 4301 + b"}",
            "not valid JSON: Exceeds the limit (4300 digits) for integer string conversion: "
            "value has 4301 digits; use sys.set_int_max_str_digits() to increase the limit",
        ),
        (
            b'{"n": 1e999999999999999999999}',
            "not valid JSON: [<class 'decimal.InvalidOperation'>]",
        ),
    ],
)
def test_decode_record_unparseable_bytes_fail_as_malformed_json(value: bytes, reason: str) -> None:
    source = record(value)

    envelope = decode_record(source)

    assert envelope == Envelope(record=source, payload=malformed(reason), identity=EventIdentity())


def test_decode_record_input_over_limit_fails_as_input_too_large() -> None:
    source = record(b'{"event_id": "e1"}')

    envelope = decode_record(source, max_input_bytes=17)

    assert envelope == Envelope(
        record=source,
        payload=decode_failure(
            "INPUT_TOO_LARGE",
            "input of 18 bytes exceeds the limit of 17",
            "InputTooLarge",
            notify=False,
        ),
    )


def test_decode_record_input_exactly_at_limit_is_decoded() -> None:
    source = record(plan_document())

    envelope = decode_record(source, max_input_bytes=len(source.value))

    assert envelope.payload == DecodedDocument(plan_document())


def test_decode_record_default_limit_is_one_mebibyte() -> None:
    source = record(b" " * (DEFAULT_MAX_INPUT_BYTES + 1))

    envelope = decode_record(source)

    assert DEFAULT_MAX_INPUT_BYTES == 1024 * 1024
    assert envelope.payload == decode_failure(
        "INPUT_TOO_LARGE",
        "input of 1048577 bytes exceeds the limit of 1048576",
        "InputTooLarge",
        notify=False,
    )


def test_decode_record_missing_event_id_fails_unreadable_and_keeps_correlation_id() -> None:
    document = plan_document()
    del document["event_id"]
    source = record(document)

    envelope = decode_record(source)

    assert envelope.payload == decode_failure(
        "UNREADABLE_ENVELOPE",
        "unreadable envelope: missing or empty event_id",
        "DecodeError",
        notify=True,
    )
    assert envelope.identity == EventIdentity(
        event_id=None,
        correlation_id="corr-p1",
        event_type="RebalancePlanned",
        schema_version="1.0",
    )
    assert envelope.identity.correlation_id == "corr-p1"


def test_decode_record_several_empty_envelope_fields_are_all_named() -> None:
    source = record(b'{"event_id": "", "schema_version": "1.0"}')

    envelope = decode_record(source)

    assert envelope == Envelope(
        record=source,
        payload=decode_failure(
            "UNREADABLE_ENVELOPE",
            "unreadable envelope: missing or empty event_id, correlation_id, event_type",
            "DecodeError",
            notify=True,
        ),
        identity=EventIdentity(schema_version="1.0"),
    )


def test_decode_record_other_event_type_fails_without_notify() -> None:
    source = record(plan_document(event_type="OrderPlaced"))

    envelope = decode_record(source)

    assert envelope.payload == decode_failure(
        "UNEXPECTED_EVENT_TYPE",
        "unexpected event_type 'OrderPlaced'",
        "UnexpectedEventType",
        notify=False,
    )
    assert envelope.identity.event_type == "OrderPlaced"


@pytest.mark.parametrize(
    ("version", "shown"),
    [("2.0", "'2.0'"), ("10.1", "'10.1'"), ("", "''"), (1, "1")],
)
def test_decode_record_unknown_major_schema_version_fails_without_notify(
    version: object, shown: str
) -> None:
    source = record(plan_document(schema_version=version))

    envelope = decode_record(source)

    assert envelope.payload == decode_failure(
        "UNSUPPORTED_SCHEMA_VERSION",
        f"unsupported schema_version {shown}",
        "UnsupportedSchemaVersion",
        notify=False,
    )


@pytest.mark.parametrize("version", ["1.0", "1.7"])
def test_decode_record_major_version_one_is_decoded(version: str) -> None:
    document = plan_document(schema_version=version)

    envelope = decode_record(record(document))

    assert envelope.payload == DecodedDocument(document)
    assert envelope.identity.schema_version == version


def test_decode_record_missing_schema_version_defaults_to_supported() -> None:
    document = plan_document()
    del document["schema_version"]

    envelope = decode_record(record(document))

    assert envelope.payload == DecodedDocument(document)
    assert envelope.identity.schema_version is None


def summary(envelope: Envelope[Any]) -> tuple[str, str, int]:
    """A Failed as its reason_code, a document as its event_id; each with its offset."""
    payload = envelope.payload
    if isinstance(payload, Failed):
        return ("failed", payload.reason_code, envelope.position.offset)
    assert isinstance(payload, DecodedDocument)
    return ("decoded", payload.document["event_id"], envelope.position.offset)


def timeline(messages: list[Any]) -> list[tuple[float, tuple[str, str, int] | str]]:
    """Each recorded message as (time, summary) for on_next, (time, kind) otherwise."""
    return [
        (m.time, summary(m.value.value) if m.value.kind == "N" else m.value.kind) for m in messages
    ]


def test_decode_operator_bad_bytes_fail_and_later_records_still_arrive() -> None:
    scheduler = TestScheduler()
    first = planned("p1", [Trade("SPY", "BUY", "1500.00")])
    third = planned("p3", [Trade("VTI", "SELL", "-250.00")])
    source = scheduler.create_hot_observable(
        on_next(210, record(first, 1)),
        on_next(220, record(b"not json", 2)),
        on_next(230, record(third, 3)),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(decode()))

    assert timeline(results.messages) == [
        (210, ("decoded", "evt-p1", 1)),
        (220, ("failed", "MALFORMED_JSON", 2)),
        (230, ("decoded", "evt-p3", 3)),
        (240, "C"),
    ]
    assert results.messages[1].value.value.payload == malformed(
        "not valid JSON: Expecting value: line 1 column 1 (char 0)"
    )
    assert results.messages[1].value.value.identity == EventIdentity()


def test_decode_operator_oversized_record_fails_and_later_records_still_arrive() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, record(planned("p1", [Trade("SPY", "BUY", "1500.00")]), 1)),
        on_next(220, record(b" " * 4097, 2)),
        on_next(230, record(planned("p3", [Trade("VTI", "SELL", "-250.00")]), 3)),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(decode(max_input_bytes=4096)))

    assert timeline(results.messages) == [
        (210, ("decoded", "evt-p1", 1)),
        (220, ("failed", "INPUT_TOO_LARGE", 2)),
        (230, ("decoded", "evt-p3", 3)),
        (240, "C"),
    ]
    assert results.messages[1].value.value.payload == decode_failure(
        "INPUT_TOO_LARGE",
        "input of 4097 bytes exceeds the limit of 4096",
        "InputTooLarge",
        notify=False,
    )


def test_decode_operator_envelope_faults_fail_and_later_records_still_arrive() -> None:
    scheduler = TestScheduler()
    no_event_id = planned("p1", [Trade("SPY", "BUY", "1500.00")])
    del no_event_id["event_id"]
    source = scheduler.create_hot_observable(
        on_next(210, record(no_event_id, 1)),
        on_next(220, record(plan_document(event_type="OrderPlaced"), 2)),
        on_next(230, record(plan_document(schema_version="2.0"), 3)),
        on_next(235, record(plan_document(), 4)),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(decode()))

    assert timeline(results.messages) == [
        (210, ("failed", "UNREADABLE_ENVELOPE", 1)),
        (220, ("failed", "UNEXPECTED_EVENT_TYPE", 2)),
        (230, ("failed", "UNSUPPORTED_SCHEMA_VERSION", 3)),
        (235, ("decoded", "evt-p1", 4)),
        (240, "C"),
    ]
    assert [
        (m.value.value.payload.notify, m.value.value.identity.correlation_id)
        for m in results.messages[:3]
    ] == [(True, "corr-p1"), (False, "corr-p1"), (False, "corr-p1")]
