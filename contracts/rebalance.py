"""The input contract: RebalancePlanned and the plan it carries (SPEC 2)."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, StringConstraints, field_validator, model_validator

from rebalance_stream.contracts.envelope import SCHEMA_VERSION, Contract, EventEnvelope, NonEmptyStr
from rebalance_stream.contracts.wire import Money, UtcTimestamp, WireInt, strip_trailing_zeros

MAX_SYMBOL_LENGTH = 10


def _symbol_length(symbol: str) -> str:
    # Checked after upper-casing, which can lengthen a string ("ß" -> "SS").
    if not 1 <= len(symbol) <= MAX_SYMBOL_LENGTH:
        raise ValueError(f"symbol must have 1 to {MAX_SYMBOL_LENGTH} characters")
    return symbol


Symbol = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_upper=True, min_length=1, max_length=10),
    AfterValidator(_symbol_length),
]
Weight = Annotated[Money, Field(ge=0, le=1)]
NonNegativeMoney = Annotated[Money, Field(ge=0)]


class TradeAction(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"


class ExecutionUrgency(StrEnum):
    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"
    URGENT = "URGENT"


class RebalancePlanItem(Contract):
    """One symbol's trade. ``trade_amount`` is signed dollars: positive buys, negative sells."""

    symbol: Symbol
    current_weight: Weight
    target_weight: Weight
    weight_diff: Money
    target_value: NonNegativeMoney
    current_value: NonNegativeMoney
    trade_amount: Money
    action: TradeAction
    priority: Annotated[WireInt, Field(ge=1, le=5)]

    @model_validator(mode="after")
    def _sign_agrees_with_action(self) -> RebalancePlanItem:
        amount = self.trade_amount
        agrees = {
            TradeAction.BUY: amount > 0,
            TradeAction.SELL: amount < 0,
            TradeAction.HOLD: amount == 0,
        }[self.action]
        if not agrees:
            raise ValueError(
                f"{self.symbol}: action {self.action.value} disagrees with trade_amount {amount}"
            )
        return self

    @property
    def liquidates(self) -> bool:
        """A SELL that closes the whole position: target weight and target value are both 0."""
        return (
            self.action is TradeAction.SELL and self.target_weight == 0 and self.target_value == 0
        )


def _by_value(value: object) -> object:
    if isinstance(value, Decimal):
        return "0" if value == 0 else format(strip_trailing_zeros(value), "f")
    return str(value)


class RebalancePlan(Contract):
    """The plan: at least one item, one per symbol."""

    plan_id: NonEmptyStr
    correlation_id: NonEmptyStr
    causation_id: NonEmptyStr
    timestamp: UtcTimestamp
    schema_version: str = SCHEMA_VERSION
    # Checked in the validator, not with min_length: on a tuple, pydantic would add a second,
    # misleading "at least 1 item" error whenever one item is invalid.
    items: Annotated[tuple[RebalancePlanItem, ...], Field(json_schema_extra={"minItems": 1})]
    total_portfolio_value: NonNegativeMoney
    total_trade_value: Money
    max_drift_tolerance: Annotated[Money, Field(ge=0, le=1)] = Decimal("0.05")
    execution_urgency: ExecutionUrgency = ExecutionUrgency.NORMAL
    estimated_duration_minutes: Annotated[WireInt, Field(ge=1)] | None = None
    metadata: dict[str, Any] | None = None
    strategy_id: str | None = None
    account_id: NonEmptyStr = "default"

    @field_validator("items")
    @classmethod
    def _one_item_per_symbol(
        cls, items: tuple[RebalancePlanItem, ...]
    ) -> tuple[RebalancePlanItem, ...]:
        if not items:
            raise ValueError("a plan has at least one item")
        seen: set[str] = set()
        for item in items:
            if item.symbol in seen:
                raise ValueError(f"symbol {item.symbol} appears more than once")
            seen.add(item.symbol)
        return items

    def items_fingerprint(self) -> str:
        """A sha256 of the items by value: equal items, equal fingerprint, however the decimals
        were written ("1500.00", "1500" and the JSON number 1500 are one amount)."""
        names = tuple(RebalancePlanItem.model_fields)  # flat: each field is a scalar
        document = [{name: _by_value(getattr(item, name)) for name in names} for item in self.items]
        encoded = json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")
        return hashlib.sha256(encoded).hexdigest()

    @property
    def has_trades(self) -> bool:
        return any(item.action is not TradeAction.HOLD for item in self.items)


class AllocationComparison(Contract):
    """Target, current and delta values per symbol."""

    target_values: dict[str, Money] = Field(default_factory=dict)
    current_values: dict[str, Money] = Field(default_factory=dict)
    deltas: dict[str, Money] = Field(default_factory=dict)


class RebalancePlanned(EventEnvelope):
    """The input event: a plan from the upstream portfolio service."""

    EVENT_TYPE: ClassVar[str] = "RebalancePlanned"

    event_type: NonEmptyStr = "RebalancePlanned"
    rebalance_plan: RebalancePlan
    allocation_comparison: AllocationComparison = Field(default_factory=AllocationComparison)
    trades_required: bool
