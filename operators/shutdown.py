"""hold_back_unstarted: plans that have not started stay unstarted when their source says so.

A shutdown, or the revocation of a partition, lets the plans already executing finish (SPEC 1);
the plans still waiting in their account's lane become ``NotStarted``, are not acknowledged, and
are delivered again (after the restart, or to the partition's next owner). So a stop never
waits for a whole backlog, and a plan never runs in two instances at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from reactivex import operators as ops

from rebalance_stream.operators.flow import Envelope, NotStarted, Op, SourcePosition

log = structlog.get_logger(__name__)


def hold_back_unstarted(
    held_back: Callable[[SourcePosition], bool],
) -> Op[Envelope[Any], Envelope[Any]]:
    """Turn an undecided plan into NotStarted when ``held_back(position)`` is true as it
    reaches here.

    -p1-p2-p3-|  (stop requested after p1)  ->  -p1-N-N-|
    Put it first in the per-account lane, so it is asked just before a plan would start.
    """

    def check(envelope: Envelope[Any]) -> Envelope[Any]:
        if envelope.is_settled or not held_back(envelope.position):
            return envelope
        log.info("plan_not_started_held_back", **envelope.log_fields())
        return envelope.with_payload(NotStarted("held back by a stop or a revocation"))

    return ops.map(check)
