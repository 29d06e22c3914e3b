"""Run one pipeline step on an Envelope so that a fault becomes ``Failed``, never ``on_error``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.operators.flow import Envelope, Failed

log = structlog.get_logger(__name__)

UNEXPECTED_ERROR = "UNEXPECTED_ERROR"
A = TypeVar("A")
_DEAD_LETTER_STAGES = frozenset({FailureStep.DECODE, FailureStep.VALIDATION})


def guarded(
    stage: FailureStep,
    step: str,
    accepts: type[A],
    run: Callable[[Envelope[Any], A], Envelope[Any]],
) -> Callable[[Envelope[Any]], Envelope[Any]]:
    """Apply ``run(envelope, payload)`` where the payload is an ``accepts``; pass others through.

    ``stage`` is where an unexpected error is reported: decode and validation dead-letter the
    input; a later stage means a failed TradeExecuted and WorkflowFailed (SPEC 1).

    An exception raised by ``run`` becomes ``Failed(stage, UNEXPECTED_ERROR)`` on that envelope.
    """

    def apply(envelope: Envelope[Any]) -> Envelope[Any]:
        payload = envelope.payload
        if not isinstance(payload, accepts):
            return envelope
        try:
            return run(envelope, payload)
        except Exception as exc:  # a fault of one record must not end the stream
            log.exception("step_failed_unexpectedly", step=step, **envelope.log_fields())
            return envelope.failed(
                Failed(
                    stage=stage,
                    reason_code=UNEXPECTED_ERROR,
                    reason=f"unexpected error in {step}: {type(exc).__name__}: {exc}",
                    error_type=type(exc).__name__,
                    step=step,
                    dead_letter=stage in _DEAD_LETTER_STAGES,
                )
            )

    return apply
