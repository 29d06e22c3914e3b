"""Values of the fake Alpaca venue: fill behaviours, quotes, the account, orders, errors.

Quantities and prices are Decimal. Symbols are upper case. ``ApiError`` is an Alpaca error
answer as a value: HTTP status, and the body ``{"code": ..., "message": ..., **extra}``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit"]
StatusFilter = Literal["open", "closed", "all"]

OPEN_STATUSES = frozenset({"new", "accepted", "partially_filled"})
ASSET_NAMESPACE = uuid.UUID("0b8f4f4e-9d61-4d1c-a7f4-5a0d7c0e2b11")
DEFAULT_REJECT_REASON = "rejected by the fake alpaca fill behaviour"


@dataclass(frozen=True, slots=True)
class Immediate:
    """Fill the whole order at once."""


@dataclass(frozen=True, slots=True)
class Partial:
    """Fill ``fraction`` of the order at once and cancel the rest."""

    fraction: Decimal

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")


@dataclass(frozen=True, slots=True)
class Reject:
    """Reject the order: as an order with status rejected, or with ``sync`` as a 403."""

    reason: str = DEFAULT_REJECT_REASON
    sync: bool = False


@dataclass(frozen=True, slots=True)
class Delayed:
    """Leave the order open for ``delay_ms``, then fill it whole if it is marketable."""

    delay_ms: int


FillBehaviour = Immediate | Partial | Reject | Delayed


@dataclass(frozen=True, slots=True)
class Quote:
    bid: Decimal
    ask: Decimal

    def __post_init__(self) -> None:
        if not 0 < self.bid <= self.ask:
            raise ValueError("a quote needs 0 < bid <= ask")

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


@dataclass(frozen=True, slots=True)
class ApiError:
    """An Alpaca error answer: HTTP status and the JSON body ``{code, message, **extra}``."""

    status: int
    code: int
    message: str
    extra: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, object]:
        return {**self.extra, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class VenueAccount:
    """The venue's starting state; a position needs a quote for its symbol."""

    cash: Decimal = Decimal(100_000)
    positions: Mapping[str, Decimal] = field(default_factory=dict)
    quotes: Mapping[str, Quote] = field(default_factory=dict)
    fractionable: frozenset[str] = frozenset()
    market_open: bool = True
    fills: Mapping[str, FillBehaviour] = field(default_factory=dict)
    default_fill: FillBehaviour = Immediate()


@dataclass(frozen=True, slots=True)
class OrderTicket:
    """A validated order submission; exactly one of qty or notional."""

    symbol: str
    side: Side
    type: OrderType
    time_in_force: str
    raw_body: str
    qty: Decimal | None = None
    notional: Decimal | None = None
    limit_price: Decimal | None = None
    client_order_id: str | None = None
    extended_hours: bool = False
    position_intent: str | None = None


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the venue holds it, with the raw request body that created it."""

    id: str
    client_order_id: str
    symbol: str
    asset_id: str
    side: Side
    type: OrderType
    time_in_force: str
    qty: Decimal | None
    notional: Decimal | None
    limit_price: Decimal | None
    status: str
    submitted_at: datetime
    updated_at: datetime
    raw_body: str
    extended_hours: bool = False
    position_intent: str | None = None
    filled_qty: Decimal = Decimal(0)
    filled_avg_price: Decimal | None = None
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    failed_at: datetime | None = None
    reject_reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class Holding:
    """A long position; ``price`` is the quote's mid."""

    symbol: str
    qty: Decimal
    cost_basis: Decimal
    price: Decimal
    qty_available: Decimal


@dataclass(frozen=True, slots=True)
class AccountValues:
    cash: Decimal
    buying_power: Decimal
    long_market_value: Decimal


@dataclass(frozen=True, slots=True)
class OrderQuery:
    """Alpaca's list filter: after and until are exclusive bounds on submitted_at."""

    status: StatusFilter = "open"
    limit: int = 50
    after: datetime | None = None
    until: datetime | None = None
    direction: Literal["asc", "desc"] = "desc"
    symbols: frozenset[str] = frozenset()
    side: Side | None = None


def asset_id_for(symbol: str) -> str:
    """The venue's fixed asset id for a symbol."""
    return str(uuid.uuid5(ASSET_NAMESPACE, symbol.upper()))
