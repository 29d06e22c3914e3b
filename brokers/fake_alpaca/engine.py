"""The fake Alpaca venue: account state and a matching engine over scripted quotes, no HTTP.

Market orders fill at the ask (buy) or the bid (sell); limit orders fill there when marketable
and rest otherwise. While the market is closed, orders rest as ``accepted``. Each symbol has a
fill behaviour, like the paper account's fill models:

    Immediate()     -> filled at once
    Partial(f)      -> f of the qty filled, the rest canceled at once (IOC)
    Reject(reason)  -> accepted with status rejected; Reject(reason, sync=True) answers 403
    Delayed(ms)     -> open until ms have passed, then filled at the quote of that moment

Refusals are ``ApiError`` values with Alpaca's status, code and message. Every timestamp is
strictly later than the one before (a tie moves by 1 microsecond), so paging by after/until
never skips an order. Thread-safe: one lock serializes every call.

Every order state change is an ``OrderEvent`` named as Alpaca's trade_updates stream names it:
``new`` (``accepted`` while the market is closed), ``fill``, ``partial_fill`` then ``canceled``
for a Partial fill, ``canceled``, ``rejected``; nothing expires here. Listeners
(``add_listener``) get them in order, never under the engine's lock (see ``events``). Orders
fill when the engine is called; ``settle()`` fills what became due.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rebalance_stream.brokers.fake_alpaca.events import (
    EventFeed,
    EventName,
    Execution,
    OrderEvent,
    OrderListener,
)
from rebalance_stream.brokers.fake_alpaca.model import (
    AccountValues,
    ApiError,
    Delayed,
    FillBehaviour,
    Holding,
    Order,
    OrderQuery,
    OrderTicket,
    Partial,
    Quote,
    Reject,
    VenueAccount,
    asset_id_for,
)
from rebalance_stream.brokers.fake_alpaca.rules import (
    QTY_QUANTUM,
    WHOLE_SHARE,
    check_asset,
    check_buying_power,
    check_fractional,
    check_sell_qty,
    check_sync_reject,
    check_unique,
    check_wash,
    matches,
    order_qty,
    round_down,
)

_TICK = timedelta(microseconds=1)
_FINAL_EVENTS: dict[str, EventName] = {"filled": "fill", "canceled": "canceled"}


class Engine:
    """Cash, long positions, quotes and orders of one account, and the rules that move them."""

    def __init__(self, account: VenueAccount, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._cash = account.cash
        self._quotes = {s.upper(): q for s, q in account.quotes.items()}
        self._fractionable = frozenset(s.upper() for s in account.fractionable)
        self._market_open = account.market_open
        self._fills = {s.upper(): f for s, f in account.fills.items()}
        self._default_fill = account.default_fill
        self._qty: dict[str, Decimal] = {}
        self._cost: dict[str, Decimal] = {}
        for symbol, qty in account.positions.items():
            quote = self._quotes.get(symbol.upper())
            if quote is None:
                raise ValueError(f"position {symbol} has no quote")
            if qty > 0:
                self._qty[symbol.upper()] = qty
                self._cost[symbol.upper()] = qty * quote.mid
        self._orders: dict[str, Order] = {}
        self._open_ids: dict[str, None] = {}  # the open orders' ids, in submission order
        self._by_client_id: dict[str, str] = {}
        self._last = datetime.min.replace(tzinfo=UTC)
        self._feed = EventFeed()

    # -- events ------------------------------------------------------------------------------

    def add_listener(self, listener: OrderListener) -> None:
        """Call ``listener`` with every later order event, in order (see ``events``)."""
        self._feed.add_listener(listener)

    def remove_listener(self, listener: OrderListener) -> None:
        self._feed.remove_listener(listener)

    def settle(self) -> None:
        """Fill every open order that became due or marketable, as any query would."""
        with self._locked():
            self._settle()

    # -- scripting ---------------------------------------------------------------------------

    def set_quote(self, symbol: str, bid: Decimal, ask: Decimal) -> None:
        """Set a symbol's quote (a new symbol becomes tradable) and fill what became due."""
        with self._locked():
            self._quotes[symbol.upper()] = Quote(bid, ask)
            self._settle()

    def set_fill(self, symbol: str, behaviour: FillBehaviour) -> None:
        with self._lock:
            self._fills[symbol.upper()] = behaviour

    def set_market_open(self, is_open: bool) -> None:
        with self._locked():
            self._market_open = is_open
            self._settle()

    # -- queries -----------------------------------------------------------------------------

    def clock(self) -> tuple[datetime, bool]:
        """Now and whether the market is open."""
        with self._lock:
            return self._wall(), self._market_open

    def quote(self, symbol: str) -> Quote | None:
        with self._lock:
            return self._quotes.get(symbol.upper())

    def is_fractionable(self, symbol: str) -> bool:
        return symbol.upper() in self._fractionable

    def symbol_of(self, symbol_or_asset_id: str) -> str | None:
        """The known symbol named by a symbol or an asset id, else None."""
        with self._lock:
            for symbol in self._quotes:
                if symbol_or_asset_id.upper() in (symbol, asset_id_for(symbol).upper()):
                    return symbol
            return None

    def account(self) -> AccountValues:
        with self._locked():
            self._settle()
            value = sum((q * self._quotes[s].mid for s, q in self._qty.items()), Decimal(0))
            return AccountValues(self._cash, self._buying_power(), value)

    def holdings(self) -> list[Holding]:
        """Every long position, by symbol."""
        with self._locked():
            self._settle()
            return [self._holding(symbol) for symbol in sorted(self._qty)]

    def holding(self, symbol: str) -> Holding | None:
        with self._locked():
            self._settle()
            return self._holding(symbol.upper()) if symbol.upper() in self._qty else None

    def order(self, order_id: str) -> Order | None:
        with self._locked():
            self._settle()
            return self._orders.get(order_id)

    def order_by_client_id(self, client_order_id: str) -> Order | None:
        with self._locked():
            self._settle()
            order_id = self._by_client_id.get(client_order_id)
            return None if order_id is None else self._orders[order_id]

    def orders(self, query: OrderQuery) -> list[Order]:
        """Orders matching ``query``, sorted by submitted_at in its direction, at most limit."""
        with self._locked():
            self._settle()
            found = [o for o in self._orders.values() if matches(o, query)]
        found.sort(key=lambda o: o.submitted_at, reverse=query.direction == "desc")
        return found[: query.limit]

    # -- commands ----------------------------------------------------------------------------

    def submit(self, ticket: OrderTicket) -> Order | ApiError:
        """Accept and execute an order, or refuse it with nothing recorded."""
        ticket = replace(ticket, symbol=ticket.symbol.upper())
        with self._locked():
            self._settle()
            refusal = self._refusal(ticket)
            if refusal is not None:
                return refusal
            now = self._now()
            symbol = ticket.symbol
            order = Order(
                id=str(uuid.uuid4()),
                client_order_id=ticket.client_order_id or str(uuid.uuid4()),
                symbol=symbol,
                asset_id=asset_id_for(symbol),
                side=ticket.side,
                type=ticket.type,
                time_in_force=ticket.time_in_force,
                qty=ticket.qty,
                notional=ticket.notional,
                limit_price=ticket.limit_price,
                status="new" if self._market_open else "accepted",
                submitted_at=now,
                updated_at=now,
                raw_body=ticket.raw_body,
                extended_hours=ticket.extended_hours,
                position_intent=ticket.position_intent
                or ("buy_to_open" if ticket.side == "buy" else "sell_to_close"),
            )
            behaviour = self._fill_of(symbol)
            if isinstance(behaviour, Reject):
                order = replace(
                    order, status="rejected", failed_at=now, reject_reason=behaviour.reason
                )
                self._record("rejected", order, now)
            else:
                self._record("new" if self._market_open else "accepted", order, now)
                order = self._execute(order, now)
            self._orders[order.id] = order
            self._by_client_id[order.client_order_id] = order.id
            if order.is_open:
                self._open_ids[order.id] = None
            return order

    def cancel(self, order_id: str) -> Order | ApiError:
        """Cancel an open order, keeping what filled; a closed order answers 422."""
        with self._locked():
            self._settle()
            order = self._orders.get(order_id)
            if order is None:
                return ApiError(404, 40410000, "order not found")
            if not order.is_open:
                return ApiError(422, 42210000, f'order is already in "{order.status}" state')
            now = self._now()
            canceled = replace(order, status="canceled", canceled_at=now, updated_at=now)
            self._orders[order_id] = canceled
            self._open_ids.pop(order_id, None)
            self._record("canceled", canceled, now)
            return canceled

    # -- checks on a ticket with an upper-case symbol: an ApiError refuses it ----------------

    def _refusal(self, ticket: OrderTicket) -> ApiError | None:
        """The first check that refuses the ticket, in Alpaca's order, else None."""
        symbol = ticket.symbol
        refusal = check_unique(ticket, self._by_client_id) or check_asset(ticket, self._quotes)
        return (
            refusal
            or check_fractional(ticket, self.is_fractionable(symbol))
            or check_sync_reject(self._fill_of(symbol))
            or check_wash(ticket, self._orders.values())
            or self._check_funds(ticket)
        )

    def _check_funds(self, ticket: OrderTicket) -> ApiError | None:
        quote = self._quotes[ticket.symbol]
        if ticket.side == "buy":
            return check_buying_power(ticket, quote, self._buying_power())
        existing = self._qty.get(ticket.symbol, Decimal(0))
        return check_sell_qty(ticket, quote, existing, self._open_sell_qty(ticket.symbol))

    # -- internals ---------------------------------------------------------------------------

    def _wall(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the fake alpaca clock must return timezone-aware datetimes")
        return now.astimezone(UTC)

    def _now(self) -> datetime:
        """The clock's time, moved 1 microsecond past the last stamp when not later."""
        self._last = max(self._wall(), self._last + _TICK)
        return self._last

    def _fill_of(self, symbol: str) -> FillBehaviour:
        return self._fills.get(symbol, self._default_fill)

    def _holding(self, symbol: str) -> Holding:
        qty = self._qty[symbol]
        available = qty - self._open_sell_qty(symbol)
        return Holding(symbol, qty, self._cost[symbol], self._quotes[symbol].mid, available)

    def _buying_power(self) -> Decimal:
        reserved = Decimal(0)
        for order in self._orders.values():
            if order.is_open and order.side == "buy":
                price = order.limit_price or self._quotes[order.symbol].ask
                if order.notional is not None:
                    reserved += order.notional - order.filled_qty * price
                else:
                    reserved += ((order.qty or Decimal(0)) - order.filled_qty) * price
        return self._cash - reserved

    def _open_sell_qty(self, symbol: str) -> Decimal:
        bid = self._quotes[symbol].bid
        return sum(
            (
                order_qty(o, bid) - o.filled_qty
                for o in self._orders.values()
                if o.is_open and o.side == "sell" and o.symbol == symbol
            ),
            Decimal(0),
        )

    def _settle(self) -> None:
        """Execute every open order that became due or marketable."""
        for order_id in list(self._open_ids):
            order = self._execute(self._orders[order_id], self._wall())
            self._orders[order_id] = order
            if not order.is_open:
                del self._open_ids[order_id]

    def _execute(self, order: Order, now: datetime) -> Order:
        """``order`` after its fill behaviour had its chance at ``now``."""
        behaviour = self._fill_of(order.symbol)
        if isinstance(behaviour, Reject) or not self._market_open:
            return order
        if isinstance(behaviour, Delayed) and now < order.submitted_at + timedelta(
            milliseconds=behaviour.delay_ms
        ):
            return order
        quote = self._quotes[order.symbol]
        price = quote.ask if order.side == "buy" else quote.bid
        if order.limit_price is not None and (
            price > order.limit_price if order.side == "buy" else price < order.limit_price
        ):
            return order
        fraction = behaviour.fraction if isinstance(behaviour, Partial) else Decimal(1)
        return self._fill(order, fraction, price)

    def _fill(self, order: Order, fraction: Decimal, price: Decimal) -> Order:
        """Fill ``fraction`` of the order at ``price``; a remainder is canceled (IOC)."""
        qty = order_qty(order, price)
        quantum = QTY_QUANTUM if self.is_fractionable(order.symbol) else WHOLE_SHARE
        part = round_down(qty * fraction, quantum)
        stamp = self._now()
        if part == qty:
            done = replace(order, status="filled", updated_at=stamp)
        else:
            done = replace(order, status="canceled", canceled_at=stamp, updated_at=stamp)
        if part == 0:
            self._record(_FINAL_EVENTS[done.status], done, stamp)
            return done
        self._book(order, part, price)
        done = replace(done, filled_qty=part, filled_avg_price=price, filled_at=stamp)
        position = self._qty.get(order.symbol, Decimal(0))
        execution = Execution(str(uuid.uuid4()), price, part, position)
        if part == qty:
            self._record("fill", done, stamp, execution)
        else:
            partial = replace(done, status="partially_filled", canceled_at=None)
            self._record("partial_fill", partial, stamp, execution)
            self._record("canceled", done, stamp)
        return done

    def _book(self, order: Order, part: Decimal, price: Decimal) -> None:
        """Move cash and the position for ``part`` of the order executed at ``price``."""
        held = self._qty.get(order.symbol, Decimal(0))
        if order.side == "buy":
            self._cash -= part * price
            self._cost[order.symbol] = self._cost.get(order.symbol, Decimal(0)) + part * price
            self._qty[order.symbol] = held + part
            return
        self._cash += part * price
        cost = self._cost[order.symbol]
        self._cost[order.symbol] = round_down(cost - cost * part / held, QTY_QUANTUM)
        self._qty[order.symbol] = held - part
        if self._qty[order.symbol] == 0:
            del self._qty[order.symbol], self._cost[order.symbol]

    def _record(
        self, event: EventName, order: Order, at: datetime, execution: Execution | None = None
    ) -> None:
        self._feed.record(OrderEvent(event, order, at, execution))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock; once it is released, deliver the events recorded meanwhile."""
        try:
            with self._lock:
                yield
        finally:
            self._feed.deliver()
