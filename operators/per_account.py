"""serialize_by_account: one account's plans one at a time and in order; accounts in parallel."""

from __future__ import annotations

from typing import Any

import reactivex
from reactivex import GroupedObservable, Observable
from reactivex import operators as ops
from reactivex.abc import SchedulerBase

from rebalance_stream.operators.flow import Envelope, Op

SETTLED_LANE = ""
NO_ACCOUNT_LANE = "no-account"


def account_lane(envelope: Envelope[Any]) -> str:
    """The account whose plans must not overlap; settled inputs share one lane of their own,
    and an undecided input without an event (none reaches here in the job) another."""
    if envelope.is_settled:
        return SETTLED_LANE
    if envelope.event is None:
        return NO_ACCOUNT_LANE
    return "account:" + envelope.event.rebalance_plan.account_id


def serialize_by_account(
    inner: Op[Envelope[Any], Envelope[Any]], scheduler: SchedulerBase | None = None
) -> Op[Envelope[Any], Envelope[Any]]:
    """Run ``inner`` on each undecided envelope, one per account at a time, in arrival order.

    -a1-a2-b1-|   ->   -b1'-a1'-a2'-|   (a2 waits for a1; b1 runs beside them)
    ``scheduler`` is where ``inner`` runs, for example a ThreadPoolScheduler for blocking I/O.
    An envelope settled already (a duplicate, a failure) is passed on at once, in the caller's
    thread, without ``inner``: every step of a plan leaves a settled envelope alone, so it
    would come out unchanged, only later and at the cost of a pipeline built for it.
    """

    def run_one(envelope: Envelope[Any]) -> Observable[Envelope[Any]]:
        return reactivex.just(envelope, scheduler).pipe(inner)

    def lane(group: GroupedObservable[str, Envelope[Any]]) -> Observable[Envelope[Any]]:
        if group.key == SETTLED_LANE:
            return group
        return group.pipe(ops.concat_map(run_one))

    return reactivex.compose(ops.group_by(account_lane), ops.flat_map(lane))
