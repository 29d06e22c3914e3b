"""validate: a decoded document to a schema-valid RebalancePlanned (SPEC 2)."""

from __future__ import annotations

import structlog
from pydantic import ValidationError
from reactivex import operators as ops

from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.flow import DecodedDocument, Envelope, Failed, Op
from rebalance_stream.operators.step import guarded

log = structlog.get_logger(__name__)

STEP = "validate"
_ERRORS_SHOWN = 3


def describe_validation_error(error: ValidationError) -> str:
    """A short, stable summary: the first few ``location: message`` pairs."""
    parts = []
    for detail in error.errors(include_url=False)[:_ERRORS_SHOWN]:
        location = ".".join(str(part) for part in detail["loc"]) or "(root)"
        parts.append(f"{location}: {detail['msg']}")
    more = error.error_count() - _ERRORS_SHOWN
    suffix = f" (and {more} more)" if more > 0 else ""
    return "schema-invalid RebalancePlanned: " + "; ".join(parts) + suffix


def is_mis_keyed(key: bytes | None, event: RebalancePlanned) -> bool:
    """True when the record's key is not its plan's account_id (SPEC 3.11)."""
    return key != event.rebalance_plan.account_id.encode("utf-8")


def validate_envelope(
    envelope: Envelope[DecodedDocument], decoded: DecodedDocument
) -> Envelope[RebalancePlanned]:
    """Validate the document; a schema error is a dead-lettered Failed(validation)."""
    try:
        event = RebalancePlanned.model_validate(decoded.document)
    except ValidationError as exc:
        failure = Failed(
            stage=FailureStep.VALIDATION,
            reason_code="SCHEMA_INVALID",
            reason=describe_validation_error(exc),
            error_type="ValidationError",
            step=STEP,
            dead_letter=True,
        )
        log.warning("input_invalid", reason=failure.reason, **envelope.log_fields())
        return envelope.failed(failure)
    mis_keyed = is_mis_keyed(envelope.record.key, event)
    validated: Envelope[RebalancePlanned] = envelope.with_payload(
        event, event=event, mis_keyed=mis_keyed
    )
    if mis_keyed:
        log.warning(
            "input_mis_keyed",
            account_id=event.rebalance_plan.account_id,
            key=envelope.record.key.decode("utf-8", "replace") if envelope.record.key else None,
            **validated.log_fields(),
        )
    return validated


def validate() -> Op[Envelope[DecodedDocument], Envelope[RebalancePlanned]]:
    """Validate decoded documents as RebalancePlanned; invalid ones become Failed.

    -d1-d2-d3-|   ->   -p1-F2-p3-|      (d2 breaks the schema; F2 is Failed(validation))
    """
    return ops.map(guarded(FailureStep.VALIDATION, STEP, DecodedDocument, validate_envelope))
