"""Alpaca's JSON, both ways: exact decimal order bodies out, protocol values in.

Amounts travel as strings, so no float ever rounds them:

    OrderRequest(qty=Decimal("0.123456789"))  ->  {"qty": "0.123456789", ...}
    {"filled_avg_price": "187.3312"}          ->  Decimal("187.3312")

Responses are read with ``parse_float=Decimal``, so a JSON number arrives as a Decimal too.
Alpaca's 18 order statuses map onto our six (``STATUS_MAP``). A limit price must sit on
Alpaca's tick (2 decimals at or above $1, 4 below); one that does not is refused, not rounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_UP, Decimal, InvalidOperation
from typing import Any

import structlog
from alpaca.trading.enums import OrderStatus

from rebalance_stream.brokers.account_book import StreamFill
from rebalance_stream.brokers.protocol import (
    MARKET_ORDER,
    AccountSnapshot,
    AssetInfo,
    BrokerOrder,
    BrokerOrderStatus,
    BrokerUnavailable,
    MarketClock,
    MarketData,
    OrderRejected,
    OrderRequest,
    Quote,
)
from rebalance_stream.contracts.execution import OrderSide
from rebalance_stream.contracts.wire import plain_decimal, strip_trailing_zeros

log = structlog.get_logger(__name__)

MAX_AMOUNT_DECIMALS = 9
_CENT = Decimal("0.01")
_SUB_DOLLAR_TICK = Decimal("0.0001")
_ONE_DOLLAR = Decimal(1)
_AMOUNT_QUANTUM = Decimal(1).scaleb(-MAX_AMOUNT_DECIMALS)
REJECTED_REASON = "rejected by Alpaca"

_S = BrokerOrderStatus
STATUS_MAP: Mapping[OrderStatus, BrokerOrderStatus] = {
    OrderStatus.NEW: _S.NEW,
    OrderStatus.PENDING_NEW: _S.NEW,
    OrderStatus.ACCEPTED: _S.NEW,
    OrderStatus.ACCEPTED_FOR_BIDDING: _S.NEW,
    OrderStatus.PENDING_REVIEW: _S.NEW,
    OrderStatus.HELD: _S.NEW,
    OrderStatus.CALCULATED: _S.NEW,
    OrderStatus.STOPPED: _S.NEW,
    OrderStatus.SUSPENDED: _S.NEW,
    # Still live: a cancel or replace may lose the race to a fill.
    OrderStatus.PENDING_CANCEL: _S.NEW,
    OrderStatus.PENDING_REPLACE: _S.NEW,
    # Done for today, but not over until it expires.
    OrderStatus.DONE_FOR_DAY: _S.NEW,
    OrderStatus.PARTIALLY_FILLED: _S.PARTIALLY_FILLED,
    OrderStatus.FILLED: _S.FILLED,
    OrderStatus.CANCELED: _S.CANCELED,
    # We never replace orders; a replaced order is over, and its successor is another order.
    OrderStatus.REPLACED: _S.CANCELED,
    OrderStatus.REJECTED: _S.REJECTED,
    OrderStatus.EXPIRED: _S.EXPIRED,
}


def exact_amount(value: Decimal, name: str) -> str:
    """A positive amount as a plain decimal string: ``Decimal("1E+2")`` -> ``"100"``.

    Raises OrderRejected (nothing is sent) for a non-positive amount or more than 9 decimals.
    """
    if not value.is_finite() or value <= 0:
        raise OrderRejected(f"order {name} must be positive, got {value}")
    if value != value.quantize(_AMOUNT_QUANTUM, rounding=ROUND_DOWN):
        raise OrderRejected(f"order {name} has more than {MAX_AMOUNT_DECIMALS} decimals: {value}")
    return plain_decimal(strip_trailing_zeros(value))


def exact_limit_price(price: Decimal) -> str:
    """A limit price as a plain decimal string: ``Decimal("187.50")`` -> ``"187.5"``.

    Raises OrderRejected (nothing is sent) for a price that is not positive, or finer than
    Alpaca's tick: 2 decimals at or above $1, 4 below (``format_limit_price`` rounds onto it).
    """
    if not price.is_finite() or price <= 0:
        raise OrderRejected(f"order limit_price must be positive, got {price}")
    tick = _CENT if price >= _ONE_DOLLAR else _SUB_DOLLAR_TICK
    try:
        on_tick = price == price.quantize(tick, rounding=ROUND_DOWN)
    except InvalidOperation:  # more digits than the decimal context holds
        on_tick = False
    if not on_tick:
        raise OrderRejected(f"order limit_price {price} is finer than Alpaca's tick of {tick}")
    return plain_decimal(strip_trailing_zeros(price))


def format_limit_price(price: Decimal, side: OrderSide) -> str:
    """Alpaca's tick: 2 decimals at or above $1, 4 below; rounded away from a worse fill.

    A buy rounds down and a sell rounds up: 1.239 -> "1.23" to buy, "1.24" to sell.
    """
    if not price.is_finite() or price <= 0:
        raise ValueError(f"limit price must be positive, got {price}")
    rounding = ROUND_DOWN if side is OrderSide.BUY else ROUND_UP
    tick = _CENT if price >= _ONE_DOLLAR else _SUB_DOLLAR_TICK
    rounded = price.quantize(tick, rounding=rounding)
    if rounded >= _ONE_DOLLAR and tick is _SUB_DOLLAR_TICK:
        rounded = rounded.quantize(_CENT, rounding=rounding)
    return plain_decimal(rounded)


def order_body(request: OrderRequest) -> dict[str, str]:
    """The POST /v2/orders body: a day order, market unless the request has a limit price.

    Raises OrderRejected (nothing is sent) for an amount or limit price Alpaca cannot take.
    """
    body = {
        "symbol": request.symbol.upper(),
        "side": request.side.value.lower(),
        "type": request.order_type,
        "time_in_force": "day",
        "client_order_id": request.client_order_id,
    }
    if request.qty is not None:
        body["qty"] = exact_amount(request.qty, "qty")
    elif request.notional is not None:
        body["notional"] = exact_amount(request.notional, "notional")
    if request.limit_price is not None:
        body["limit_price"] = exact_limit_price(request.limit_price)
    return body


def parse_order(raw: object) -> BrokerOrder:
    """A BrokerOrder from Alpaca's order JSON; BrokerUnavailable when it cannot be read."""
    try:
        return _order_of(_mapping(raw))
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise BrokerUnavailable(f"unreadable order from Alpaca: {exc!r}") from exc


def parse_orders(raw: object) -> list[BrokerOrder]:
    if not isinstance(raw, list):
        raise BrokerUnavailable("unreadable order list from Alpaca: not a JSON array")
    return [parse_order(item) for item in raw]


def parse_clock(raw: object) -> MarketClock:
    try:
        body = _mapping(raw)
        is_open = _bool(body["is_open"])
        change = body.get("next_close" if is_open else "next_open")
        next_change = _time(change) if isinstance(change, str) else None
        return MarketClock(is_open, _time(body["timestamp"]), next_change)
    except (KeyError, TypeError, ValueError) as exc:
        raise BrokerUnavailable(f"unreadable clock from Alpaca: {exc!r}") from exc


def parse_account(raw: object) -> AccountSnapshot:
    try:
        body = _mapping(raw)
        return AccountSnapshot(
            cash=_decimal(body["cash"]), buying_power=_decimal(body["buying_power"])
        )
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise BrokerUnavailable(f"unreadable account from Alpaca: {exc!r}") from exc


def parse_position_qty(raw: object) -> Decimal:
    try:
        return _decimal(_mapping(raw)["qty"])
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise BrokerUnavailable(f"unreadable position from Alpaca: {exc!r}") from exc


def parse_positions(raw: object) -> dict[str, Decimal]:
    """``[{"symbol": ..., "qty": ...}, ...]`` as quantities by upper-case symbol."""
    if not isinstance(raw, list):
        raise BrokerUnavailable("unreadable positions from Alpaca: not a JSON array")
    try:
        return {str(_mapping(p)["symbol"]).upper(): _decimal(_mapping(p)["qty"]) for p in raw}
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise BrokerUnavailable(f"unreadable positions from Alpaca: {exc!r}") from exc


def parse_fill(data: Mapping[str, Any], order: BrokerOrder) -> StreamFill:
    """A trade_updates fill: the order's cumulative filled qty and average price (the
    event's ``price`` when the order has none), and ``position_qty`` (absent: None). Raises
    BrokerUnavailable when they are unreadable."""
    try:
        price = order.filled_avg_price or _decimal(data["price"])
        position_qty = _optional_decimal(data.get("position_qty"))
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise BrokerUnavailable(f"unreadable fill from Alpaca: {exc!r}") from exc
    symbol = order.symbol.upper()
    filled = order.filled_qty
    return StreamFill(order.client_order_id, symbol, order.side, filled, price, position_qty)


def parse_asset(raw: object) -> AssetInfo:
    try:
        body = _mapping(raw)
        return AssetInfo(
            symbol=str(body["symbol"]).upper(),
            tradable=_bool(body["tradable"]),
            fractionable=_bool(body.get("fractionable", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BrokerUnavailable(f"unreadable asset from Alpaca: {exc!r}") from exc


def parse_trade_price(raw: object, symbol: str) -> Decimal | None:
    """The price in ``{"trades": {SYM: {"p": ...}}}``, or None when there is no positive one."""
    entry = _market_entry(raw, "trades", symbol)
    return _positive(entry.get("p")) if entry is not None else None


def latest_params(symbols: Iterable[str], feed: str | None) -> dict[str, str] | None:
    """The query of a latest trades or quotes request: the symbols upper-cased, each once, in
    order, and the feed when set; None when there are no symbols (nothing to ask)."""
    unique = ",".join(dict.fromkeys(symbol.upper() for symbol in symbols))
    if not unique:
        return None
    return {"symbols": unique, "feed": feed} if feed else {"symbols": unique}


def parse_quotes(raw: object, symbols: Iterable[str]) -> dict[str, Quote]:
    """The quotes of ``symbols`` in ``{"quotes": {SYM: {"bp": ..., "ap": ..., "t": ...}}}``.

    A symbol is absent when it has no quote, or one without a positive bid and ask, or a
    crossed one (ask below bid). An unreadable ``t`` leaves the timestamp None. None (Alpaca
    answered 404) has no quotes; any other body but a JSON object of quotes raises
    BrokerUnavailable.
    """
    if raw is None:
        return {}
    entries = raw.get("quotes") if isinstance(raw, Mapping) else None
    if not isinstance(entries, Mapping):
        raise BrokerUnavailable("unreadable quotes from Alpaca: no quotes object")
    quotes = {}
    for symbol in dict.fromkeys(s.upper() for s in symbols):
        entry = entries.get(symbol)
        quote = _quote_of(entry) if isinstance(entry, Mapping) else None
        if quote is not None:
            quotes[symbol] = quote
    return quotes


def parse_snapshots(raw: object, symbols: Iterable[str]) -> MarketData:
    """The prices and quotes in multi-symbol snapshots, ``{SYM: {"latestTrade": {"p": ...},
    "latestQuote": {"bp": ..., "ap": ..., "t": ...}, ...}}``.

    A symbol's price is its latest trade's, else its quote's midpoint; its quote follows
    ``parse_quotes``' rules. None (404) has neither; any other body but a JSON object raises
    BrokerUnavailable."""
    if raw is None:
        return MarketData({}, {})
    if not isinstance(raw, Mapping):
        raise BrokerUnavailable("unreadable snapshots from Alpaca: not an object")
    prices: dict[str, Decimal] = {}
    quotes: dict[str, Quote] = {}
    for symbol in dict.fromkeys(s.upper() for s in symbols):
        snapshot = raw.get(symbol)
        if not isinstance(snapshot, Mapping):
            continue
        trade, quote_entry = snapshot.get("latestTrade"), snapshot.get("latestQuote")
        quote = _quote_of(quote_entry) if isinstance(quote_entry, Mapping) else None
        if quote is not None:
            quotes[symbol] = quote
        price = _positive(trade.get("p")) if isinstance(trade, Mapping) else None
        if price is None and quote is not None:
            price = quote.mid
        if price is not None:
            prices[symbol] = price
    return MarketData(prices, quotes)


def _quote_of(entry: Mapping[str, Any]) -> Quote | None:
    bid, ask = _positive(entry.get("bp")), _positive(entry.get("ap"))
    if bid is None or ask is None or ask < bid:
        return None
    try:
        timestamp: datetime | None = _time(entry.get("t"))
    except (TypeError, ValueError):
        timestamp = None
    return Quote(bid, ask, timestamp)


def _order_of(body: Mapping[str, Any]) -> BrokerOrder:
    filled_qty = _decimal(body.get("filled_qty") or "0")
    avg_price = _optional_decimal(body.get("filled_avg_price"))
    status = _status(str(body["status"]), filled_qty)
    return BrokerOrder(
        broker_order_id=str(body["id"]),
        client_order_id=str(body["client_order_id"]),
        symbol=str(body["symbol"]).upper(),
        side=OrderSide(str(body["side"]).upper()),
        status=status,
        qty=_optional_decimal(body.get("qty")),
        notional=_optional_decimal(body.get("notional")),
        filled_qty=filled_qty,
        # Alpaca may show 0 as the average price of an order with no fill yet.
        filled_avg_price=avg_price if avg_price and filled_qty > 0 else None,
        submitted_at=_time(body.get("submitted_at") or body["created_at"]),
        filled_at=_time(body["filled_at"]) if body.get("filled_at") else None,
        reject_reason=REJECTED_REASON if status is BrokerOrderStatus.REJECTED else None,
        order_type=str(body.get("type") or body.get("order_type") or MARKET_ORDER).lower(),
        limit_price=_optional_decimal(body.get("limit_price")),
    )


def _status(value: str, filled_qty: Decimal) -> BrokerOrderStatus:
    try:
        status = STATUS_MAP[OrderStatus(value)]
    except ValueError:
        # A status newer than this adapter: treat the order as live, so it is polled, then canceled.
        log.warning("alpaca_unknown_order_status", status=value)
        status = BrokerOrderStatus.NEW
    if status is BrokerOrderStatus.NEW and filled_qty > 0:
        return BrokerOrderStatus.PARTIALLY_FILLED
    return status


def _market_entry(raw: object, key: str, symbol: str) -> Mapping[str, Any] | None:
    if not isinstance(raw, Mapping):
        return None
    entries = raw.get(key)
    if not isinstance(entries, Mapping):
        return None
    entry = entries.get(symbol.upper())
    return entry if isinstance(entry, Mapping) else None


def _positive(value: object) -> Decimal | None:
    if value is None or isinstance(value, (bool, float)):
        return None
    try:
        number = _decimal(value)
    except (TypeError, ValueError, InvalidOperation):
        return None
    return number if number.is_finite() and number > 0 else None


def _mapping(raw: object) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise TypeError(f"expected a JSON object, got {type(raw).__name__}")
    return raw


def _decimal(value: object) -> Decimal:
    """A Decimal from a JSON string or (read with parse_float=Decimal) number; never a float."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        raise TypeError(f"expected a decimal string, got {type(value).__name__}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"expected a finite decimal, got {value}")
    return number


def _optional_decimal(value: object) -> Decimal | None:
    return None if value is None or value == "" else _decimal(value)


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a JSON boolean, got {type(value).__name__}")
    return value


def _time(value: object) -> datetime:
    """An aware datetime from Alpaca's RFC 3339 text; nanoseconds are cut to microseconds."""
    if not isinstance(value, str):
        raise TypeError(f"expected a timestamp string, got {type(value).__name__}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a timezone: {value}")
    return parsed
