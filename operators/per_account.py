"""serialize_by_account: one account's plans one at a time and in order; accounts in parallel."""

from __future__ import annotations

from typing import Any

import reactivex
from reactivex import Observable
from reactivex import operators as ops
from reactivex.abc import SchedulerBase

from rebalance_stream.operators.flow import Envelope, Op

SETTLED_LANE = ""


def account_lane(envelope: Envelope[Any]) -> str:
    """The account whose plans must not overlap; settled inputs share one lane of their own."""
    if envelope.is_settled or envelope.event is None:
        return SETTLED_LANE
    return "account:" + envelope.event.rebalance_plan.account_id


def serialize_by_account(
    inner: Op[Envelope[Any], Envelope[Any]], scheduler: SchedulerBase | None = None
) -> Op[Envelope[Any], Envelope[Any]]:
    """Run ``inner`` on each envelope, one envelope per account at a time, in arrival order.

    -a1-a2-b1-|   ->   -b1'-a1'-a2'-|   (a2 waits for a1; b1 runs beside them)
    ``scheduler`` is where ``inner`` runs, for example a ThreadPoolScheduler for blocking I/O;
    an envelope settled already (a duplicate, a failure) passes ``inner`` in the caller's
    thread: there is nothing left to block on.
    """

    def run_one(envelope: Envelope[Any]) -> Observable[Envelope[Any]]:
        return reactivex.just(envelope, None if envelope.is_settled else scheduler).pipe(inner)

    def lane(group: Observable[Envelope[Any]]) -> Observable[Envelope[Any]]:
        return group.pipe(ops.concat_map(run_one))

    return reactivex.compose(ops.group_by(account_lane), ops.flat_map(lane))
