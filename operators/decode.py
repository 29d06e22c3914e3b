"""decode: input bytes to a JSON document whose envelope says it is a RebalancePlanned v1."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import structlog
from reactivex import operators as ops

from rebalance_stream.contracts.envelope import SUPPORTED_MAJOR_VERSION
from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.flow import (
    DecodedDocument,
    Envelope,
    EventIdentity,
    Failed,
    InputRecord,
    Op,
)
from rebalance_stream.operators.step import UNEXPECTED_ERROR

log = structlog.get_logger(__name__)

DEFAULT_MAX_INPUT_BYTES = 1024 * 1024
STEP = "decode"
_REQUIRED_ENVELOPE_FIELDS = ("event_id", "correlation_id", "event_type")


class DecodeError(ValueError):
    """The input is not JSON, not an object, or not a readable envelope."""


def _reject_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not a valid JSON number")


def parse_json_object(value: bytes) -> dict[str, Any]:
    """Parse bytes as a JSON object with exact decimals; raise DecodeError otherwise.

    A number Python cannot hold is a DecodeError too: an integer of more than 4,300 digits
    (``int``'s limit) or an exponent beyond Decimal's (``1e999999999999999999999``).
    """
    try:
        document = json.loads(value, parse_float=Decimal, parse_constant=_reject_constant)
    except DecodeError:
        raise
    except (ValueError, ArithmeticError, RecursionError) as exc:  # JSONDecodeError included
        raise DecodeError(f"not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise DecodeError(f"expected a JSON object, got {type(document).__name__}")
    return document


def read_identity(document: dict[str, Any]) -> EventIdentity:
    """The envelope fields that are non-empty strings; the others are None."""

    def text(name: str) -> str | None:
        value = document.get(name)
        return value if isinstance(value, str) and value and _is_utf8(value) else None

    return EventIdentity(
        event_id=text("event_id"),
        correlation_id=text("correlation_id"),
        event_type=text("event_type"),
        schema_version=text("schema_version"),
    )


def _is_utf8(text: str) -> bool:
    """False for a string with a lone surrogate (JSON ``"\\ud800"``): no output can carry it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _failure(reason_code: str, reason: str, error_type: str, *, notify: bool) -> Failed:
    return Failed(
        stage=FailureStep.DECODE,
        reason_code=reason_code,
        reason=reason,
        error_type=error_type,
        step=STEP,
        dead_letter=True,
        notify=notify,
    )


def _check_envelope(identity: EventIdentity, document: dict[str, Any]) -> Failed | None:
    missing = [name for name in _REQUIRED_ENVELOPE_FIELDS if getattr(identity, name) is None]
    if missing:
        reason = f"unreadable envelope: missing or empty {', '.join(missing)}"
        return _failure("UNREADABLE_ENVELOPE", reason, "DecodeError", notify=True)
    if identity.event_type != RebalancePlanned.EVENT_TYPE:
        reason = f"unexpected event_type {identity.event_type!r}"
        return _failure("UNEXPECTED_EVENT_TYPE", reason, "UnexpectedEventType", notify=False)
    version = document.get("schema_version", "1.0")
    if not isinstance(version, str) or version.split(".", 1)[0] != SUPPORTED_MAJOR_VERSION:
        reason = f"unsupported schema_version {version!r}"
        return _failure(
            "UNSUPPORTED_SCHEMA_VERSION", reason, "UnsupportedSchemaVersion", notify=False
        )
    return None


def decode_record(
    record: InputRecord, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
) -> Envelope[DecodedDocument]:
    """Decode one record; never raises. A fault is a dead-lettered ``Failed`` (SPEC 1)."""
    try:
        return _decode_record(record, max_input_bytes)
    except Exception as exc:  # a fault of one record must not end the stream
        position = record.position
        log.exception(
            "step_failed_unexpectedly",
            step=STEP,
            topic=position.topic,
            partition=position.partition,
            offset=position.offset,
        )
        reason = f"unexpected error in {STEP}: {type(exc).__name__}: {exc}"
        failure = _failure(UNEXPECTED_ERROR, reason, type(exc).__name__, notify=False)
        return Envelope(record=record, payload=failure)


def _decode_record(record: InputRecord, max_input_bytes: int) -> Envelope[DecodedDocument]:
    if len(record.value) > max_input_bytes:
        reason = f"input of {len(record.value)} bytes exceeds the limit of {max_input_bytes}"
        failure = _failure("INPUT_TOO_LARGE", reason, "InputTooLarge", notify=False)
        return Envelope(record=record, payload=failure)
    try:
        document = parse_json_object(record.value)
    except DecodeError as exc:
        failure = _failure("MALFORMED_JSON", str(exc), "DecodeError", notify=False)
        return Envelope(record=record, payload=failure)
    identity = read_identity(document)
    invalid = _check_envelope(identity, document)
    payload = DecodedDocument(document) if invalid is None else invalid
    return Envelope(record=record, payload=payload, identity=identity)


def _logged(envelope: Envelope[DecodedDocument]) -> Envelope[DecodedDocument]:
    if isinstance(envelope.payload, Failed):
        log.warning(
            "input_undecodable",
            reason_code=envelope.payload.reason_code,
            reason=envelope.payload.reason,
            **envelope.log_fields(),
        )
    return envelope


def decode(
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
) -> Op[InputRecord, Envelope[DecodedDocument]]:
    """Turn input records into envelopes holding a JSON document, or a dead-lettered Failed.

    -r1-r2-r3-|   ->   -d1-F2-d3-|      (r2 is not JSON; F2 is Failed(decode))
    """
    return ops.map(lambda record: _logged(decode_record(record, max_input_bytes)))
