"""gate_on_market_clock: a closed market is a 0-order success; clock failures obey policy (3.3)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from plan_factory import Trade, planned
from reactivex.testing import ReactiveTest, TestScheduler
from support import T0, FixedClock, record, validated

from rebalance_stream.brokers.protocol import MarketClock
from rebalance_stream.contracts.execution import Scenario
from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.decode import decode_record
from rebalance_stream.operators.flow import (
    Envelope,
    Failed,
    PlanExecution,
    Skipped,
)
from rebalance_stream.operators.market_gate import (
    MarketClockFailure,
    clock_failure,
    gate_on_market_clock,
)

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed

ITEMS = [Trade("SPY", "BUY", "1500.00")]
OPEN, CLOSED = True, False
LATENCY_S = 0.25


class ScriptedMarket:
    """A MarketClockSource answering from a script: True is open, False closed, or an error.

    Each call takes LATENCY_S on the shared clock, so the gate's timing is 250 ms.
    """

    def __init__(self, clock: FixedClock, *answers: bool | Exception) -> None:
        self.clock = clock
        self.answers = list(answers)
        self.calls = 0

    def get_clock(self) -> MarketClock:
        self.calls += 1
        self.clock.advance(LATENCY_S)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return MarketClock(is_open=answer, timestamp=T0)


def unavailable(message: str) -> Failed:
    return Failed(
        stage=FailureStep.MARKET_GATE,
        reason_code="MARKET_CLOCK_UNAVAILABLE",
        reason=f"market clock unavailable: ConnectionError: {message}",
        error_type="ConnectionError",
        step="gate_on_market_clock",
        dead_letter=False,
        notify=True,
    )


def outcome(envelope: Envelope[Any]) -> tuple[str, str, int | None]:
    """The payload's kind and code, with the market_gate timing if one was recorded."""
    payload = envelope.payload
    timing = envelope.timings_ms.get("market_gate")
    if isinstance(payload, Failed | Skipped):
        return (type(payload).__name__, payload.reason_code, timing)
    if isinstance(payload, PlanExecution):
        return ("execution", payload.scenario.value, timing)
    assert isinstance(payload, RebalancePlanned)
    return ("plan", payload.rebalance_plan.plan_id, timing)


def timeline(messages: list[Any]) -> list[tuple[float, tuple[str, str, int | None] | str]]:
    return [
        (m.time, outcome(m.value.value) if m.value.kind == "N" else m.value.kind) for m in messages
    ]


def test_clock_failure_names_the_exception() -> None:
    failure = clock_failure(ConnectionError("broker timed out"))

    assert failure == unavailable("broker timed out")


def test_gate_operator_clock_error_under_fail_fails_and_later_plans_still_arrive() -> None:
    clock = FixedClock()
    market = ScriptedMarket(clock, OPEN, ConnectionError("broker timed out"), CLOSED)
    scheduler = TestScheduler()
    first = validated(planned("p1", ITEMS), 1)
    second = validated(planned("p2", ITEMS), 2)
    third = validated(planned("p3", ITEMS), 3)
    source = scheduler.create_hot_observable(
        on_next(210, first), on_next(220, second), on_next(230, third), on_completed(240)
    )
    gate = gate_on_market_clock(market, MarketClockFailure.FAIL, clock)

    results = scheduler.start(lambda: source.pipe(gate))

    assert timeline(results.messages) == [
        (210, ("plan", "p1", 250)),
        (220, ("Failed", "MARKET_CLOCK_UNAVAILABLE", None)),
        (230, ("execution", "market_closed", 250)),
        (240, "C"),
    ]
    assert results.messages[0].value.value == first.timed("market_gate", 250)
    assert results.messages[1].value.value == second.failed(unavailable("broker timed out"))
    assert results.messages[2].value.value == third.timed("market_gate", 250).with_payload(
        PlanExecution(
            Scenario.MARKET_CLOSED,
            (),
            T0 + timedelta(seconds=0.5),
            T0 + timedelta(seconds=0.75),
            decided_by="gate_on_market_clock",
        )
    )
    assert market.calls == 3


def test_gate_operator_open_market_passes_payload_unchanged_with_timing() -> None:
    clock = FixedClock()
    scheduler = TestScheduler()
    plan = validated(planned("p1", ITEMS), 1)
    source = scheduler.create_hot_observable(on_next(210, plan), on_completed(240))
    gate = gate_on_market_clock(ScriptedMarket(clock, OPEN), MarketClockFailure.FAIL, clock)

    results = scheduler.start(lambda: source.pipe(gate))

    assert timeline(results.messages) == [(210, ("plan", "p1", 250)), (240, "C")]
    assert results.messages[0].value.value.payload is plan.payload
    assert results.messages[0].value.value.timings_ms == {"market_gate": 250}


def test_gate_operator_closed_market_decides_market_closed_with_zero_orders() -> None:
    clock = FixedClock()
    scheduler = TestScheduler()
    plan = validated(planned("p1", ITEMS), 1)
    source = scheduler.create_hot_observable(on_next(210, plan), on_completed(240))
    gate = gate_on_market_clock(ScriptedMarket(clock, CLOSED), MarketClockFailure.FAIL, clock)

    results = scheduler.start(lambda: source.pipe(gate))

    decided = results.messages[0].value.value
    assert decided.payload == PlanExecution(
        Scenario.MARKET_CLOSED,
        (),
        T0,
        T0 + timedelta(seconds=LATENCY_S),
        decided_by="gate_on_market_clock",
    )
    assert decided.event is plan.event
    assert decided.timings_ms == {"market_gate": 250}


@pytest.mark.parametrize(
    ("policy", "first"),
    [
        (MarketClockFailure.PROCEED, ("plan", "p1", 250)),
        (MarketClockFailure.FAIL, ("Failed", "MARKET_CLOCK_UNAVAILABLE", None)),
    ],
)
def test_gate_operator_any_exception_is_a_clock_failure(
    policy: MarketClockFailure, first: tuple[str, str, int | None]
) -> None:
    clock = FixedClock()
    scheduler = TestScheduler()
    market = ScriptedMarket(clock, ValueError("bad clock payload"), OPEN)
    source = scheduler.create_hot_observable(
        on_next(210, validated(planned("p1", ITEMS), 1)),
        on_next(220, validated(planned("p2", ITEMS), 2)),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(gate_on_market_clock(market, policy, clock)))

    assert timeline(results.messages) == [(210, first), (220, ("plan", "p2", 250)), (240, "C")]


def test_gate_operator_clock_error_under_proceed_lets_plan_pass_with_timing() -> None:
    clock = FixedClock()
    scheduler = TestScheduler()
    plan = validated(planned("p1", ITEMS), 1)
    market = ScriptedMarket(clock, ConnectionError("broker timed out"))
    source = scheduler.create_hot_observable(on_next(210, plan), on_completed(240))
    gate = gate_on_market_clock(market, MarketClockFailure.PROCEED, clock)

    results = scheduler.start(lambda: source.pipe(gate))

    assert timeline(results.messages) == [(210, ("plan", "p1", 250)), (240, "C")]
    assert results.messages[0].value.value == plan.timed("market_gate", 250)
    assert results.messages[0].value.value.payload is plan.payload


def test_gate_operator_decided_or_settled_inputs_skip_the_clock() -> None:
    clock = FixedClock()
    market = ScriptedMarket(clock)
    scheduler = TestScheduler()
    no_trades = validated(planned("p1", ITEMS), 1).with_payload(
        PlanExecution(Scenario.NO_TRADES_NEEDED, (), T0, T0, decided_by="skip_when_no_trades")
    )
    undecodable = decode_record(record(b"not json", 2))
    duplicate = validated(planned("p3", ITEMS), 3).with_payload(Skipped("DUPLICATE_EVENT", "seen"))
    source = scheduler.create_hot_observable(
        on_next(210, no_trades),
        on_next(220, undecodable),
        on_next(230, duplicate),
        on_completed(240),
    )
    gate = gate_on_market_clock(market, MarketClockFailure.FAIL, clock)

    results = scheduler.start(lambda: source.pipe(gate))

    assert timeline(results.messages) == [
        (210, ("execution", "no_trades_needed", None)),
        (220, ("Failed", "MALFORMED_JSON", None)),
        (230, ("Skipped", "DUPLICATE_EVENT", None)),
        (240, "C"),
    ]
    assert [m.value.value for m in results.messages[:3]] == [no_trades, undecodable, duplicate]
    assert market.calls == 0


def test_gate_operator_failing_time_source_fails_as_unexpected_error() -> None:
    def broken_clock() -> Any:
        raise RuntimeError("no time")

    market = ScriptedMarket(FixedClock(), OPEN)
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, validated(planned("p1", ITEMS), 1)), on_completed(240)
    )
    gate = gate_on_market_clock(market, MarketClockFailure.PROCEED, broken_clock)

    results = scheduler.start(lambda: source.pipe(gate))

    assert timeline(results.messages) == [(210, ("Failed", "UNEXPECTED_ERROR", None)), (240, "C")]
    assert results.messages[0].value.value.payload == Failed(
        stage=FailureStep.MARKET_GATE,
        reason_code="UNEXPECTED_ERROR",
        reason="unexpected error in gate_on_market_clock: RuntimeError: no time",
        error_type="RuntimeError",
        step="gate_on_market_clock",
        dead_letter=False,
        notify=True,
    )
    assert market.calls == 0
