"""skip_when_no_trades: a plan with nothing to do succeeds with 0 orders and no broker call."""

from __future__ import annotations

from typing import Any

import structlog
from reactivex import operators as ops

from rebalance_stream.contracts.execution import Scenario
from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.flow import Clock, Envelope, Op, PlanExecution
from rebalance_stream.operators.step import guarded

log = structlog.get_logger(__name__)

STEP = "skip_when_no_trades"


def needs_no_trades(event: RebalancePlanned) -> bool:
    """SPEC 3.2: ``trades_required`` is false, or every item is HOLD."""
    return not event.trades_required or not event.rebalance_plan.has_trades


def skip_when_no_trades(clock: Clock) -> Op[Envelope[RebalancePlanned], Envelope[Any]]:
    """Decide plans that need no trades as a 0-order execution (``no_trades_needed``).

    -trade-hold-|   ->   -trade-E0-|      (E0 is a PlanExecution with 0 orders)
    """

    def check(envelope: Envelope[RebalancePlanned], event: RebalancePlanned) -> Envelope[Any]:
        if not needs_no_trades(event):
            return envelope
        now = clock()
        log.info("plan_needs_no_trades", **envelope.log_fields())
        return envelope.with_payload(
            PlanExecution(Scenario.NO_TRADES_NEEDED, (), now, now, decided_by=STEP)
        )

    return ops.map(guarded(FailureStep.EXECUTION, STEP, RebalancePlanned, check))
