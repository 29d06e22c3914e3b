"""reject_stale: a plan older than max_plan_age is never executed (SPEC 3.12)."""

from __future__ import annotations

from datetime import timedelta

import structlog
from reactivex import operators as ops

from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.flow import Clock, Envelope, Failed, Op
from rebalance_stream.operators.step import guarded

log = structlog.get_logger(__name__)

STEP = "reject_stale"


def staleness_failure(event: RebalancePlanned, age: timedelta, max_age: timedelta) -> Failed:
    return Failed(
        stage=FailureStep.VALIDATION,
        reason_code="PLAN_STALE",
        reason=(
            f"plan {event.rebalance_plan.plan_id} is {int(age.total_seconds())} s old, "
            f"older than max_plan_age {int(max_age.total_seconds())} s; not executed"
        ),
        error_type="StalePlan",
        step=STEP,
    )


def reject_stale(
    max_plan_age: timedelta, clock: Clock
) -> Op[Envelope[RebalancePlanned], Envelope[RebalancePlanned]]:
    """Fail plans whose own timestamp is older than ``max_plan_age``; 0 turns the check off.

    -fresh-old-fresh-|   ->   -fresh-F-fresh-|      (F is Failed(validation, PLAN_STALE))
    """

    def check(
        envelope: Envelope[RebalancePlanned], event: RebalancePlanned
    ) -> Envelope[RebalancePlanned]:
        if max_plan_age <= timedelta(0):
            return envelope
        age = clock() - event.rebalance_plan.timestamp
        if age <= max_plan_age:
            return envelope
        failure = staleness_failure(event, age, max_plan_age)
        log.warning("plan_stale", age_s=int(age.total_seconds()), **envelope.log_fields())
        return envelope.failed(failure)

    return ops.map(guarded(FailureStep.EXECUTION, STEP, RebalancePlanned, check))
