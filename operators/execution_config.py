"""How a plan's orders are sent and followed: the execution strategy and its limits."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class ExecutionStrategy(StrEnum):
    """``market``: one market order per item. ``limit_then_market``: a limit inside the
    spread, re-pegged toward the far side at most ``max_repegs`` times, then a market order
    for what is left."""

    MARKET = "market"
    LIMIT_THEN_MARKET = "limit_then_market"


class BuyingPowerShortfall(StrEnum):
    """What to do with buys that the buying power does not cover after the sells: ``skip``
    them in priority order, or ``scale`` every buy down by the same factor."""

    SKIP = "skip"
    SCALE = "scale"


@dataclass(frozen=True, slots=True)
class PriceSanity:
    """Limits on a fresh quote, checked for every traded symbol before any order is sent.
    None turns a check off."""

    max_spread_bps: Decimal | None = Decimal(200)
    """The quote's spread, relative to its mid."""
    max_price_deviation_bps: Decimal | None = Decimal(500)
    """How far the sizing price (the latest trade) may be from the quote's mid."""


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    """How orders are sent and followed."""

    max_concurrent_orders: int = 4
    min_order_notional: Decimal = Decimal(1)
    order_deadline_s: float = 30.0
    plan_deadline_s: float = 300.0
    """No order of a plan is sent after this long, and following an order stops with it."""
    cancel_grace_s: float = 5.0
    poll_interval_s: float = 0.1
    strategy: ExecutionStrategy = ExecutionStrategy.MARKET
    max_repegs: int = 2
    repeg_after_s: float = 2.0
    """How long each limit order rests before it is canceled and re-pegged."""
    buying_power_wait_s: float = 5.0
    """How long the buys wait for the sells' proceeds to show in buying power."""
    buying_power_shortfall: BuyingPowerShortfall = BuyingPowerShortfall.SKIP
    price_sanity: PriceSanity = PriceSanity()
