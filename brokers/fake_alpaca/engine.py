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
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

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
from rebalance_stream.contracts.wire import strip_trailing_zeros

_QTY_QUANTUM = Decimal("1E-9")  # Alpaca takes at most 9 decimal places
_WHOLE_SHARE = Decimal(1)
_TICK = timedelta(microseconds=1)


def _round_down(qty: Decimal, quantum: Decimal) -> Decimal:
    return strip_trailing_zeros(qty.quantize(quantum, rounding=ROUND_DOWN))


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
        self._by_client_id: dict[str, str] = {}
        self._last = datetime.min.replace(tzinfo=UTC)

    # -- scripting ---------------------------------------------------------------------------

    def set_quote(self, symbol: str, bid: Decimal, ask: Decimal) -> None:
        """Set a symbol's quote (a new symbol becomes tradable) and fill what became due."""
        with self._lock:
            self._quotes[symbol.upper()] = Quote(bid, ask)
            self._settle()

    def set_fill(self, symbol: str, behaviour: FillBehaviour) -> None:
        with self._lock:
            self._fills[symbol.upper()] = behaviour

    def set_market_open(self, is_open: bool) -> None:
        with self._lock:
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
        with self._lock:
            self._settle()
            value = sum((q * self._quotes[s].mid for s, q in self._qty.items()), Decimal(0))
            return AccountValues(self._cash, self._buying_power(), value)

    def holdings(self) -> list[Holding]:
        """Every long position, by symbol."""
        with self._lock:
            self._settle()
            return [self._holding(symbol) for symbol in sorted(self._qty)]

    def holding(self, symbol: str) -> Holding | None:
        with self._lock:
            self._settle()
            return self._holding(symbol.upper()) if symbol.upper() in self._qty else None

    def order(self, order_id: str) -> Order | None:
        with self._lock:
            self._settle()
            return self._orders.get(order_id)

    def order_by_client_id(self, client_order_id: str) -> Order | None:
        with self._lock:
            self._settle()
            order_id = self._by_client_id.get(client_order_id)
            return None if order_id is None else self._orders[order_id]

    def orders(self, query: OrderQuery) -> list[Order]:
        """Orders matching ``query``, sorted by submitted_at in its direction, at most limit."""
        with self._lock:
            self._settle()
            found = [o for o in self._orders.values() if _matches(o, query)]
        found.sort(key=lambda o: o.submitted_at, reverse=query.direction == "desc")
        return found[: query.limit]

    # -- commands ----------------------------------------------------------------------------

    def submit(self, ticket: OrderTicket) -> Order | ApiError:
        """Accept and execute an order, or refuse it with nothing recorded."""
        ticket = replace(ticket, symbol=ticket.symbol.upper())
        with self._lock:
            self._settle()
            checks = (self._check_unique, self._check_asset, self._check_fractional)
            for check in (*checks, self._check_sync_reject, self._check_wash, self._check_funds):
                refusal = check(ticket)
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
            else:
                order = self._execute(order, now)
            self._orders[order.id] = order
            self._by_client_id[order.client_order_id] = order.id
            return order

    def cancel(self, order_id: str) -> Order | ApiError:
        """Cancel an open order, keeping what filled; a closed order answers 422."""
        with self._lock:
            self._settle()
            order = self._orders.get(order_id)
            if order is None:
                return ApiError(404, 40410000, "order not found")
            if not order.is_open:
                return ApiError(422, 42210000, f'order is already in "{order.status}" state')
            now = self._now()
            canceled = replace(order, status="canceled", canceled_at=now, updated_at=now)
            self._orders[order_id] = canceled
            return canceled

    # -- checks on a ticket with an upper-case symbol: an ApiError refuses it ----------------

    def _check_unique(self, ticket: OrderTicket) -> ApiError | None:
        if ticket.client_order_id in self._by_client_id:
            return ApiError(422, 40010001, "client_order_id must be unique")
        return None

    def _check_asset(self, ticket: OrderTicket) -> ApiError | None:
        if ticket.symbol not in self._quotes:
            return ApiError(422, 42210000, f'asset "{ticket.symbol}" not found')
        return None

    def _check_fractional(self, ticket: OrderTicket) -> ApiError | None:
        whole = ticket.qty is not None and ticket.qty == ticket.qty.to_integral_value()
        if not whole and not self.is_fractionable(ticket.symbol):
            return ApiError(422, 42210000, "requested asset is not fractionable")
        if not whole and ticket.time_in_force != "day":
            return ApiError(422, 42210000, "fractional orders must be DAY orders")
        return None

    def _check_sync_reject(self, ticket: OrderTicket) -> ApiError | None:
        behaviour = self._fill_of(ticket.symbol)
        if isinstance(behaviour, Reject) and behaviour.sync:
            return ApiError(403, 40310000, behaviour.reason)
        return None

    def _check_wash(self, ticket: OrderTicket) -> ApiError | None:
        """An open opposite order on the symbol that a market order or a crossing limit hits."""
        for other in self._orders.values():
            if not other.is_open or other.symbol != ticket.symbol or other.side == ticket.side:
                continue
            if "market" in (other.type, ticket.type) or _crosses(ticket, other):
                return ApiError(403, 40310000, "potential wash trade detected. use complex orders")
        return None

    def _check_funds(self, ticket: OrderTicket) -> ApiError | None:
        quote = self._quotes[ticket.symbol]
        if ticket.side == "buy":
            price = ticket.limit_price or quote.ask
            cost = ticket.notional or (ticket.qty or Decimal(0)) * price
            power = self._buying_power()
            if cost <= power:
                return None
            extra = {"buying_power": _text(power), "cost_basis": _text(cost)}
            return ApiError(403, 40310000, "insufficient buying power", extra)
        symbol = ticket.symbol
        notional = ticket.notional or Decimal(0)
        wanted = ticket.qty or _round_down(notional / quote.bid, _QTY_QUANTUM)
        existing = self._qty.get(symbol, Decimal(0))
        held = self._open_sell_qty(symbol)
        available = existing - held
        if wanted <= available:
            return None
        message = "insufficient qty available for order (requested: {}, available: {})"
        extra = {
            "available": _text(available),
            "existing_qty": _text(existing),
            "held_for_orders": _text(held),
            "symbol": symbol,
        }
        return ApiError(403, 40310000, message.format(_text(wanted), _text(available)), extra)

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
                _order_qty(o, bid) - o.filled_qty
                for o in self._orders.values()
                if o.is_open and o.side == "sell" and o.symbol == symbol
            ),
            Decimal(0),
        )

    def _settle(self) -> None:
        """Execute every open order that became due or marketable."""
        for order in list(self._orders.values()):
            if order.is_open:
                self._orders[order.id] = self._execute(order, self._wall())

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
        qty = _order_qty(order, price)
        quantum = _QTY_QUANTUM if self.is_fractionable(order.symbol) else _WHOLE_SHARE
        part = _round_down(qty * fraction, quantum)
        stamp = self._now()
        if part == qty:
            done = replace(order, status="filled", updated_at=stamp)
        else:
            done = replace(order, status="canceled", canceled_at=stamp, updated_at=stamp)
        if part == 0:
            return done
        held = self._qty.get(order.symbol, Decimal(0))
        if order.side == "buy":
            self._cash -= part * price
            self._cost[order.symbol] = self._cost.get(order.symbol, Decimal(0)) + part * price
            self._qty[order.symbol] = held + part
        else:
            self._cash += part * price
            cost = self._cost[order.symbol]
            self._cost[order.symbol] = _round_down(cost - cost * part / held, _QTY_QUANTUM)
            self._qty[order.symbol] = held - part
            if self._qty[order.symbol] == 0:
                del self._qty[order.symbol], self._cost[order.symbol]
        return replace(done, filled_qty=part, filled_avg_price=price, filled_at=stamp)


def _order_qty(order: Order, price: Decimal) -> Decimal:
    """The order's quantity; a notional order's is notional/price, rounded down to 9 dp."""
    if order.qty is not None:
        return order.qty
    return _round_down((order.notional or Decimal(0)) / price, _QTY_QUANTUM)


def _crosses(ticket: OrderTicket, other: Order) -> bool:
    """Whether two opposite limit orders could fill against each other."""
    if ticket.limit_price is None or other.limit_price is None:
        return True
    buy, sell = (ticket.limit_price, other.limit_price)
    if ticket.side == "sell":
        buy, sell = sell, buy
    return buy >= sell


def _matches(order: Order, query: OrderQuery) -> bool:
    if query.status != "all" and order.is_open != (query.status == "open"):
        return False
    if query.after is not None and order.submitted_at <= query.after:
        return False
    if query.until is not None and order.submitted_at >= query.until:
        return False
    if query.symbols and order.symbol not in query.symbols:
        return False
    return query.side is None or order.side == query.side


def _text(value: Decimal) -> str:
    return format(strip_trailing_zeros(value), "f")
