"""The Broker protocol that execution talks to, and the venue-neutral types it speaks.

Each adapter (paper, Alpaca) maps its venue's statuses onto ``BrokerOrderStatus`` and its
errors onto ``BrokerError`` subclasses. Quantities and prices are Decimal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable

from rebalance_stream.contracts.execution import OrderSide


class BrokerOrderStatus(StrEnum):
    """Our order statuses; venues have more, and adapters map them onto these."""

    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


TERMINAL_STATUSES = frozenset(
    {
        BrokerOrderStatus.FILLED,
        BrokerOrderStatus.CANCELED,
        BrokerOrderStatus.REJECTED,
        BrokerOrderStatus.EXPIRED,
    }
)


MARKET_ORDER = "market"
LIMIT_ORDER = "limit"


@dataclass(frozen=True, slots=True)
class Quote:
    """A symbol's best bid and ask; ``timestamp`` is when the venue quoted it, if known."""

    bid: Decimal
    ask: Decimal
    timestamp: datetime | None = None

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    @property
    def spread(self) -> Decimal:
        return self.ask - self.bid


@dataclass(frozen=True, slots=True)
class MarketData:
    """Latest prices and quotes of the same symbols, read together, keyed by upper-case
    symbol: ``prices`` as ``get_latest_prices`` gives them, ``quotes`` as ``get_quotes``."""

    prices: dict[str, Decimal]
    quotes: dict[str, Quote]


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A day order for exactly one of ``qty`` or ``notional``: a market order, or a limit
    order when ``limit_price`` is set. A limit order needs ``qty`` and a positive limit price;
    anything else raises ValueError here."""

    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal | None = None
    notional: Decimal | None = None
    limit_price: Decimal | None = None

    def __post_init__(self) -> None:
        if (self.qty is None) == (self.notional is None):
            raise ValueError("an order has exactly one of qty or notional")
        if self.limit_price is None:
            return
        if self.qty is None:
            raise ValueError("a limit order needs qty, not notional")
        if not (self.limit_price.is_finite() and self.limit_price > 0):
            raise ValueError(f"limit_price must be positive, got {self.limit_price}")

    @property
    def order_type(self) -> str:
        """``"limit"`` when a limit price is set, else ``"market"``."""
        return MARKET_ORDER if self.limit_price is None else LIMIT_ORDER


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as the broker sees it now."""

    broker_order_id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    status: BrokerOrderStatus
    qty: Decimal | None
    notional: Decimal | None
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    submitted_at: datetime
    filled_at: datetime | None = None
    reject_reason: str | None = None
    order_type: str = MARKET_ORDER
    """``"market"`` or ``"limit"`` (a venue's other types pass through as it names them)."""
    limit_price: Decimal | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class MarketClock:
    """Whether the market is open at ``timestamp``; ``next_change`` is the next open (when
    closed) or close (when open), when the venue says."""

    is_open: bool
    timestamp: datetime
    next_change: datetime | None = None


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    cash: Decimal
    buying_power: Decimal


@dataclass(frozen=True, slots=True)
class AssetInfo:
    symbol: str
    tradable: bool
    fractionable: bool


class BrokerError(Exception):
    """Base of every broker failure."""


class BrokerUnavailable(BrokerError):
    """The broker could not be reached or answered with a server error; the outcome is unknown."""


class OrderRejected(BrokerError):
    """The broker definitively refused the order; nothing was placed."""


class DuplicateClientOrderId(BrokerError):
    """An order with this client_order_id exists already (Alpaca answers 422)."""


class UnknownAsset(BrokerError):
    """The broker does not know the symbol."""


class OrderNotFound(BrokerError):
    """No order with this id."""


class Broker(Protocol):
    """What execution needs from a venue. Calls block; callers run them off the event loop."""

    def get_clock(self) -> MarketClock: ...

    def get_account(self) -> AccountSnapshot: ...

    def get_position_qty(self, symbol: str) -> Decimal:
        """The quantity held, 0 when there is no position."""
        ...

    def get_positions(self) -> dict[str, Decimal]:
        """Every position held: its quantity by upper-case symbol, in one request."""
        ...

    def get_asset(self, symbol: str) -> AssetInfo:
        """Raises UnknownAsset for a symbol the venue does not trade."""
        ...

    def get_latest_price(self, symbol: str) -> Decimal | None:
        """The latest trade or mid price, or None when no quote is known."""
        ...

    def get_latest_prices(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """``get_latest_price`` of each symbol that has a price, keyed by upper-case symbol.
        One request at a venue that batches (two when some symbol has no trade)."""
        ...

    def get_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """The latest quote of each symbol that has one, keyed by upper-case symbol; symbols
        with no quote are absent. One request at a venue that batches."""
        ...

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Place a market or limit day order. A limit order that is not marketable rests
        open (status new) until it fills or is canceled.

        Raises DuplicateClientOrderId, OrderRejected or BrokerUnavailable."""
        ...

    def get_order(self, broker_order_id: str) -> BrokerOrder:
        """Raises OrderNotFound."""
        ...

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None: ...

    def cancel_order(self, broker_order_id: str) -> None:
        """Asks for a cancel; the order may still fill. Read it again for its final state."""
        ...

    def list_orders(self, client_order_id_prefix: str = "") -> list[BrokerOrder]:
        """Every order whose client_order_id starts with the prefix, oldest first."""
        ...


@runtime_checkable
class MarketSnapshots(Protocol):
    """A venue that reads a plan's prices and quotes in one request (Alpaca's snapshots);
    the executor uses it when the broker has it, and two reads otherwise."""

    def get_market_data(self, symbols: Sequence[str]) -> MarketData:
        """``get_latest_prices`` and ``get_quotes`` of ``symbols``, from one read."""
        ...
