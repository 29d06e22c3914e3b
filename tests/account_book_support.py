"""A fake broker and a manual clock for unit tests of the account book."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import cast

from rebalance_stream.brokers.account_book import StreamAccountBook, StreamFill
from rebalance_stream.brokers.protocol import AccountSnapshot, Broker
from rebalance_stream.contracts.execution import OrderSide

MAX_AGE_S = 60.0


class ManualClock:
    """A monotonic clock that moves only when the test moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeBroker:
    """Answers positions and account reads from fields the test sets, and counts the reads."""

    def __init__(self, held: dict[str, Decimal], buying_power: Decimal) -> None:
        self.held = held
        self.buying_power = buying_power
        self.positions_calls = 0
        self.account_calls = 0
        self.during_positions: Callable[[], None] | None = None
        self.during_account: Callable[[], None] | None = None

    def get_positions(self) -> dict[str, Decimal]:
        self.positions_calls += 1
        if self.during_positions is not None:
            self.during_positions()
        return dict(self.held)

    def get_account(self) -> AccountSnapshot:
        self.account_calls += 1
        if self.during_account is not None:
            self.during_account()
        return AccountSnapshot(cash=self.buying_power, buying_power=self.buying_power)


def book_of(
    broker: FakeBroker, clock: ManualClock, max_age_s: float = MAX_AGE_S, fill_wait_s: float = 0
) -> StreamAccountBook:
    return StreamAccountBook(
        cast(Broker, broker), max_age_s, fill_wait_s=fill_wait_s, monotonic=clock
    )


def fill(
    symbol: str,
    position_qty: Decimal | None,
    *,
    client_order_id: str = "other-1",
    side: OrderSide = OrderSide.BUY,
    qty: Decimal = Decimal(1),
    price: Decimal = Decimal(100),
) -> StreamFill:
    """A fill that leaves the order with ``qty`` filled at an average of ``price``."""
    return StreamFill(client_order_id, symbol, side, qty, price, position_qty)


def held() -> dict[str, Decimal]:
    return {"SPY": Decimal(10), "QQQ": Decimal(5)}


def connected_book(
    max_age_s: float = MAX_AGE_S,
) -> tuple[StreamAccountBook, FakeBroker, ManualClock]:
    broker = FakeBroker(held(), Decimal(1000))
    clock = ManualClock()
    book = book_of(broker, clock, max_age_s)
    book.connected(1)
    return book, broker, clock
