"""Wire types shared by every contract: exact decimals, UTC timestamps, canonical JSON.

Guarantees: a Decimal is written as a plain string and never in exponent form
(``Decimal("0E-8")`` -> ``"0.00000000"``); a timestamp is converted to UTC and ends in ``Z``;
``canonical_json`` gives the same bytes for equal models (sorted keys, no spaces).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, PlainSerializer

# One fixed namespace for every derived id of this project. Changing it changes every output
# event_id, so downstream consumers could no longer dedupe replays against earlier outputs.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c2b4e-3d5a-5e8b-9c7d-2a4f6b8e0d13")


def plain_decimal(value: Decimal) -> str:
    """Format a Decimal without exponent: ``0E-8`` -> ``0.00000000``, ``1E+2`` -> ``100``."""
    return format(value, "f")


def strip_trailing_zeros(value: Decimal) -> Decimal:
    """Drop trailing fractional zeros, never into exponent form: 20.000 -> 20, 1.50 -> 1.5."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def _reject_float_artifacts(value: object) -> object:
    # A float carries binary noise into Decimal (0.1 -> 0.1000...0555). Its repr is the
    # shortest decimal that round-trips, which is what the sender wrote.
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


# Digits allowed before and after the point of a Money value (SQL's DECIMAL(38) bound). Beyond
# it lies no amount or quantity, only inputs like 1e999999999, whose plain form has a billion
# digits; an integer field takes at most 18 digits before pydantic converts a Decimal to int.
MAX_DECIMAL_DIGITS = 38
MAX_INTEGER_DIGITS = 18


def _has_more_digits_than(value: Decimal, limit: int) -> bool:
    """Whether a finite ``value`` has more than ``limit`` digits before or after the point."""
    exponent = value.as_tuple().exponent
    return value.adjusted() >= limit or (isinstance(exponent, int) and exponent < -limit)


def _require_finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("decimal must be finite")
    if _has_more_digits_than(value, MAX_DECIMAL_DIGITS):
        raise ValueError(
            f"decimal out of range: at most {MAX_DECIMAL_DIGITS} digits before and after the point"
        )
    return value


def _reject_oversized_number(value: object) -> object:
    """Refuse a Decimal of more than MAX_INTEGER_DIGITS digits before or after the point before
    pydantic turns it into an int (``1E-999999999`` costs as much as ``1E+999999999``)."""
    if (
        isinstance(value, Decimal)
        and value.is_finite()
        and _has_more_digits_than(value, MAX_INTEGER_DIGITS)
    ):
        raise ValueError(f"integer out of range: more than {MAX_INTEGER_DIGITS} digits")
    return value


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """ISO-8601 in UTC with a trailing ``Z``; microseconds only when non-zero."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


Money = Annotated[
    Decimal,
    BeforeValidator(_reject_float_artifacts),
    AfterValidator(_require_finite),
    PlainSerializer(plain_decimal, return_type=str, when_used="json"),
]
"""A finite Decimal, at most 38 digits before and after the point; accepts strings and JSON
numbers, writes a plain decimal string."""

WireInt = Annotated[int, BeforeValidator(_reject_oversized_number)]
"""An int read from JSON; accepts integral numbers (``3.0``) of at most 18 digits."""

UtcTimestamp = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]
"""A timezone-aware timestamp, normalized to UTC; a naive timestamp is rejected."""


def canonical_json(model: BaseModel) -> bytes:
    """Encode a model as canonical JSON: the same model always gives the same bytes."""
    document: Any = model.model_dump(mode="json")
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def derived_event_id(input_event_id: str, event_type: str) -> str:
    """The event_id of the output of type ``event_type`` caused by ``input_event_id`` (SPEC 2)."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{input_event_id}:{event_type}"))
