"""dedupe: each plan_id is executed at most once, whatever its event_id (SPEC 3.9)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import structlog
from reactivex import operators as ops

from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.flow import Envelope, Failed, Op, Skipped
from rebalance_stream.operators.step import guarded

log = structlog.get_logger(__name__)

STEP = "dedupe"


class ClaimStatus(StrEnum):
    NEW = "new"
    DUPLICATE_EVENT = "duplicate_event"
    DUPLICATE_PLAN = "duplicate_plan"
    CONFLICT = "conflict"
    EVENT_ID_REUSED = "event_id_reused"


@dataclass(frozen=True, slots=True)
class Claim:
    """The store's answer; ``first_event_id`` is the event_id first recorded for the plan."""

    status: ClaimStatus
    first_event_id: str


@dataclass(frozen=True, slots=True)
class PlanClaim:
    """What dedupe asks the store to record."""

    plan_id: str
    event_id: str
    items_fingerprint: str
    received_at: datetime


class DedupeStore(Protocol):
    """Remembers which events and plans were seen. ``claim`` is atomic per plan_id."""

    def claim(self, request: PlanClaim) -> Claim:
        """Record the event and, if the plan is new, the plan; say what was there before."""
        ...


class InMemoryDedupeStore:
    """A DedupeStore that forgets on restart; the durable ledger replaces it in production."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, str] = {}
        self._plans: dict[str, tuple[str, str]] = {}

    def claim(self, request: PlanClaim) -> Claim:
        with self._lock:
            known = self._plans.get(request.plan_id)
            first_event_id = known[0] if known else request.event_id
            seen_for_plan = self._events.get(request.event_id)
            if seen_for_plan == request.plan_id:
                return Claim(ClaimStatus.DUPLICATE_EVENT, first_event_id)
            if seen_for_plan is not None:
                return Claim(ClaimStatus.EVENT_ID_REUSED, first_event_id)
            self._events[request.event_id] = request.plan_id
            if known is None:
                self._plans[request.plan_id] = (request.event_id, request.items_fingerprint)
                return Claim(ClaimStatus.NEW, request.event_id)
            if known[1] != request.items_fingerprint:
                return Claim(ClaimStatus.CONFLICT, first_event_id)
            return Claim(ClaimStatus.DUPLICATE_PLAN, first_event_id)


def claim_request(envelope: Envelope[RebalancePlanned], event: RebalancePlanned) -> PlanClaim:
    plan = event.rebalance_plan
    return PlanClaim(
        plan_id=plan.plan_id,
        event_id=event.event_id,
        items_fingerprint=plan.items_fingerprint(),
        received_at=envelope.record.received_at,
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


def dedupe(store: DedupeStore) -> Op[Envelope[RebalancePlanned], Envelope[RebalancePlanned]]:
    """Turn a plan_id seen before into Skipped, or Failed when its items differ.

    -a-b-a'-c-a"-|   ->   -a-b-s-c-F-|     (a' repeats a; a" has a's plan_id, other items)
    """

    def check(
        envelope: Envelope[RebalancePlanned], event: RebalancePlanned
    ) -> Envelope[RebalancePlanned]:
        plan_id = event.rebalance_plan.plan_id
        claim = store.claim(claim_request(envelope, event))
        if claim.status is ClaimStatus.NEW:
            log.info("plan_claimed", plan_id=plan_id, **envelope.log_fields())
            return envelope
        if claim.status is ClaimStatus.CONFLICT:
            log.warning("plan_id_conflict", plan_id=plan_id, **envelope.log_fields())
            return envelope.failed(_conflict(plan_id, claim.first_event_id))
        if claim.status is ClaimStatus.EVENT_ID_REUSED:
            log.warning("event_id_reused", plan_id=plan_id, **envelope.log_fields())
            return envelope.failed(_event_id_reused(event.event_id, plan_id))
        log.info(
            "plan_duplicate_skipped",
            plan_id=plan_id,
            status=claim.status.value,
            first_event_id=claim.first_event_id,
            **envelope.log_fields(),
        )
        reason = f"plan_id {plan_id} already decided (first event_id {claim.first_event_id})"
        return envelope.with_payload(Skipped(claim.status.name, reason))

    return ops.map(guarded(FailureStep.EXECUTION, STEP, RebalancePlanned, check))
