"""check_risk: pre-trade limits and the kill switch; a breach places no orders (SPEC 3.10)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from plan_factory import Trade, planned
from reactivex.testing import ReactiveTest, TestScheduler
from support import T0, FixedClock, record, validated

from rebalance_stream.contracts.execution import Scenario
from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlan, RebalancePlanned
from rebalance_stream.ledger.protocol import trading_day
from rebalance_stream.operators.decode import decode_record
from rebalance_stream.operators.flow import (
    Envelope,
    Failed,
    PlanExecution,
    Skipped,
)
from rebalance_stream.operators.risk import (
    KillSwitch,
    RiskDenial,
    RiskLimits,
    check_risk,
    evaluate_risk,
)

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed

MIXED = [
    Trade("SPY", "BUY", "1500.00"),
    Trade("TQQQ", "SELL", "-800.00"),
    Trade("IWM", "HOLD", "0"),
]
SELLS_ONLY = [Trade("TQQQ", "SELL", "-800.00"), Trade("IWM", "HOLD", "0")]
UNLIMITED = RiskLimits(max_order_notional=None, max_plan_notional=None, max_daily_notional=None)
DAILY_ONLY = RiskLimits(
    max_order_notional=None, max_plan_notional=None, max_daily_notional=Decimal(5000)
)


def plan(trades: list[Trade]) -> RebalancePlan:
    return RebalancePlan.model_validate(planned("p1", trades)["rebalance_plan"])


def denied(reason_code: str, reason: str) -> Failed:
    return Failed(
        stage=FailureStep.RISK,
        reason_code=reason_code,
        reason=reason,
        error_type="RiskDenied",
        step="check_risk",
        dead_letter=False,
        notify=True,
    )


class Switch:
    """A kill switch that can be flipped while the stream runs; counts its readings."""

    def __init__(self, state: KillSwitch = KillSwitch.ACTIVE) -> None:
        self.state = state
        self.reads = 0

    def __call__(self) -> KillSwitch:
        self.reads += 1
        return self.state

    def flip(self, state: KillSwitch) -> None:
        self.state = state


def test_risk_limits_defaults_are_documented_values() -> None:
    limits = RiskLimits()

    assert limits == RiskLimits(
        max_order_notional=Decimal(100_000),
        max_plan_notional=Decimal(1_000_000),
        allowed_symbols=frozenset(),
        denied_symbols=frozenset(),
    )


def test_evaluate_risk_within_defaults_is_none() -> None:
    assert evaluate_risk(plan(MIXED), RiskLimits(), KillSwitch.ACTIVE) is None


def test_evaluate_risk_halted_denies_any_plan() -> None:
    denial = evaluate_risk(plan(SELLS_ONLY), RiskLimits(), KillSwitch.HALTED)

    assert denial == RiskDenial("KILL_SWITCH_HALTED", "kill switch is halted: no orders are placed")


def test_evaluate_risk_reducing_with_buys_denies_naming_them() -> None:
    trades = [*MIXED, Trade("VTI", "BUY", "250.00")]

    denial = evaluate_risk(plan(trades), RiskLimits(), KillSwitch.REDUCING)

    assert denial == RiskDenial(
        "KILL_SWITCH_REDUCING", "kill switch is reducing (sells only); plan buys SPY, VTI"
    )


def test_evaluate_risk_reducing_with_sells_only_is_none() -> None:
    assert evaluate_risk(plan(SELLS_ONLY), RiskLimits(), KillSwitch.REDUCING) is None


def test_evaluate_risk_symbol_on_deny_list_is_denied() -> None:
    limits = RiskLimits(denied_symbols=frozenset({"TQQQ", "ARKK"}))

    denial = evaluate_risk(plan(MIXED), limits, KillSwitch.ACTIVE)

    assert denial == RiskDenial("SYMBOL_DENIED", "symbols on the deny list: TQQQ")


def test_evaluate_risk_held_symbol_on_deny_list_is_ignored() -> None:
    limits = RiskLimits(denied_symbols=frozenset({"IWM"}))

    assert evaluate_risk(plan(MIXED), limits, KillSwitch.ACTIVE) is None


def test_evaluate_risk_symbol_outside_allow_list_is_not_allowed() -> None:
    limits = RiskLimits(allowed_symbols=frozenset({"SPY"}))

    denial = evaluate_risk(plan(MIXED), limits, KillSwitch.ACTIVE)

    assert denial == RiskDenial("SYMBOL_NOT_ALLOWED", "symbols not on the allow list: TQQQ")


def test_evaluate_risk_allow_list_ignores_held_symbols() -> None:
    limits = RiskLimits(allowed_symbols=frozenset({"SPY", "TQQQ"}))

    assert evaluate_risk(plan(MIXED), limits, KillSwitch.ACTIVE) is None


def test_evaluate_risk_deny_list_wins_over_allow_list() -> None:
    limits = RiskLimits(allowed_symbols=frozenset({"SPY"}), denied_symbols=frozenset({"SPY"}))

    denial = evaluate_risk(plan(MIXED), limits, KillSwitch.ACTIVE)

    assert denial == RiskDenial("SYMBOL_DENIED", "symbols on the deny list: SPY")


def test_evaluate_risk_order_over_max_is_denied_with_its_notional() -> None:
    limits = RiskLimits(max_order_notional=Decimal(1000), max_plan_notional=None)

    denial = evaluate_risk(plan(MIXED), limits, KillSwitch.ACTIVE)

    assert denial == RiskDenial(
        "NOTIONAL_EXCEEDS_MAX_PER_ORDER",
        "order notional above max_order_notional 1000: SPY 1500.00",
    )


def test_evaluate_risk_sell_notional_counts_as_absolute_value() -> None:
    limits = RiskLimits(max_order_notional=Decimal(500), max_plan_notional=None)

    denial = evaluate_risk(plan(SELLS_ONLY), limits, KillSwitch.ACTIVE)

    assert denial == RiskDenial(
        "NOTIONAL_EXCEEDS_MAX_PER_ORDER",
        "order notional above max_order_notional 500: TQQQ 800.00",
    )


def test_evaluate_risk_order_exactly_at_max_is_allowed() -> None:
    limits = RiskLimits(max_order_notional=Decimal("1500.00"), max_plan_notional=None)

    assert evaluate_risk(plan(MIXED), limits, KillSwitch.ACTIVE) is None


def test_evaluate_risk_plan_over_max_is_denied_with_its_total() -> None:
    limits = RiskLimits(max_order_notional=None, max_plan_notional=Decimal(2000))

    denial = evaluate_risk(plan(MIXED), limits, KillSwitch.ACTIVE)

    assert denial == RiskDenial(
        "NOTIONAL_EXCEEDS_MAX_PER_PLAN", "plan notional 2300.00 above max_plan_notional 2000"
    )


def test_evaluate_risk_plan_exactly_at_max_is_allowed() -> None:
    limits = RiskLimits(max_order_notional=None, max_plan_notional=Decimal("2300.00"))

    assert evaluate_risk(plan(MIXED), limits, KillSwitch.ACTIVE) is None


def test_evaluate_risk_none_limits_are_unlimited() -> None:
    huge = [Trade("SPY", "BUY", "50000000.00"), Trade("VTI", "BUY", "90000000.00")]

    assert evaluate_risk(plan(huge), UNLIMITED, KillSwitch.ACTIVE) is None


@pytest.mark.parametrize(
    ("state", "limits", "reason_code"),
    [
        (KillSwitch.HALTED, RiskLimits(denied_symbols=frozenset({"SPY"})), "KILL_SWITCH_HALTED"),
        (
            KillSwitch.REDUCING,
            RiskLimits(denied_symbols=frozenset({"SPY"})),
            "KILL_SWITCH_REDUCING",
        ),
        (
            KillSwitch.ACTIVE,
            RiskLimits(denied_symbols=frozenset({"SPY"}), max_order_notional=Decimal(1)),
            "SYMBOL_DENIED",
        ),
        (
            KillSwitch.ACTIVE,
            RiskLimits(allowed_symbols=frozenset({"VTI"}), max_order_notional=Decimal(1)),
            "SYMBOL_NOT_ALLOWED",
        ),
        (
            KillSwitch.ACTIVE,
            RiskLimits(max_order_notional=Decimal(1), max_plan_notional=Decimal(1)),
            "NOTIONAL_EXCEEDS_MAX_PER_ORDER",
        ),
    ],
)
def test_evaluate_risk_several_breaches_report_the_first_rule(
    state: KillSwitch, limits: RiskLimits, reason_code: str
) -> None:
    denial = evaluate_risk(plan(MIXED), limits, state)

    assert denial is not None
    assert denial.reason_code == reason_code


def outcome(envelope: Envelope[Any]) -> tuple[str, str, int | None]:
    """The payload's kind and code, with the risk timing if one was recorded."""
    payload = envelope.payload
    timing = envelope.timings_ms.get("risk")
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


def test_check_risk_operator_order_over_limit_fails_and_later_plans_still_arrive() -> None:
    scheduler = TestScheduler()
    limits = RiskLimits(max_order_notional=Decimal(1000), max_plan_notional=None)
    small = validated(planned("p1", [Trade("VTI", "BUY", "250.00")]), 1)
    large = validated(planned("p2", MIXED), 2)
    sells = validated(planned("p3", SELLS_ONLY), 3)
    source = scheduler.create_hot_observable(
        on_next(210, small), on_next(220, large), on_next(230, sells), on_completed(240)
    )

    results = scheduler.start(lambda: source.pipe(check_risk(limits, Switch(), FixedClock())))

    assert timeline(results.messages) == [
        (210, ("plan", "p1", 0)),
        (220, ("Failed", "NOTIONAL_EXCEEDS_MAX_PER_ORDER", 0)),
        (230, ("plan", "p3", 0)),
        (240, "C"),
    ]
    assert results.messages[0].value.value == small.timed("risk", 0)
    assert results.messages[1].value.value == large.timed("risk", 0).failed(
        denied(
            "NOTIONAL_EXCEEDS_MAX_PER_ORDER",
            "order notional above max_order_notional 1000: SPY 1500.00",
        )
    )


def test_check_risk_operator_reads_kill_switch_for_every_plan() -> None:
    scheduler = TestScheduler()
    switch = Switch(KillSwitch.ACTIVE)
    scheduler.schedule_absolute(215, lambda *_: switch.flip(KillSwitch.HALTED))
    scheduler.schedule_absolute(225, lambda *_: switch.flip(KillSwitch.REDUCING))
    source = scheduler.create_hot_observable(
        on_next(210, validated(planned("p1", MIXED), 1)),
        on_next(220, validated(planned("p2", MIXED), 2)),
        on_next(230, validated(planned("p3", SELLS_ONLY), 3)),
        on_next(235, validated(planned("p4", MIXED), 4)),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(check_risk(RiskLimits(), switch, FixedClock())))

    assert timeline(results.messages) == [
        (210, ("plan", "p1", 0)),
        (220, ("Failed", "KILL_SWITCH_HALTED", 0)),
        (230, ("plan", "p3", 0)),
        (235, ("Failed", "KILL_SWITCH_REDUCING", 0)),
        (240, "C"),
    ]
    assert [m.value.value.payload for m in (results.messages[1], results.messages[3])] == [
        denied("KILL_SWITCH_HALTED", "kill switch is halted: no orders are placed"),
        denied("KILL_SWITCH_REDUCING", "kill switch is reducing (sells only); plan buys SPY"),
    ]
    assert switch.reads == 4


def test_check_risk_operator_symbol_lists_fail_and_later_plans_still_arrive() -> None:
    scheduler = TestScheduler()
    limits = RiskLimits(
        allowed_symbols=frozenset({"SPY", "TQQQ", "VTI"}), denied_symbols=frozenset({"VTI"})
    )
    source = scheduler.create_hot_observable(
        on_next(210, validated(planned("p1", [Trade("VTI", "BUY", "250.00")]), 1)),
        on_next(220, validated(planned("p2", [Trade("ARKK", "BUY", "40.00")]), 2)),
        on_next(230, validated(planned("p3", MIXED), 3)),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(check_risk(limits, Switch(), FixedClock())))

    assert timeline(results.messages) == [
        (210, ("Failed", "SYMBOL_DENIED", 0)),
        (220, ("Failed", "SYMBOL_NOT_ALLOWED", 0)),
        (230, ("plan", "p3", 0)),
        (240, "C"),
    ]
    assert [m.value.value.payload for m in results.messages[:2]] == [
        denied("SYMBOL_DENIED", "symbols on the deny list: VTI"),
        denied("SYMBOL_NOT_ALLOWED", "symbols not on the allow list: ARKK"),
    ]


def test_check_risk_operator_plan_total_over_limit_fails() -> None:
    scheduler = TestScheduler()
    limits = RiskLimits(max_order_notional=None, max_plan_notional=Decimal(2000))
    source = scheduler.create_hot_observable(
        on_next(210, validated(planned("p1", MIXED), 1)),
        on_next(220, validated(planned("p2", SELLS_ONLY), 2)),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(check_risk(limits, Switch(), FixedClock())))

    assert timeline(results.messages) == [
        (210, ("Failed", "NOTIONAL_EXCEEDS_MAX_PER_PLAN", 0)),
        (220, ("plan", "p2", 0)),
        (240, "C"),
    ]
    assert results.messages[0].value.value.payload == denied(
        "NOTIONAL_EXCEEDS_MAX_PER_PLAN", "plan notional 2300.00 above max_plan_notional 2000"
    )


def test_evaluate_risk_daily_limit_counts_what_the_account_traded_today() -> None:
    denial = evaluate_risk(plan(MIXED), DAILY_ONLY, KillSwitch.ACTIVE, Decimal("2700.01"))

    assert denial == RiskDenial(
        "DAILY_NOTIONAL_EXCEEDED",
        "account acct-1 traded 2700.01 today; plan notional 2300.00 would exceed "
        "max_daily_notional 5000",
    )


def test_evaluate_risk_daily_limit_reached_exactly_is_allowed() -> None:
    assert evaluate_risk(plan(MIXED), DAILY_ONLY, KillSwitch.ACTIVE, Decimal("2700.00")) is None


class TradedToday:
    """A NotionalLedger with a fixed amount per (account, New York day); records the asks."""

    def __init__(self, amounts: dict[tuple[str, date], Decimal]) -> None:
        self.amounts = amounts
        self.asked: list[tuple[str, date]] = []

    def notional_used(self, account_id: str, day: date) -> Decimal:
        self.asked.append((account_id, day))
        return self.amounts.get((account_id, day), Decimal(0))


def test_check_risk_operator_reads_the_days_notional_of_the_plans_account() -> None:
    scheduler = TestScheduler()
    new_york_day = trading_day(T0)
    traded = TradedToday({("acct-1", new_york_day): Decimal(4000)})
    source = scheduler.create_hot_observable(
        on_next(210, validated(planned("p1", MIXED), 1)),
        on_next(220, validated(planned("p2", MIXED, account_id="acct-2"), 2)),
        on_completed(240),
    )

    results = scheduler.start(
        lambda: source.pipe(check_risk(DAILY_ONLY, Switch(), FixedClock(), traded))
    )

    assert timeline(results.messages) == [
        (210, ("Failed", "DAILY_NOTIONAL_EXCEEDED", 0)),
        (220, ("plan", "p2", 0)),
        (240, "C"),
    ]
    assert traded.asked == [("acct-1", new_york_day), ("acct-2", new_york_day)]


def test_check_risk_operator_decided_or_settled_inputs_skip_the_kill_switch() -> None:
    scheduler = TestScheduler()
    switch = Switch(KillSwitch.HALTED)
    closed = validated(planned("p1", MIXED), 1).with_payload(
        PlanExecution(Scenario.MARKET_CLOSED, (), T0, T0, decided_by="gate_on_market_clock")
    )
    undecodable = decode_record(record(b"not json", 2))
    duplicate = validated(planned("p3", MIXED), 3).with_payload(Skipped("DUPLICATE_PLAN", "seen"))
    source = scheduler.create_hot_observable(
        on_next(210, closed), on_next(220, undecodable), on_next(230, duplicate), on_completed(240)
    )

    results = scheduler.start(lambda: source.pipe(check_risk(RiskLimits(), switch, FixedClock())))

    assert timeline(results.messages) == [
        (210, ("execution", "market_closed", None)),
        (220, ("Failed", "MALFORMED_JSON", None)),
        (230, ("Skipped", "DUPLICATE_PLAN", None)),
        (240, "C"),
    ]
    assert [m.value.value for m in results.messages[:3]] == [closed, undecodable, duplicate]
    assert switch.reads == 0


def test_check_risk_operator_unreadable_kill_switch_fails_as_unexpected_error() -> None:
    def broken_switch() -> KillSwitch:
        raise OSError("kill switch file unreadable")

    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, validated(planned("p1", MIXED), 1)), on_completed(240)
    )

    results = scheduler.start(
        lambda: source.pipe(check_risk(RiskLimits(), broken_switch, FixedClock()))
    )

    assert timeline(results.messages) == [(210, ("Failed", "UNEXPECTED_ERROR", None)), (240, "C")]
    assert results.messages[0].value.value.payload == Failed(
        stage=FailureStep.RISK,
        reason_code="UNEXPECTED_ERROR",
        reason="unexpected error in check_risk: OSError: kill switch file unreadable",
        error_type="OSError",
        step="check_risk",
        dead_letter=False,
        notify=True,
    )
