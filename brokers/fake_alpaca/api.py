"""The fake Alpaca API's routes: a request in, a reply out, with no sockets.

``TradingApi`` serves the ``/v2`` endpoints alpaca-py's TradingClient and
StockHistoricalDataClient call, with Alpaca's JSON shapes and error bodies. ``AdminApi``
serves ``/_fake/*`` so that another process can script the venue:

    GET    /_fake/stats    -> {"request_counts": [{method, path, count}], "order_requests": [..]}
    GET    /_fake/faults   -> the armed faults
    POST   /_fake/faults   <- a fault or a list of faults, as Fault.from_json reads them
    DELETE /_fake/faults   -> disarm every fault (204)
    POST   /_fake/quotes   <- {"symbol": "SPY", "bid": "499.99", "ask": "500.01"}
    POST   /_fake/fills    <- {"symbol": "SPY", "fill": "immediate" | {"partial": "0.5"} | ...}
    POST   /_fake/market   <- {"is_open": false}
    GET    /_fake/stream   -> the trading websocket's counters (StreamCounters)
    POST   /_fake/stream/drop             -> cut every websocket connection: {"dropped": n}
    POST   /_fake/stream/outage           <- {"on": true | false}
    POST   /_fake/stream/duplicate_fills  <- {"count": n}: send the next n (default 1) fill events
                                             twice
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from rebalance_stream.brokers.fake_alpaca.engine import Engine
from rebalance_stream.brokers.fake_alpaca.faults import Fault, FaultPlan
from rebalance_stream.brokers.fake_alpaca.model import ApiError, Order
from rebalance_stream.brokers.fake_alpaca.trade_stream import TradeStreamServer
from rebalance_stream.brokers.fake_alpaca.wire import (
    account_json,
    asset_json,
    clock_json,
    dumps,
    order_json,
    parse_behaviour,
    parse_order_query,
    parse_ticket,
    position_json,
)


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request; header names are lower case."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer; ``disconnect`` closes the socket without answering."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    disconnect: bool = False


Handler = Callable[[Request, Mapping[str, str]], Reply]


def json_reply(status: int, document: object) -> Reply:
    return Reply(status, dumps(document))


def error_reply(error: ApiError) -> Reply:
    return json_reply(error.status, error.body())


def _order_reply(result: Order | ApiError) -> Reply:
    return (
        error_reply(result) if isinstance(result, ApiError) else json_reply(200, order_json(result))
    )


def _json_body(request: Request) -> object:
    """The body as JSON with numbers read as Decimal; raises ValueError when it is not JSON."""
    return json.loads(request.body or b"null", parse_float=Decimal)


_BAD_BODY = ApiError(400, 40010000, "request body format is invalid")


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    handler: Handler
    pattern: re.Pattern[str]


class Router:
    """Matches a path to a route template such as ``/v2/orders/{order_id}``."""

    def __init__(self, routes: list[tuple[str, str, Handler]]) -> None:
        self._routes = [Route(m, t, h, _compile(t)) for m, t, h in routes]

    def match(self, method: str, path: str) -> tuple[str, Handler | None, dict[str, str]]:
        """The template (the path itself when none matches), its handler and path arguments.

        The handler is None when no route matches the method and path.
        """
        template = path
        for route in self._routes:
            found = route.pattern.fullmatch(path)
            if found is None:
                continue
            template = route.template
            if route.method == method:
                return template, route.handler, found.groupdict()
        return template, None, {}


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
        for index, part in enumerate(parts)
    )
    return re.compile(pattern)


class TradingApi:
    """The ``/v2`` trading endpoints over one Engine (market data: ``market_data``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/v2/account", self.account),
            ("GET", "/v2/clock", self.clock),
            ("GET", "/v2/assets/{symbol}", self.asset),
            ("GET", "/v2/positions", self.positions),
            ("GET", "/v2/positions/{symbol}", self.position),
            ("POST", "/v2/orders", self.submit_order),
            ("GET", "/v2/orders", self.list_orders),
            ("GET", "/v2/orders:by_client_order_id", self.order_by_client_id),
            ("GET", "/v2/orders/{order_id}", self.order),
            ("DELETE", "/v2/orders/{order_id}", self.cancel_order),
        ]

    def account(self, request: Request, args: Mapping[str, str]) -> Reply:
        now, _ = self._engine.clock()
        return json_reply(200, account_json(self._engine.account(), now))

    def clock(self, request: Request, args: Mapping[str, str]) -> Reply:
        return json_reply(200, clock_json(*self._engine.clock()))

    def asset(self, request: Request, args: Mapping[str, str]) -> Reply:
        symbol = self._engine.symbol_of(args["symbol"])
        if symbol is None:
            return error_reply(ApiError(404, 40410000, "asset not found"))
        return json_reply(200, asset_json(symbol, self._engine.is_fractionable(symbol)))

    def positions(self, request: Request, args: Mapping[str, str]) -> Reply:
        return json_reply(200, [position_json(h) for h in self._engine.holdings()])

    def position(self, request: Request, args: Mapping[str, str]) -> Reply:
        symbol = self._engine.symbol_of(args["symbol"])
        holding = None if symbol is None else self._engine.holding(symbol)
        if holding is None:
            return error_reply(ApiError(404, 40410000, "position does not exist"))
        return json_reply(200, position_json(holding))

    def submit_order(self, request: Request, args: Mapping[str, str]) -> Reply:
        try:
            document = _json_body(request)
        except ValueError:
            return error_reply(_BAD_BODY)
        ticket = parse_ticket(document, request.body.decode("utf-8", "replace"))
        if isinstance(ticket, ApiError):
            return error_reply(ticket)
        return _order_reply(self._engine.submit(ticket))

    def list_orders(self, request: Request, args: Mapping[str, str]) -> Reply:
        query = parse_order_query(request.params)
        if isinstance(query, ApiError):
            return error_reply(query)
        return json_reply(200, [order_json(o) for o in self._engine.orders(query)])

    def order(self, request: Request, args: Mapping[str, str]) -> Reply:
        order = self._engine.order(args["order_id"])
        if order is None:
            return error_reply(ApiError(404, 40410000, "order not found"))
        return json_reply(200, order_json(order))

    def order_by_client_id(self, request: Request, args: Mapping[str, str]) -> Reply:
        client_order_id = request.params.get("client_order_id", "")
        if not client_order_id:
            return error_reply(ApiError(422, 40010001, "client_order_id is required"))
        order = self._engine.order_by_client_id(client_order_id)
        if order is None:
            return error_reply(ApiError(404, 40410000, "order not found"))
        return json_reply(200, order_json(order))

    def cancel_order(self, request: Request, args: Mapping[str, str]) -> Reply:
        result = self._engine.cancel(args["order_id"])
        return error_reply(result) if isinstance(result, ApiError) else Reply(204)


class AdminApi:
    """The ``/_fake`` scripting endpoints; ``stats`` gives what GET /_fake/stats answers."""

    def __init__(
        self,
        engine: Engine,
        faults: FaultPlan,
        stats: Callable[[], dict[str, object]],
        stream: TradeStreamServer,
    ) -> None:
        self._engine = engine
        self._faults = faults
        self._stats = stats
        self._stream = stream

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/_fake/stats", lambda request, args: json_reply(200, self._stats())),
            ("GET", "/_fake/faults", lambda request, args: self._armed()),
            ("POST", "/_fake/faults", self.arm_faults),
            ("DELETE", "/_fake/faults", self.clear_faults),
            ("POST", "/_fake/quotes", self.set_quote),
            ("POST", "/_fake/fills", self.set_fill),
            ("POST", "/_fake/market", self.set_market),
            (
                "GET",
                "/_fake/stream",
                lambda r, a: json_reply(200, self._stream.counters().to_json()),
            ),
            ("POST", "/_fake/stream/drop", self.drop_stream),
            ("POST", "/_fake/stream/outage", self.stream_outage),
            ("POST", "/_fake/stream/duplicate_fills", self.duplicate_fills),
        ]

    def _armed(self) -> Reply:
        return json_reply(200, {"armed": [f.to_json() for f in self._faults.pending()]})

    def arm_faults(self, request: Request, args: Mapping[str, str]) -> Reply:
        try:
            document = json.loads(request.body or b"null")
            documents = document if isinstance(document, list) else [document]
            faults = [Fault.from_json(d) for d in documents if isinstance(d, dict)]
            if len(faults) != len(documents):
                raise ValueError("a fault is a JSON object")
        except ValueError as exc:
            return json_reply(400, {"code": 40010000, "message": str(exc)})
        for fault in faults:
            self._faults.arm(fault)
        return self._armed()

    def clear_faults(self, request: Request, args: Mapping[str, str]) -> Reply:
        self._faults.clear()
        return Reply(204)

    def set_quote(self, request: Request, args: Mapping[str, str]) -> Reply:
        try:
            document = _json_body(request)
            if not isinstance(document, dict):
                raise ValueError("expected {symbol, bid, ask}")
            bid, ask = Decimal(str(document["bid"])), Decimal(str(document["ask"]))
            self._engine.set_quote(str(document["symbol"]), bid, ask)
        except (ValueError, KeyError, InvalidOperation) as exc:
            return json_reply(400, {"code": 40010000, "message": f"bad quote: {exc}"})
        return json_reply(200, {"symbol": str(document["symbol"]).upper()})

    def set_fill(self, request: Request, args: Mapping[str, str]) -> Reply:
        try:
            document = _json_body(request)
            if not isinstance(document, dict):
                raise ValueError("expected {symbol, fill}")
            self._engine.set_fill(str(document["symbol"]), parse_behaviour(document["fill"]))
        except (ValueError, KeyError, InvalidOperation) as exc:
            return json_reply(400, {"code": 40010000, "message": f"bad fill: {exc}"})
        return json_reply(200, {"symbol": str(document["symbol"]).upper()})

    def set_market(self, request: Request, args: Mapping[str, str]) -> Reply:
        try:
            document = _json_body(request)
        except ValueError:
            document = None
        if not isinstance(document, dict) or not isinstance(document.get("is_open"), bool):
            return json_reply(400, {"code": 40010000, "message": "expected {is_open: bool}"})
        self._engine.set_market_open(document["is_open"])
        return json_reply(200, {"is_open": document["is_open"]})

    def drop_stream(self, request: Request, args: Mapping[str, str]) -> Reply:
        return json_reply(200, {"dropped": self._stream.drop_connections()})

    def stream_outage(self, request: Request, args: Mapping[str, str]) -> Reply:
        on = _field(request, "on")
        if not isinstance(on, bool):
            return json_reply(400, {"code": 40010000, "message": "expected {on: bool}"})
        self._stream.set_outage(on)
        return json_reply(200, {"on": on})

    def duplicate_fills(self, request: Request, args: Mapping[str, str]) -> Reply:
        count = _field(request, "count")
        count = 1 if count is None else count
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            return json_reply(400, {"code": 40010000, "message": "expected {count: int >= 0}"})
        self._stream.duplicate_next_fills(count)
        return json_reply(200, {"count": count})


def _field(request: Request, name: str) -> object:
    """A field of the JSON object body; None when absent or the body is not a JSON object."""
    try:
        document = _json_body(request)
    except ValueError:
        return None
    return document.get(name) if isinstance(document, dict) else None
