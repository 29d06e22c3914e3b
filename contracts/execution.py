"""What execution produced: one OrderResult per plan item traded, one ExecutionResult per plan."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from rebalance_stream.contracts.envelope import Contract, NonEmptyStr
from rebalance_stream.contracts.wire import Money, UtcTimestamp


class OrderSide(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class ExecutionStatus(StrEnum):
    SUCCESS = "success"
    PARTIAL_SUCCESS = "partial_success"
    FAILURE = "failure"


class Scenario(StrEnum):
    EXECUTED = "executed"
    NO_TRADES_NEEDED = "no_trades_needed"
    MARKET_CLOSED = "market_closed"


class SkipReason(StrEnum):
    """Why an order was not sent. The first two are dust; the rest make a plan fail."""

    BELOW_MIN_NOTIONAL = "BELOW_MIN_NOTIONAL"
    ROUNDS_TO_ZERO = "ROUNDS_TO_ZERO"
    NO_POSITION = "NO_POSITION"
    INSUFFICIENT_BUYING_POWER = "INSUFFICIENT_BUYING_POWER"
    NO_QUOTE = "NO_QUOTE"


DUST_SKIPS = frozenset({SkipReason.BELOW_MIN_NOTIONAL, SkipReason.ROUNDS_TO_ZERO})


class OrderResult(Contract):
    """One order's terminal state, or why it was skipped."""

    symbol: NonEmptyStr
    side: OrderSide
    client_order_id: NonEmptyStr
    broker_order_id: str | None = None
    order_type: str = "market"
    planned_qty: Money | None = None
    planned_notional: Money | None = None
    filled_qty: Money = Decimal(0)
    filled_avg_price: Money | None = None
    status: str
    success: bool
    skipped: bool = False
    skip_reason: SkipReason | None = None
    error_message: str | None = None
    submitted_at: UtcTimestamp | None = None
    filled_at: UtcTimestamp | None = None
    expected_price: Money | None = None
    slippage_bps: Money | None = None
    attempts: Annotated[int, Field(ge=0)] = 1
    """How many orders were sent for the item: a re-peg or a market order for the rest sends
    another, with the next attempt number in its client_order_id. 0 when none was sent."""

    @property
    def is_dust_skip(self) -> bool:
        return self.skipped and self.skip_reason in DUST_SKIPS

    @property
    def filled_notional(self) -> Decimal:
        if self.filled_avg_price is None:
            return Decimal(0)
        return self.filled_qty * self.filled_avg_price


class ExecutionMetadata(Contract):
    scenario: Scenario = Scenario.EXECUTED
    timings_ms: dict[str, int] = Field(default_factory=dict)


class ExecutionResult(Contract):
    """A plan's execution, classified (SPEC 3.6). ``total_trade_value`` is filled notional."""

    plan_id: NonEmptyStr
    correlation_id: NonEmptyStr
    status: ExecutionStatus
    success: bool
    orders: tuple[OrderResult, ...] = ()
    orders_placed: Annotated[int, Field(ge=0)] = 0
    orders_succeeded: Annotated[int, Field(ge=0)] = 0
    total_trade_value: Money = Decimal(0)
    started_at: UtcTimestamp
    completed_at: UtcTimestamp
    metadata: ExecutionMetadata = Field(default_factory=ExecutionMetadata)
