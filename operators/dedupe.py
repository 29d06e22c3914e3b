"""dedupe: each plan_id is executed at most once, whatever its event_id (SPEC 3.9).

The ledger says what an input means (``decide_claim``): a new plan goes on; the first event of a
plan cut off by a crash is resumed, keeping its first receive time; a plan decided but not yet
published is published again from the record; anything else seen before is skipped.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import structlog
from reactivex import operators as ops

from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.ledger.protocol import (
    Claim,
    ClaimStatus,
    ClaimStore,
    PlanClaim,
    input_digest,
)
from rebalance_stream.operators.flow import Envelope, Failed, Op, Recorded, Skipped
from rebalance_stream.operators.step import guarded

log = structlog.get_logger(__name__)

STEP = "dedupe"


def claim_request(envelope: Envelope[RebalancePlanned], event: RebalancePlanned) -> PlanClaim:
    plan = event.rebalance_plan
    return PlanClaim(
        plan_id=plan.plan_id,
        event_id=event.event_id,
        items_fingerprint=plan.items_fingerprint(),
        received_at=envelope.record.received_at,
        account_id=plan.account_id,
        partition=envelope.record.position.partition,
        input_digest=input_digest(envelope.record.value),
        correlation_id=event.correlation_id,
    )


def _event_id_reused(event_id: str, plan_id: str) -> Failed:
    return Failed(
        stage=FailureStep.VALIDATION,
        reason_code="EVENT_ID_REUSED",
        reason=(
            f"event_id {event_id} was already used by another plan; plan {plan_id} is not "
            "executed, since its outputs could not be told apart from the other plan's"
        ),
        error_type="EventIdReused",
        step=STEP,
    )


def _conflict(plan_id: str, first_event_id: str) -> Failed:
    return Failed(
        stage=FailureStep.VALIDATION,
        reason_code="PLAN_ID_CONFLICT",
        reason=(
            f"plan_id {plan_id} was already received with different items "
            f"(first event_id {first_event_id}); this plan is not executed"
        ),
        error_type="PlanIdConflict",
        step=STEP,
    )


def _owned(envelope: Envelope[RebalancePlanned], claim: Claim) -> Envelope[RebalancePlanned]:
    """The envelope that carries its plan's outcome, timed from the plan's first receipt."""
    record = replace(envelope.record, received_at=claim.first_received_at)
    if claim.status is ClaimStatus.REPUBLISH:
        return envelope.with_payload(Recorded(claim.outputs), record=record, owns_outcome=True)
    resumed = claim.status is ClaimStatus.RESUME
    return replace(envelope, record=record, owns_outcome=True, resumed=resumed)


_OWNED = {ClaimStatus.NEW: "plan_claimed", ClaimStatus.RESUME: "plan_resumed"}
_OWNED[ClaimStatus.REPUBLISH] = "plan_outputs_republished"


def dedupe(store: ClaimStore) -> Op[Envelope[RebalancePlanned], Envelope[RebalancePlanned]]:
    """Claim each plan at the ledger; skip what was seen before, fail a plan_id conflict.

    -a-b-a'-c-a"-|   ->   -a-b-s-c-F-|     (a' repeats a; a" has a's plan_id, other items)

    A redelivered first event goes on when its plan has no outcome yet (RESUME), and becomes
    ``Recorded`` when the outcome is on record but was not published (REPUBLISH).
    """

    def check(
        envelope: Envelope[RebalancePlanned], event: RebalancePlanned
    ) -> Envelope[RebalancePlanned]:
        plan_id = event.rebalance_plan.plan_id
        claim = store.claim(claim_request(envelope, event))
        if claim.status in _OWNED:
            log.info(_OWNED[claim.status], plan_id=plan_id, **envelope.log_fields())
            return _owned(envelope, claim)
        if claim.status is ClaimStatus.CONFLICT:
            log.warning("plan_id_conflict", plan_id=plan_id, **envelope.log_fields())
            return envelope.failed(_conflict(plan_id, claim.first_event_id))
        if claim.status is ClaimStatus.EVENT_ID_REUSED:
            log.warning("event_id_reused", plan_id=plan_id, **envelope.log_fields())
            return envelope.failed(_event_id_reused(event.event_id, plan_id))
        return skip_duplicate(envelope, plan_id, claim.status, claim.first_event_id)

    return ops.map(guarded(FailureStep.EXECUTION, STEP, RebalancePlanned, check))


def skip_duplicate(
    envelope: Envelope[Any], plan_id: str, status: ClaimStatus, first_event_id: str
) -> Envelope[Any]:
    """``envelope`` settled as a duplicate of ``plan_id``: ``Skipped(status)`` with the reason,
    and one ``plan_duplicate_skipped`` line."""
    log.info(
        "plan_duplicate_skipped",
        plan_id=plan_id,
        status=status.value,
        first_event_id=first_event_id,
        **envelope.log_fields(),
    )
    reason = f"plan_id {plan_id} already decided (first event_id {first_event_id})"
    return envelope.with_payload(Skipped(status.name, reason))
