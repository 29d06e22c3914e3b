"""skip_when_no_trades: a plan with nothing to do succeeds with 0 orders (SPEC 3.2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from plan_factory import Trade, planned
from reactivex.testing import ReactiveTest, TestScheduler
from support import T0, FixedClock, record, validated

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
from rebalance_stream.operators.no_trade import needs_no_trades, skip_when_no_trades

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed

BUY = [Trade("SPY", "BUY", "1500.00"), Trade("VTI", "HOLD", "0")]
SELL = [Trade("SPY", "SELL", "-1500.00")]
HOLDS = [Trade("SPY", "HOLD", "0"), Trade("VTI", "HOLD", "0.00")]
NO_TRADES = PlanExecution(Scenario.NO_TRADES_NEEDED, (), T0, T0, decided_by="skip_when_no_trades")


def event(document: dict[str, Any]) -> RebalancePlanned:
    return RebalancePlanned.model_validate(document)


class FailingOnceClock:
    """A clock whose first reading fails."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("clock unavailable")
        return T0


def test_needs_no_trades_trades_required_false_is_true() -> None:
    assert needs_no_trades(event(planned("p1", BUY, trades_required=False))) is True


def test_needs_no_trades_all_hold_is_true() -> None:
    assert needs_no_trades(event(planned("p1", HOLDS, trades_required=True))) is True


def test_needs_no_trades_buy_with_trades_required_is_false() -> None:
    assert needs_no_trades(event(planned("p1", BUY, trades_required=True))) is False


def test_needs_no_trades_sell_with_trades_required_is_false() -> None:
    assert needs_no_trades(event(planned("p1", SELL, trades_required=True))) is False


def outcome(envelope: Envelope[Any]) -> tuple[str, str]:
    payload = envelope.payload
    if isinstance(payload, Failed | Skipped):
        return (type(payload).__name__, payload.reason_code)
    if isinstance(payload, PlanExecution):
        return ("execution", payload.scenario.value)
    assert isinstance(payload, RebalancePlanned)
    return ("plan", payload.rebalance_plan.plan_id)


def timeline(messages: list[Any]) -> list[tuple[float, tuple[str, str] | str]]:
    return [
        (m.time, outcome(m.value.value) if m.value.kind == "N" else m.value.kind) for m in messages
    ]


def test_skip_when_no_trades_operator_decides_no_trade_plans_and_passes_trades() -> None:
    scheduler = TestScheduler()
    buy = validated(planned("p1", BUY, trades_required=True), 1)
    not_required = validated(planned("p2", BUY, trades_required=False), 2)
    all_hold = validated(planned("p3", HOLDS, trades_required=True), 3)
    source = scheduler.create_hot_observable(
        on_next(210, buy),
        on_next(220, not_required),
        on_next(230, all_hold),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(skip_when_no_trades(FixedClock())))

    assert timeline(results.messages) == [
        (210, ("plan", "p1")),
        (220, ("execution", "no_trades_needed")),
        (230, ("execution", "no_trades_needed")),
        (240, "C"),
    ]
    assert results.messages[0].value.value is buy
    assert results.messages[1].value.value == not_required.with_payload(NO_TRADES)
    assert results.messages[2].value.value == all_hold.with_payload(NO_TRADES)
    assert results.messages[2].value.value.event is all_hold.event


def test_skip_when_no_trades_operator_clock_failure_fails_and_later_plans_still_arrive() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, validated(planned("p1", HOLDS), 1)),
        on_next(220, validated(planned("p2", BUY), 2)),
        on_next(230, validated(planned("p3", HOLDS), 3)),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(skip_when_no_trades(FailingOnceClock())))

    assert timeline(results.messages) == [
        (210, ("Failed", "UNEXPECTED_ERROR")),
        (220, ("plan", "p2")),
        (230, ("execution", "no_trades_needed")),
        (240, "C"),
    ]
    assert results.messages[0].value.value.payload == Failed(
        stage=FailureStep.EXECUTION,
        reason_code="UNEXPECTED_ERROR",
        reason="unexpected error in skip_when_no_trades: RuntimeError: clock unavailable",
        error_type="RuntimeError",
        step="skip_when_no_trades",
        dead_letter=False,
        notify=True,
    )


def test_skip_when_no_trades_operator_settled_inputs_pass_through_untouched() -> None:
    scheduler = TestScheduler()
    undecodable = decode_record(record(b"not json", 1))
    duplicate = validated(planned("p2", HOLDS), 2).with_payload(Skipped("DUPLICATE_PLAN", "seen"))
    source = scheduler.create_hot_observable(
        on_next(210, undecodable),
        on_next(220, duplicate),
        on_next(230, validated(planned("p3", HOLDS), 3)),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(skip_when_no_trades(FixedClock())))

    assert timeline(results.messages) == [
        (210, ("Failed", "MALFORMED_JSON")),
        (220, ("Skipped", "DUPLICATE_PLAN")),
        (230, ("execution", "no_trades_needed")),
        (240, "C"),
    ]
    assert results.messages[0].value.value is undecodable
    assert results.messages[1].value.value is duplicate
