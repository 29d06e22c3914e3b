"""Assemble the operators into the whole job: input records in, one Disposition per record out."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import reactivex
from reactivex.abc import SchedulerBase

from rebalance_stream.brokers.account_reads import AccountReads
from rebalance_stream.brokers.order_watch import OrderWatch
from rebalance_stream.brokers.protocol import Broker
from rebalance_stream.ledger.protocol import Ledger, PublishedInputs
from rebalance_stream.operators.classify import classify_outcome
from rebalance_stream.operators.decode import DEFAULT_MAX_INPUT_BYTES, decode
from rebalance_stream.operators.dedupe import dedupe
from rebalance_stream.operators.execute import execute_orders
from rebalance_stream.operators.execution_config import PriceSanity
from rebalance_stream.operators.flow import (
    Clock,
    Disposition,
    Envelope,
    InputRecord,
    Op,
    SourcePosition,
)
from rebalance_stream.operators.market_gate import MarketClockFailure, gate_on_market_clock
from rebalance_stream.operators.no_trade import skip_when_no_trades
from rebalance_stream.operators.order_execution import (
    ExecutionConfig,
    OrderRecording,
    no_checkpoint,
)
from rebalance_stream.operators.order_pool import OrderPool
from rebalance_stream.operators.output_events import to_output_events
from rebalance_stream.operators.per_account import serialize_by_account
from rebalance_stream.operators.record_outcomes import record_outcomes
from rebalance_stream.operators.risk import KillSwitch, RiskLimits, check_risk
from rebalance_stream.operators.shutdown import hold_back_unstarted
from rebalance_stream.operators.skip_published import skip_published_inputs
from rebalance_stream.operators.staleness import reject_stale
from rebalance_stream.operators.validate import validate
from rebalance_stream.streams.settings import Settings


def utc_now() -> datetime:
    """The wall clock, UTC; the only clock that production code passes in."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """The settings that shape the pipeline; everything else is a dependency."""

    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    max_plan_age: timedelta = timedelta(hours=1)
    market_clock_failure: MarketClockFailure = MarketClockFailure.FAIL
    risk_limits: RiskLimits = field(default_factory=RiskLimits)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    treat_partial_execution_as_failure: bool = True
    outcome_batch_s: float = 0.0
    skip_published_inputs: bool = True
    """Settle published inputs before decoding them (with a ledger that knows them). False
    where the source has already settled them: dedupe decides the rest the same way."""

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        return cls(
            max_input_bytes=settings.max_input_bytes,
            max_plan_age=timedelta(seconds=settings.max_plan_age_s),
            market_clock_failure=settings.market_clock_failure,
            risk_limits=RiskLimits(
                max_order_notional=settings.max_order_notional,
                max_plan_notional=settings.max_plan_notional,
                max_daily_notional=settings.max_daily_notional,
                allowed_symbols=settings.allowed_symbols,
                denied_symbols=settings.denied_symbols,
            ),
            execution=ExecutionConfig(
                max_concurrent_orders=settings.max_concurrent_orders,
                min_order_notional=Decimal(settings.min_order_notional),
                order_deadline_s=settings.order_deadline_s,
                plan_deadline_s=settings.plan_deadline_s,
                poll_interval_s=settings.order_poll_interval_s,
                cancel_grace_s=settings.cancel_grace_s,
                strategy=settings.execution_strategy,
                max_repegs=settings.max_repegs,
                repeg_after_s=settings.repeg_after_s,
                buying_power_wait_s=settings.buying_power_wait_s,
                buying_power_shortfall=settings.buying_power_shortfall,
                price_sanity=PriceSanity(
                    max_spread_bps=settings.max_spread_bps,
                    max_price_deviation_bps=settings.max_price_deviation_bps,
                ),
            ),
            treat_partial_execution_as_failure=settings.treat_partial_execution_as_failure,
            outcome_batch_s=settings.outcome_batch_ms / 1000,
        )


@dataclass(frozen=True, slots=True)
class PipelineDependencies:
    """The side effects the pipeline talks to, injected.

    ``checkpoint`` is called at the named points of order execution; only crash tests set it.
    ``held_back`` says a plan from that position must not start now (a stop, a revocation).
    ``order_watch`` follows placed orders; None polls the broker over REST.
    ``order_pool`` runs the orders' calls; None gives the pipeline a pool of its own, which
    nothing shuts down (its idle threads end with the process).
    ``account`` gives the positions and buying power that orders are sized from; None reads
    them from the broker for each plan.
    """

    broker: Broker
    ledger: Ledger
    kill_switch: Callable[[], KillSwitch] = lambda: KillSwitch.ACTIVE
    clock: Clock = utc_now
    sleep: Callable[[float], None] = time.sleep
    scheduler: SchedulerBase | None = None
    checkpoint: Callable[[str], None] = no_checkpoint
    held_back: Callable[[SourcePosition], bool] = lambda _position: False
    order_watch: OrderWatch | None = None
    order_pool: OrderPool | None = None
    account: AccountReads | None = None


def process_rebalance_plans(
    config: PipelineConfig, deps: PipelineDependencies
) -> Op[InputRecord, Disposition]:
    """The whole job of SPEC 1: every input record becomes exactly one Disposition.

    With a ledger that knows published inputs, those are settled first, undecoded. Decode,
    validate, dedupe, staleness and the no-trade check run in arrival order; the market gate,
    risk and execution run one plan per account at a time, on ``deps.scheduler``. Each plan's
    outputs are on record in the ledger before its Disposition is emitted.
    """
    clock = deps.clock
    ledger = deps.ledger
    recording = OrderRecording(ledger, deps.checkpoint)
    per_plan: Op[Envelope[Any], Envelope[Any]] = reactivex.compose(
        hold_back_unstarted(deps.held_back),
        gate_on_market_clock(deps.broker, config.market_clock_failure, clock),
        check_risk(config.risk_limits, deps.kill_switch, clock, ledger),
        execute_orders(
            deps.broker,
            config.execution,
            clock,
            deps.sleep,
            recording,
            watch=deps.order_watch,
            kill_switch=deps.kill_switch,
            pool=deps.order_pool,
            account=deps.account,
        ),
    )
    admit: Op[InputRecord, Envelope[Any]] = reactivex.compose(
        decode(config.max_input_bytes),
        validate(),
        dedupe(ledger),
        reject_stale(config.max_plan_age, clock),
        skip_when_no_trades(clock),
    )
    decide: Op[Envelope[Any], Disposition] = reactivex.compose(
        serialize_by_account(per_plan, deps.scheduler),
        classify_outcome(config.treat_partial_execution_as_failure),
        to_output_events(clock),
        record_outcomes(ledger, config.outcome_batch_s, scheduler=deps.scheduler),
    )
    every_input: Op[InputRecord, Disposition] = reactivex.compose(admit, decide)
    if config.skip_published_inputs and isinstance(ledger, PublishedInputs):
        return skip_published_inputs(ledger, clock, every_input)
    return every_input
