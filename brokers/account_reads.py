"""Where execution reads an account's positions and buying power.

``BrokerAccountReads`` asks the broker every time (one request each, per plan).
``StreamAccountBook`` (``account_book``) keeps both from Alpaca's trade-updates stream
between reads. Execution declares what its buys will spend while they run (``spending``)
and how much each order filled when it ended (``orders_ended``), so that a book can count
them before the stream and the venue's answers show them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from decimal import Decimal
from typing import Protocol

from rebalance_stream.brokers.protocol import Broker


class AccountReads(Protocol):
    """An account's positions and buying power, as execution sizes orders from them."""

    def positions(self) -> dict[str, Decimal]:
        """Every position held: its quantity by upper-case symbol."""
        ...

    def buying_power(self, needed: Decimal) -> Decimal:
        """What buys may spend now, never more than the venue would allow as far as known.
        ``needed`` is what the caller's buys cost: a reader may skip asking the venue when
        it knows at least that much is there."""
        ...

    def spending(
        self, cost: Decimal, client_order_ids: Sequence[str]
    ) -> AbstractContextManager[None]:
        """Held while the buys with these client_order_ids run; ``cost`` is what they were
        sized to spend."""
        ...

    def orders_ended(self, filled: Mapping[str, Decimal]) -> None:
        """These orders ended, having filled these quantities (by client_order_id)."""
        ...

    def stale(self, reason: str) -> None:
        """The venue refused an order sized from these reads: read it again next time."""
        ...


class BrokerAccountReads:
    """AccountReads that asks the broker each time: GET positions, GET account."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def __repr__(self) -> str:
        return f"BrokerAccountReads({self._broker!r})"

    def positions(self) -> dict[str, Decimal]:
        return self._broker.get_positions()

    def buying_power(self, needed: Decimal) -> Decimal:
        """The broker's buying power, read now (``needed`` is not used)."""
        return self._broker.get_account().buying_power

    def spending(
        self, cost: Decimal, client_order_ids: Sequence[str]
    ) -> AbstractContextManager[None]:
        """Nothing to keep: the next read asks the venue."""
        return nullcontext()

    def orders_ended(self, filled: Mapping[str, Decimal]) -> None:
        """Nothing to keep: the next read asks the venue."""

    def stale(self, reason: str) -> None:
        """Nothing to keep: the next read asks the venue."""
