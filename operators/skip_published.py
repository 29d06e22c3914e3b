"""skip_published_inputs: an input already executed and published, found before validation.

A replay from old offsets reads inputs whose plans are done. The ledger keeps the digest of the
bytes each plan was first claimed from (``PlanClaim.input_digest``); an input with those exact
bytes, once its plan's outputs are all in Kafka, can only be a duplicate (SPEC 3.9). Skipping it
here decides what ``dedupe`` would (DUPLICATE_EVENT, nothing published), without validating,
fingerprinting and claiming it first.
"""

from __future__ import annotations

from typing import Any

import structlog
from reactivex import operators as ops

from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.ledger.protocol import ClaimStatus, PublishedInputs, input_digest
from rebalance_stream.operators.flow import DecodedDocument, Envelope, Op, Skipped
from rebalance_stream.operators.step import guarded

log = structlog.get_logger(__name__)

STEP = "skip_published_inputs"


def _plan_id(document: dict[str, Any]) -> str:
    """The plan_id of a document that was valid when its bytes were first claimed."""
    plan = document.get("rebalance_plan")
    return str(plan.get("plan_id")) if isinstance(plan, dict) else "?"


def skip_published_inputs(
    store: PublishedInputs,
) -> Op[Envelope[Any], Envelope[Any]]:
    """Skip each decoded input whose bytes the ledger says were executed and published.

    -d1-d2-|   ->   -s1-d2-|   (d1's bytes were a plan's first event, and its outputs are
                                in Kafka; d2 goes on to validation and dedupe unchanged)
    Put it between ``decode`` and ``validate``. A skipped input is not checked for its key
    (``mis_keyed`` stays False): it was checked when it was first executed.
    """

    def check(envelope: Envelope[Any], decoded: DecodedDocument) -> Envelope[Any]:
        first_event_id = store.published_input(input_digest(envelope.record.value))
        if first_event_id is None:
            return envelope
        plan_id = _plan_id(decoded.document)
        status = ClaimStatus.DUPLICATE_EVENT
        log.info(
            "plan_duplicate_skipped",
            plan_id=plan_id,
            status=status.value,
            first_event_id=first_event_id,
            **envelope.log_fields(),
        )
        reason = f"plan_id {plan_id} already decided (first event_id {first_event_id})"
        return envelope.with_payload(Skipped(status.name, reason))

    return ops.map(guarded(FailureStep.EXECUTION, STEP, DecodedDocument, check))
