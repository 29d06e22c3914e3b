"""Alpaca's JSON shapes for the fake venue's values, and its request parsers; no state.

Amounts are written as plain decimal strings, as Alpaca writes them, and read from strings or
JSON numbers as Decimal, never via float. A parser returns the ApiError that Alpaca would
answer for a bad request (422, code 40010001).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from rebalance_stream.brokers.fake_alpaca.events import OrderEvent
from rebalance_stream.brokers.fake_alpaca.model import (
    ASSET_NAMESPACE,
    AccountValues,
    ApiError,
    Delayed,
    FillBehaviour,
    Holding,
    Immediate,
    Order,
    OrderQuery,
    OrderTicket,
    Partial,
    Reject,
    Side,
    StatusFilter,
    asset_id_for,
)
from rebalance_stream.contracts.wire import format_timestamp, strip_trailing_zeros

_TIMES_IN_FORCE = frozenset({"day", "gtc", "opg", "cls", "ioc", "fok"})
_SIMPLE_CLASSES = frozenset({None, "", "simple"})
_MAX_CLIENT_ORDER_ID = 128
_MAX_PAGE = 500
_QTY_PLACES = 9
_EXCHANGE = "ARCA"


class _Invalid(Exception):
    """A request field Alpaca would refuse with 422; turned into an ApiError at the edge."""


def text(value: Decimal | None) -> str | None:
    """A plain decimal string without trailing zeros, as Alpaca writes amounts."""
    return None if value is None else format(strip_trailing_zeros(value), "f")


def _ts(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def order_json(order: Order) -> dict[str, object]:
    """An order entity, with every field alpaca-py's Order model reads."""
    return {
        "id": order.id,
        "client_order_id": order.client_order_id,
        "created_at": _ts(order.submitted_at),
        "updated_at": _ts(order.updated_at),
        "submitted_at": _ts(order.submitted_at),
        "filled_at": _ts(order.filled_at),
        "expired_at": None,
        "expires_at": None,
        "canceled_at": _ts(order.canceled_at),
        "failed_at": _ts(order.failed_at),
        "replaced_at": None,
        "replaced_by": None,
        "replaces": None,
        "asset_id": order.asset_id,
        "symbol": order.symbol,
        "asset_class": "us_equity",
        "notional": text(order.notional),
        "qty": text(order.qty),
        "filled_qty": text(order.filled_qty),
        "filled_avg_price": text(order.filled_avg_price),
        "order_class": "",  # Alpaca sends "" for simple orders; alpaca-py maps it to simple
        "order_type": order.type,
        "type": order.type,
        "side": order.side,
        "position_intent": order.position_intent,
        "time_in_force": order.time_in_force,
        "limit_price": text(order.limit_price),
        "stop_price": None,
        "status": order.status,
        "extended_hours": order.extended_hours,
        "legs": None,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
    }


def trade_update_json(event: OrderEvent) -> dict[str, object]:
    """A trade_updates message's data: event, order (as REST renders it), timestamp, and for a
    fill the execution's id, price and qty, and the position after it."""
    data: dict[str, object] = {
        "event": event.event,
        "order": order_json(event.order),
        "timestamp": format_timestamp(event.timestamp),
    }
    execution = event.execution
    if execution is not None:
        data["execution_id"] = execution.id
        data["price"] = text(execution.price)
        data["qty"] = text(execution.qty)
        data["position_qty"] = text(execution.position_qty)
    return data


def asset_json(symbol: str, fractionable: bool) -> dict[str, object]:
    return {
        "id": asset_id_for(symbol),
        "class": "us_equity",
        "exchange": _EXCHANGE,
        "symbol": symbol,
        "name": f"{symbol} (fake alpaca)",
        "status": "active",
        "tradable": True,
        "marginable": True,
        "maintenance_margin_requirement": 30,
        "shortable": False,
        "easy_to_borrow": False,
        "fractionable": fractionable,
        "attributes": [],
    }


def position_json(holding: Holding) -> dict[str, object]:
    market_value = holding.qty * holding.price
    pl = market_value - holding.cost_basis
    plpc = pl / holding.cost_basis if holding.cost_basis else Decimal(0)
    return {
        "asset_id": asset_id_for(holding.symbol),
        "symbol": holding.symbol,
        "exchange": _EXCHANGE,
        "asset_class": "us_equity",
        "asset_marginable": True,
        "qty": text(holding.qty),
        "qty_available": text(holding.qty_available),
        "avg_entry_price": text(_round(holding.cost_basis / holding.qty)),
        "side": "long",
        "market_value": text(market_value),
        "cost_basis": text(holding.cost_basis),
        "unrealized_pl": text(pl),
        "unrealized_plpc": text(_round(plpc)),
        "unrealized_intraday_pl": text(pl),
        "unrealized_intraday_plpc": text(_round(plpc)),
        "current_price": text(holding.price),
        "lastday_price": text(holding.price),
        "change_today": "0",
    }


def account_json(values: AccountValues, now: datetime) -> dict[str, object]:
    equity = values.cash + values.long_market_value
    power = text(values.buying_power)
    zero = "0"
    return {
        "id": str(uuid.uuid5(ASSET_NAMESPACE, "account")),
        "account_number": "PAFAKE000001",
        "status": "ACTIVE",
        "crypto_status": "ACTIVE",
        "currency": "USD",
        "buying_power": power,
        "regt_buying_power": power,
        "non_marginable_buying_power": power,
        "options_buying_power": power,
        "cash": text(values.cash),
        "accrued_fees": zero,
        "portfolio_value": text(equity),
        "equity": text(equity),
        "last_equity": text(equity),
        "long_market_value": text(values.long_market_value),
        "short_market_value": zero,
        "initial_margin": zero,
        "maintenance_margin": zero,
        "last_maintenance_margin": zero,
        "sma": zero,
        "multiplier": "1",
        "shorting_enabled": False,
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "trade_suspended_by_user": False,
        "created_at": format_timestamp(now),
        "options_approved_level": 0,
        "options_trading_level": 0,
    }


def clock_json(now: datetime, is_open: bool) -> dict[str, object]:
    """The market clock; the next open or close is a synthetic hour away."""
    hour = timedelta(hours=1)
    next_open, next_close = (
        (now + 24 * hour, now + hour) if is_open else (now + hour, now + 2 * hour)
    )
    return {
        "timestamp": format_timestamp(now),
        "is_open": is_open,
        "next_open": format_timestamp(next_open),
        "next_close": format_timestamp(next_close),
    }


def _round(value: Decimal) -> Decimal:
    return value.quantize(Decimal("1E-9"), rounding=ROUND_HALF_EVEN)


def parse_ticket(document: object, raw_body: str) -> OrderTicket | ApiError:
    """An order submission as Alpaca validates it; refusals are 422 with code 40010001."""
    try:
        if not isinstance(document, dict):
            raise _Invalid("request body format is invalid")
        if document.get("order_class") not in _SIMPLE_CLASSES:
            raise _Invalid(f"order_class {document.get('order_class')} is not supported here")
        ticket = OrderTicket(
            symbol=_string(document, "symbol", required=True).upper(),
            side="buy" if _one_of(document, "side", {"buy", "sell"}) == "buy" else "sell",
            type="market"
            if _one_of(document, "type", {"market", "limit"}) == "market"
            else "limit",
            time_in_force=_one_of(document, "time_in_force", _TIMES_IN_FORCE),
            raw_body=raw_body,
            qty=_decimal(document, "qty"),
            notional=_decimal(document, "notional"),
            limit_price=_decimal(document, "limit_price"),
            client_order_id=_string(document, "client_order_id") or None,
            extended_hours=document.get("extended_hours") is True,
            position_intent=_string(document, "position_intent") or None,
        )
        _check_amounts(ticket)
    except _Invalid as exc:
        return ApiError(422, 40010001, str(exc))
    return ticket


def _check_amounts(ticket: OrderTicket) -> None:
    if (ticket.qty is None) == (ticket.notional is None):
        raise _Invalid("exactly one of qty or notional is required")
    if ticket.type == "limit" and ticket.limit_price is None:
        raise _Invalid("limit_price is required for limit orders")
    for name in ("qty", "notional", "limit_price"):
        value: Decimal | None = getattr(ticket, name)
        if value is not None and value <= 0:
            raise _Invalid(f"{name} must be > 0")
    exponent = ticket.qty.normalize().as_tuple().exponent if ticket.qty is not None else 0
    if isinstance(exponent, int) and exponent < -_QTY_PLACES:
        raise _Invalid("qty must have at most 9 decimal places")
    if len(ticket.client_order_id or "") > _MAX_CLIENT_ORDER_ID:
        raise _Invalid("client_order_id must be no more than 128 characters")


def _string(document: Mapping[str, object], key: str, *, required: bool = False) -> str:
    value = document.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value:
        raise _Invalid(f"{key} is required" if value is None else f"{key} must be a string")
    return value


def _one_of(document: Mapping[str, object], key: str, allowed: set[str] | frozenset[str]) -> str:
    value = _string(document, key, required=True)
    if value not in allowed:
        raise _Invalid(f"invalid {key}: {value}")
    return value


def _decimal(document: Mapping[str, object], key: str) -> Decimal | None:
    """A string or JSON number (read as Decimal, never float), or None when absent."""
    value = document.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise _Invalid(f"{key} must be a decimal string or number")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _Invalid(f"{key} must be a decimal string or number") from None
    if not number.is_finite():
        raise _Invalid(f"{key} must be finite")
    return number


def parse_order_query(params: Mapping[str, str]) -> OrderQuery | ApiError:
    """GET /v2/orders's query: status, limit (at most 500), after, until, direction, ..."""
    try:
        limit = int(params.get("limit", "50"))
        if params.get("direction", "desc") not in ("asc", "desc"):
            raise _Invalid(f"invalid direction: {params['direction']}")
        symbols = params.get("symbols", "")
        return OrderQuery(
            status=_status(params.get("status", "open")),
            limit=max(1, min(limit, _MAX_PAGE)),
            after=_instant(params.get("after")),
            until=_instant(params.get("until")),
            direction="asc" if params.get("direction", "desc") == "asc" else "desc",
            symbols=frozenset(s.strip().upper() for s in symbols.split(",") if s.strip()),
            side=None if "side" not in params else _side(params["side"]),
        )
    except (ValueError, _Invalid) as exc:
        return ApiError(422, 40010001, str(exc))


def _status(value: str) -> StatusFilter:
    if value not in ("open", "closed", "all"):
        raise _Invalid(f"invalid status: {value}")
    return "open" if value == "open" else "closed" if value == "closed" else "all"


def _side(value: str) -> Side:
    if value not in ("buy", "sell"):
        raise _Invalid(f"invalid side: {value}")
    return "buy" if value == "buy" else "sell"


def _instant(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp or a date; a naive one is UTC."""
    if value is None:
        return None
    instant = datetime.fromisoformat(value)
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def parse_behaviour(value: object) -> FillBehaviour:
    """A fill behaviour from the paper account's JSON, or ``{"reject": reason, "sync": bool}``.

    ``"immediate"``, ``"reject"``, ``{"partial": "0.5"}``, ``{"delay_ms": 100}``. Raises
    ValueError for anything else.
    """
    if value == "immediate":
        return Immediate()
    if value == "reject":
        return Reject()
    if isinstance(value, Mapping) and set(value) == {"partial"}:
        return Partial(Decimal(str(value["partial"])))
    if isinstance(value, Mapping) and set(value) == {"delay_ms"}:
        delay = value["delay_ms"]
        if isinstance(delay, int) and not isinstance(delay, bool) and delay >= 0:
            return Delayed(delay)
    if isinstance(value, Mapping) and "reject" in value and set(value) <= {"reject", "sync"}:
        return Reject(str(value["reject"]), sync=value.get("sync") is True)
    raise ValueError(f"not a fill behaviour: {value!r}")


def dumps(document: object) -> bytes:
    """UTF-8 JSON where a Decimal is an exact number literal (market data sends numbers)."""
    return _encode(document).encode("utf-8")


def _encode(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value)
