"""check_risk: pre-trade limits and the kill switch (SPEC 3.10); a breach places no orders.

The daily limit counts what the ledger says the account traded on this America/New_York
trading day (filled, plus intents still open), so it holds across restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import structlog
from reactivex import operators as ops

from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlan, RebalancePlanned, TradeAction
from rebalance_stream.ledger.protocol import NotionalLedger, trading_day
from rebalance_stream.operators.flow import Clock, Envelope, Failed, Op, elapsed_ms
from rebalance_stream.operators.step import guarded

log = structlog.get_logger(__name__)

STEP = "check_risk"
CENT = Decimal("0.01")


class KillSwitch(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """None means no limit. ``allowed_symbols`` empty means every symbol not denied."""

    max_order_notional: Decimal | None = Decimal(100_000)
    max_plan_notional: Decimal | None = Decimal(1_000_000)
    max_daily_notional: Decimal | None = Decimal(5_000_000)
    allowed_symbols: frozenset[str] = field(default_factory=frozenset)
    denied_symbols: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class RiskDenial:
    reason_code: str
    reason: str


def _kill_switch_denial(plan: RebalancePlan, state: KillSwitch) -> RiskDenial | None:
    if state is KillSwitch.HALTED:
        return RiskDenial("KILL_SWITCH_HALTED", "kill switch is halted: no orders are placed")
    buys = [item.symbol for item in plan.items if item.action is TradeAction.BUY]
    if state is KillSwitch.REDUCING and buys:
        reason = f"kill switch is reducing (sells only); plan buys {', '.join(buys)}"
        return RiskDenial("KILL_SWITCH_REDUCING", reason)
    return None


def _symbol_denial(plan: RebalancePlan, limits: RiskLimits) -> RiskDenial | None:
    traded = [item.symbol for item in plan.items if item.action is not TradeAction.HOLD]
    denied = [symbol for symbol in traded if symbol in limits.denied_symbols]
    if denied:
        return RiskDenial("SYMBOL_DENIED", f"symbols on the deny list: {', '.join(denied)}")
    if limits.allowed_symbols:
        outside = [symbol for symbol in traded if symbol not in limits.allowed_symbols]
        if outside:
            reason = f"symbols not on the allow list: {', '.join(outside)}"
            return RiskDenial("SYMBOL_NOT_ALLOWED", reason)
    return None


def _notional_denial(plan: RebalancePlan, limits: RiskLimits) -> RiskDenial | None:
    notionals = {item.symbol: abs(item.trade_amount) for item in plan.items}
    if limits.max_order_notional is not None:
        over = [s for s, n in notionals.items() if n > limits.max_order_notional]
        if over:
            reason = (
                f"order notional above max_order_notional {limits.max_order_notional}: "
                + ", ".join(f"{s} {notionals[s]}" for s in over)
            )
            return RiskDenial("NOTIONAL_EXCEEDS_MAX_PER_ORDER", reason)
    total = sum(notionals.values(), Decimal(0))
    if limits.max_plan_notional is not None and total > limits.max_plan_notional:
        reason = f"plan notional {total} above max_plan_notional {limits.max_plan_notional}"
        return RiskDenial("NOTIONAL_EXCEEDS_MAX_PER_PLAN", reason)
    return None


def plan_notional(plan: RebalancePlan) -> Decimal:
    return sum((abs(item.trade_amount) for item in plan.items), Decimal(0))


def _daily_denial(
    plan: RebalancePlan, limits: RiskLimits, used_today: Decimal
) -> RiskDenial | None:
    limit = limits.max_daily_notional
    total = plan_notional(plan)
    if limit is None or used_today + total <= limit:
        return None
    used = used_today.quantize(CENT)
    reason = (
        f"account {plan.account_id} traded {used} today; plan notional {total} would "
        f"exceed max_daily_notional {limit}"
    )
    return RiskDenial("DAILY_NOTIONAL_EXCEEDED", reason)


def evaluate_risk(
    plan: RebalancePlan,
    limits: RiskLimits,
    state: KillSwitch,
    used_today: Decimal = Decimal(0),
) -> RiskDenial | None:
    """The first breached rule, or None: kill switch, symbol lists, notional limits, the day."""
    return (
        _kill_switch_denial(plan, state)
        or _symbol_denial(plan, limits)
        or _notional_denial(plan, limits)
        or _daily_denial(plan, limits, used_today)
    )


class NothingTradedYet:
    """A NotionalLedger for pipelines without a ledger: every day starts at 0."""

    def notional_used(self, account_id: str, day: object) -> Decimal:
        return Decimal(0)


def check_risk(
    limits: RiskLimits,
    kill_switch: Callable[[], KillSwitch],
    clock: Clock,
    traded: NotionalLedger | None = None,
) -> Op[Envelope[Any], Envelope[Any]]:
    """Fail plans that breach a limit; read the kill switch and the day's notional per plan.

    -p1-p2-|   ->   -p1-F-|      (p2 breaches a limit; F is Failed(risk) with a reason_code)
    """
    ledger: NotionalLedger = traded or NothingTradedYet()

    def check(envelope: Envelope[Any], event: RebalancePlanned) -> Envelope[Any]:
        started = clock()
        plan = event.rebalance_plan
        used = ledger.notional_used(plan.account_id, trading_day(started))
        denial = evaluate_risk(plan, limits, kill_switch(), used)
        timed = envelope.timed("risk", elapsed_ms(started, clock()))
        if denial is None:
            return timed
        log.warning("risk_denied", reason_code=denial.reason_code, **envelope.log_fields())
        return timed.failed(
            Failed(FailureStep.RISK, denial.reason_code, denial.reason, "RiskDenied", step=STEP)
        )

    return ops.map(guarded(FailureStep.RISK, STEP, RebalancePlanned, check))
