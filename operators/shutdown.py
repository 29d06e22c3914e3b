"""hold_back_when_stopping: once the job is stopping, plans that have not started stay unstarted.

A shutdown lets the plans already executing finish (SPEC 1); the plans still waiting in their
account's lane become ``NotStarted``, are not acknowledged, and are delivered again after the
restart, so a stop never waits for a whole backlog.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from reactivex import operators as ops

from rebalance_stream.operators.flow import Envelope, NotStarted, Op

log = structlog.get_logger(__name__)


def hold_back_when_stopping(stopping: Callable[[], bool]) -> Op[Envelope[Any], Envelope[Any]]:
    """Turn an undecided plan into NotStarted when ``stopping()`` is true as it reaches here.

    -p1-p2-p3-|  (stop requested after p1)  ->  -p1-N-N-|
    Put it first in the per-account lane, so it is asked just before a plan would start.
    """

    def check(envelope: Envelope[Any]) -> Envelope[Any]:
        if envelope.is_settled or not stopping():
            return envelope
        log.info("plan_not_started_stopping", **envelope.log_fields())
        return envelope.with_payload(NotStarted("the job is stopping; redelivered on restart"))

    return ops.map(check)
