"""Positions and buying power kept from Alpaca's trade-updates stream between REST reads.

Every fill on the stream carries the position it leaves (``position_qty``, the venue's own
figure), for every order of the account, ours or not: positions are set from fills. Buying
power is kept as a lower bound: the last read, less what buys have spent since (each fill
of a buy not ours, and the sized cost of ours while they run and until a read has seen them
end). Sells are never credited: buys that a plan's own sells pay for wait on the venue's
answer, as without the book.

A read is trusted only while all of these hold; otherwise the venue is read again:
- it is younger than ``max_age_s`` (0: never trusted, every call reads);
- the stream has stayed connected since, on the same connection (a reconnect may have lost
  fills: Alpaca does not replay them);
- no fill was learned over REST since, and the venue refused no order sized from it
  (``stale``);
- every fill of our orders that ended since (``orders_ended``: an order's end may be known
  from the submit's answer before its fills come on the stream) has come on the stream,
  waiting at most ``fill_wait_s`` for it;
- for positions, no fill arrived while the read was out (a buy fill not ours that arrives
  then is counted against buying power even if the read shows it).

What the stream cannot show (shares moved without an order, margin moving with prices,
another client's open buys before they fill) is therefore at most ``max_age_s`` old, and the
venue refuses an order it would not allow.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

import structlog

from rebalance_stream.brokers.protocol import Broker
from rebalance_stream.contracts.client_order_id import without_attempt
from rebalance_stream.contracts.execution import OrderSide

__all__ = ["BookStats", "StreamAccountBook", "StreamFill"]

log = structlog.get_logger(__name__)

ORDERS_HEARD_KEPT: Final = 10_000
_NOTHING_FILLED: Final = (Decimal(0), Decimal(0))


@dataclass(frozen=True, slots=True)
class StreamFill:
    """A fill as the stream reports it: the order's cumulative ``filled_qty`` and its average
    price after it (whatever one execution's own figures mean at the venue, these add up),
    and ``position_qty``, the symbol's position after it, when the venue says."""

    client_order_id: str
    symbol: str
    side: OrderSide
    filled_qty: Decimal
    filled_avg_price: Decimal
    position_qty: Decimal | None


@dataclass(slots=True)
class BookStats:
    """How often the book answered, and how often it read the venue instead."""

    positions_reads: int = 0
    positions_kept: int = 0
    buying_power_reads: int = 0
    buying_power_kept: int = 0


@dataclass(frozen=True, slots=True)
class _Read:
    started: float
    """When the request was sent (monotonic seconds)."""
    connection: int | None
    """The stream's connection then; None: not connected."""


@dataclass(slots=True)
class _Positions:
    read: _Read
    held: dict[str, Decimal]
    clean: bool
    """No fill arrived while the read was out."""


@dataclass(frozen=True, slots=True)
class _BuyingPower:
    read: _Read
    value: Decimal
    others_spent_before: Decimal
    """``_State.others_spent`` when the read was sent."""


@dataclass(slots=True)
class _Spending:
    cost: Decimal
    stems: frozenset[str]
    ended: float | None = None

    def counts_after(self, started: float) -> bool:
        """Whether a read started then may not show it yet: still running, or ended after."""
        return self.ended is None or self.ended >= started


@dataclass(slots=True)
class _State:
    connection: int | None = None
    fills_heard: int = 0
    others_spent: Decimal = Decimal(0)
    """What every buy fill not ours has cost, since the book began."""
    positions: _Positions | None = None
    buying_power: _BuyingPower | None = None
    spending: list[_Spending] = field(default_factory=list)
    filled_by_order: OrderedDict[str, tuple[Decimal, Decimal]] = field(default_factory=OrderedDict)
    """(filled qty, what it cost) the stream has said, by client_order_id (the latest
    orders)."""
    awaited: dict[str, tuple[Decimal, float]] = field(default_factory=dict)
    """Our orders that ended with more filled than the stream has said: (filled qty, when
    the end was known)."""


class StreamAccountBook:
    """AccountReads kept from the trade-updates stream; thread-safe.

    The stream calls ``connected``, ``disconnected``, ``filled`` and ``stale``; execution
    calls ``positions``, ``buying_power``, ``spending``, ``orders_ended`` and ``stale``. The
    broker serves the reads.
    """

    def __init__(
        self,
        broker: Broker,
        max_age_s: float,
        *,
        fill_wait_s: float = 0.5,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age_s < 0 or fill_wait_s < 0:
            raise ValueError(f"max_age_s and fill_wait_s must be >= 0: {max_age_s}, {fill_wait_s}")
        self._broker = broker
        self._max_age_s = max_age_s
        self._fill_wait_s = fill_wait_s
        self._monotonic = monotonic
        self._lock = threading.Condition()
        self._state = _State()
        self.stats = BookStats()

    def __repr__(self) -> str:
        return f"StreamAccountBook(max_age_s={self._max_age_s})"

    # -- from the stream ---------------------------------------------------------------------

    def connected(self, connection: int) -> None:
        """The stream is up on its ``connection``-th connection; earlier reads stay untrusted."""
        with self._lock:
            self._state.connection = connection

    def disconnected(self) -> None:
        """The stream is down: fills may be missed until the next read after a reconnect."""
        with self._lock:
            self._state.connection = None

    def stale(self, reason: str) -> None:
        """A fill was learned outside the stream, or the venue refused an order sized from
        the book: read the venue again before trusting."""
        with self._lock:
            state = self._state
            if state.positions is None and state.buying_power is None:
                return
            state.positions = state.buying_power = None
        log.info("account_book_stale", reason=reason)

    def filled(self, fill: StreamFill) -> None:
        """Take a fill: the position it leaves (unless it came after a later fill of its
        order), and what a buy not ours spent."""
        with self._lock:
            state = self._state
            state.fills_heard += 1
            spent, latest = self._hear(fill)
            positions = state.positions
            if positions is not None and latest:
                if fill.position_qty is None:
                    state.positions = None
                elif fill.position_qty == 0:
                    positions.held.pop(fill.symbol, None)
                else:
                    positions.held[fill.symbol] = fill.position_qty
            if fill.side is OrderSide.BUY and not self._ours(fill):
                state.others_spent += spent

    # -- AccountReads ------------------------------------------------------------------------

    def positions(self) -> dict[str, Decimal]:
        """The positions kept, or read from the venue when they cannot be trusted."""
        with self._lock:
            kept = self._state.positions
            if kept is not None and kept.clean and self._trusts(kept.read):
                self.stats.positions_kept += 1
                return dict(kept.held)
            read = self._new_read()
            heard = self._state.fills_heard
            self.stats.positions_reads += 1
        held = self._broker.get_positions()
        with self._lock:
            clean = self._state.fills_heard == heard
            self._state.positions = _Positions(read, dict(held), clean)
            self._forget_awaited()
        return held

    def buying_power(self, needed: Decimal) -> Decimal:
        """The kept lower bound when it covers ``needed``; otherwise the venue's buying power,
        read now, less what our running buys were sized to spend."""
        with self._lock:
            kept = self._state.buying_power
            if kept is not None and self._trusts(kept.read):
                available = self._available(kept)
                if available >= needed:
                    self.stats.buying_power_kept += 1
                    return available
            read = self._new_read()
            others_spent = self._state.others_spent
            self.stats.buying_power_reads += 1
        value = self._broker.get_account().buying_power
        with self._lock:
            state = self._state
            state.buying_power = fresh = _BuyingPower(read, value, others_spent)
            state.spending = [s for s in state.spending if s.counts_after(read.started)]
            self._forget_awaited()
            return self._available(fresh)

    @contextmanager
    def spending(self, cost: Decimal, client_order_ids: Sequence[str]) -> Iterator[None]:
        """Counts ``cost`` against the buying power while the buys run, and after, until a
        read starts; their fills are not counted again."""
        entry = _Spending(cost, frozenset(without_attempt(i) for i in client_order_ids))
        with self._lock:
            self._state.spending.append(entry)
        try:
            yield
        finally:
            with self._lock:
                entry.ended = self._monotonic()

    def orders_ended(self, filled: Mapping[str, Decimal]) -> None:
        """Our orders that ended, with the qty each filled: until the stream has brought
        those fills, reads made before are not trusted."""
        now = self._monotonic()
        with self._lock:
            state = self._state
            for client_order_id, qty in filled.items():
                if qty > state.filled_by_order.get(client_order_id, _NOTHING_FILLED)[0]:
                    state.awaited[client_order_id] = (qty, now)

    # -- internals ---------------------------------------------------------------------------

    def _new_read(self) -> _Read:
        return _Read(self._monotonic(), self._state.connection)

    def _trusts(self, read: _Read) -> bool:
        """Whether the read may stand, once the fills it awaits have come (waiting for them
        at most ``fill_wait_s``); called with the lock held."""
        if not self._current(read):
            return False
        heard = self._lock.wait_for(lambda: not self._awaits(read), self._fill_wait_s)
        return heard and self._current(read)

    def _current(self, read: _Read) -> bool:
        connection = self._state.connection
        if connection is None or read.connection != connection:
            return False
        return self._monotonic() - read.started < self._max_age_s

    def _awaits(self, read: _Read) -> bool:
        """Whether an order of ours ended after the read started with fills not yet heard."""
        return any(ended >= read.started for _, ended in self._state.awaited.values())

    def _hear(self, fill: StreamFill) -> tuple[Decimal, bool]:
        """Keep the order's filled qty and cost; an awaited order filled as far as it ended is
        no longer awaited. Returns what this fill cost (an order first heard of now counts
        whole), and whether it is the order's latest (not one that arrived late)."""
        state = self._state
        filled_by_order = state.filled_by_order
        client_order_id = fill.client_order_id
        heard_qty, heard_cost = filled_by_order.pop(client_order_id, _NOTHING_FILLED)
        qty = max(heard_qty, fill.filled_qty)
        cost = max(heard_cost, fill.filled_qty * fill.filled_avg_price)
        filled_by_order[client_order_id] = (qty, cost)
        if len(filled_by_order) > ORDERS_HEARD_KEPT:
            filled_by_order.popitem(last=False)
        awaited = state.awaited.get(client_order_id)
        if awaited is not None and qty >= awaited[0]:
            del state.awaited[client_order_id]
            self._lock.notify_all()
        return cost - heard_cost, fill.filled_qty >= heard_qty

    def _forget_awaited(self) -> None:
        """Drop the awaited orders that ended before every kept read started: those reads
        show their fills."""
        state = self._state
        seeds = (state.positions, state.buying_power)
        reads = [kept.read.started for kept in seeds if kept is not None]
        oldest = min(reads, default=float("inf"))
        state.awaited = {
            cid: (qty, ended) for cid, (qty, ended) in state.awaited.items() if ended >= oldest
        }

    def _available(self, kept: _BuyingPower) -> Decimal:
        """The read's value less what was spent since: every buy of ours that had not ended
        before the read started, and every buy fill not ours."""
        started = kept.read.started
        ours = sum((s.cost for s in self._state.spending if s.counts_after(started)), Decimal(0))
        spent_by_others = self._state.others_spent - kept.others_spent_before
        return kept.value - spent_by_others - ours

    def _ours(self, fill: StreamFill) -> bool:
        stem = without_attempt(fill.client_order_id)
        return any(stem in spending.stems for spending in self._state.spending)
