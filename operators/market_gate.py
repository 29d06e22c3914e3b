"""gate_on_market_clock: a closed market succeeds with 0 orders; a clock failure obeys policy."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

import structlog
from reactivex import operators as ops

from rebalance_stream.brokers.protocol import MarketClock
from rebalance_stream.contracts.execution import Scenario
from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.flow import Clock, Envelope, Failed, Op, PlanExecution, elapsed_ms
from rebalance_stream.operators.step import guarded

log = structlog.get_logger(__name__)

STEP = "gate_on_market_clock"


class MarketClockFailure(StrEnum):
    """What to do when the clock cannot be read (SPEC 3.3)."""

    PROCEED = "proceed"
    FAIL = "fail"


class MarketClockSource(Protocol):
    def get_clock(self) -> MarketClock: ...


def clock_failure(exc: Exception) -> Failed:
    return Failed(
        stage=FailureStep.MARKET_GATE,
        reason_code="MARKET_CLOCK_UNAVAILABLE",
        reason=f"market clock unavailable: {type(exc).__name__}: {exc}",
        error_type=type(exc).__name__,
        step=STEP,
    )


def gate_on_market_clock(
    source: MarketClockSource, on_failure: MarketClockFailure, clock: Clock
) -> Op[Envelope[Any], Envelope[Any]]:
    """Ask the broker's clock once per plan: closed -> 0-order success (``market_closed``).

    -p1-p2-|   ->   -p1-E0-|      (the market closed before p2; E0 is a 0-order execution)
    A clock error is Failed(market_gate) under ``fail``, and lets the plan on under ``proceed``.
    """

    def check(envelope: Envelope[Any], event: RebalancePlanned) -> Envelope[Any]:
        started = clock()
        try:
            market = source.get_clock()
        except Exception as exc:  # any failure to read the clock is a clock failure
            log.warning("market_clock_failed", policy=on_failure.value, **envelope.log_fields())
            if on_failure is MarketClockFailure.FAIL:
                return envelope.failed(clock_failure(exc))
            return envelope.timed("market_gate", elapsed_ms(started, clock()))
        finished = clock()
        timed = envelope.timed("market_gate", elapsed_ms(started, finished))
        if market.is_open:
            return timed
        log.info("market_closed", **envelope.log_fields())
        return timed.with_payload(
            PlanExecution(Scenario.MARKET_CLOSED, (), started, finished, decided_by=STEP)
        )

    return ops.map(guarded(FailureStep.MARKET_GATE, STEP, RebalancePlanned, check))
