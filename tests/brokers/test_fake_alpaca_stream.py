"""The fake Alpaca trading websocket, driven by alpaca-py's real TradingStream and TradingClient.

Every wait is on a queue or a server counter with a generous timeout; the assertions are on
what arrived, never on how long it took.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
import requests
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce, TradeEvent
from alpaca.trading.models import TradeUpdate
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest
from alpaca.trading.stream import TradingStream
from structlog.testing import capture_logs
from support import T0, FixedClock
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import CloseCode
from websockets.sync.client import connect

from rebalance_stream.brokers.fake_alpaca import (
    ApiError,
    Delayed,
    Engine,
    FakeAlpacaConfig,
    FakeAlpacaServer,
    OrderEvent,
    Partial,
    Quote,
    Reject,
    StreamCounters,
    VenueAccount,
)
from rebalance_stream.brokers.fake_alpaca.model import OrderTicket

KEY_ID = "stream-key-id"
SECRET = "stream-secret-never-logged"
WAIT_S = 10.0

ACCOUNT = VenueAccount(
    cash=Decimal("10000.00"),
    positions={"SPY": Decimal("10")},
    quotes={
        "SPY": Quote(Decimal("499.99"), Decimal("500.01")),
        "GLD": Quote(Decimal("190.00"), Decimal("190.10")),
        "ARKK": Quote(Decimal("40.00"), Decimal("40.00")),
        "SLOW": Quote(Decimal("100.00"), Decimal("100.00")),
        "HALT": Quote(Decimal("10.00"), Decimal("10.00")),
    },
    fractionable=frozenset({"SPY"}),
    fills={
        "ARKK": Partial(Decimal("0.5")),
        "SLOW": Delayed(500),
        "HALT": Reject("trading halted"),
    },
)


@dataclass
class StreamRun:
    """A TradingStream running on its own thread, and the updates its handler received."""

    stream: TradingStream
    updates: queue.Queue[Any]

    def next(self) -> Any:
        return self.updates.get(timeout=WAIT_S)

    def take(self, count: int) -> list[Any]:
        return [self.next() for _ in range(count)]


@contextmanager
def trading_stream(
    server: FakeAlpacaServer, *, secret: str = SECRET, raw_data: bool = False
) -> Iterator[StreamRun]:
    stream = TradingStream(KEY_ID, secret, raw_data=raw_data, url_override=server.stream_url)
    stream._reconnect_min_backoff = 0.05
    stream._reconnect_max_backoff = 0.2
    updates: queue.Queue[Any] = queue.Queue()

    async def on_update(update: Any) -> None:
        updates.put(update)

    stream.subscribe_trade_updates(on_update)
    thread = threading.Thread(target=stream.run, name="trading-stream", daemon=True)
    thread.start()
    try:
        yield StreamRun(stream, updates)
    finally:
        if stream._loop is not None:
            stream.stop()
        server.drop_stream_connections()  # the client sees the stop now, not after its 5 s recv
        thread.join(timeout=WAIT_S)


def subscribed(server: FakeAlpacaServer, count: int) -> bool:
    return server.wait_for_stream(lambda counters: counters.subscriptions >= count, WAIT_S)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def server(clock: FixedClock) -> Iterator[FakeAlpacaServer]:
    config = FakeAlpacaConfig(account=ACCOUNT, api_key_id=KEY_ID, secret_key=SECRET, clock=clock)
    with FakeAlpacaServer(config) as fake:
        yield fake


@pytest.fixture
def client(server: FakeAlpacaServer) -> Any:
    return TradingClient(KEY_ID, SECRET, url_override=server.base_url)


@pytest.fixture
def stream(server: FakeAlpacaServer) -> Iterator[StreamRun]:
    with trading_stream(server) as run:
        assert subscribed(server, 1)
        yield run


def market(symbol: str, qty: str, cid: str, side: OrderSide = OrderSide.BUY) -> Any:
    return MarketOrderRequest(
        symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.DAY, client_order_id=cid
    )


def limit(symbol: str, qty: str, price: str, cid: str) -> Any:
    return LimitOrderRequest(
        symbol=symbol,
        qty=qty,
        side=OrderSide.BUY,
        time_in_force=TimeInForce.DAY,
        limit_price=price,
        client_order_id=cid,
    )


def events(updates: list[Any]) -> list[tuple[str, str]]:
    return [(update.event, update.order.client_order_id) for update in updates]


def admin(server: FakeAlpacaServer, method: str, path: str, body: object = None) -> Any:
    headers = {"APCA-API-KEY-ID": KEY_ID, "APCA-API-SECRET-KEY": SECRET}
    return requests.request(method, server.base_url + path, json=body, headers=headers, timeout=5)


def message(action: str, **data: object) -> str:
    return json.dumps({"action": action, "data": data})


# -- events -----------------------------------------------------------------------------------


def test_market_order_streams_new_then_fill_with_the_executions_qty_price_and_position(
    server: FakeAlpacaServer, client: Any, stream: StreamRun
) -> None:
    order = client.submit_order(market("SPY", "2", "m-1"))
    new, fill = stream.take(2)
    stored = client.get_order_by_id(order.id)

    assert (new.event, new.order.id, new.order.status) == (TradeEvent.NEW, order.id, "new")
    assert (new.execution_id, new.price, new.qty, new.position_qty) == (None, None, None, None)
    assert (new.order.filled_qty, new.timestamp) == ("0", T0)
    assert (fill.event, fill.order.status, fill.order.filled_qty) == (
        TradeEvent.FILL,
        "filled",
        "2",
    )
    assert (fill.price, fill.qty, fill.position_qty) == (500.01, 2.0, 12.0)
    assert isinstance(fill.execution_id, UUID)
    assert fill.execution_id.version == 4
    assert fill.order == stored
    assert fill.timestamp == stored.filled_at == T0 + timedelta(microseconds=1)
    assert server.stream_counters().trade_updates_sent == 2


def test_raw_messages_carry_alpacas_fields_as_strings_and_the_rest_order_json(
    server: FakeAlpacaServer, client: Any
) -> None:
    with trading_stream(server, raw_data=True) as raw:
        assert subscribed(server, 1)
        order = client.submit_order(market("SPY", "2", "raw-1"))
        new, fill = raw.take(2)
    stored = admin(server, "GET", f"/v2/orders/{order.id}")  # admin headers authorize /v2 too

    assert (new["stream"], sorted(new["data"])) == (
        "trade_updates",
        ["event", "order", "timestamp"],
    )
    assert new["data"]["order"]["status"] == "new"
    data = fill["data"]
    assert sorted(data) == [
        "event",
        "execution_id",
        "order",
        "position_qty",
        "price",
        "qty",
        "timestamp",
    ]
    assert (data["event"], data["price"], data["qty"], data["position_qty"]) == (
        "fill",
        "500.01",
        "2",
        "12",
    )
    assert data["order"] == stored.json()
    assert data["timestamp"] == stored.json()["filled_at"]
    assert UUID(data["execution_id"]).version == 4


def test_every_event_kind_parses_as_alpaca_pys_trade_update(
    server: FakeAlpacaServer, client: Any
) -> None:
    with trading_stream(server, raw_data=True) as raw:
        assert subscribed(server, 1)
        client.submit_order(market("SPY", "1", "filled"))
        client.submit_order(market("ARKK", "3", "partial"))
        resting = client.submit_order(limit("GLD", "1", "150", "resting"))
        client.cancel_order_by_id(resting.id)
        client.submit_order(market("HALT", "1", "rejected"))
        server.set_market_open(False)
        client.submit_order(market("SPY", "1", "after-hours"))
        server.set_market_open(True)
        messages = raw.take(10)

    updates = [TradeUpdate(**m["data"]) for m in messages]
    assert events(updates) == [
        (TradeEvent.NEW, "filled"),
        (TradeEvent.FILL, "filled"),
        (TradeEvent.NEW, "partial"),
        (TradeEvent.PARTIAL_FILL, "partial"),
        (TradeEvent.CANCELED, "partial"),
        (TradeEvent.NEW, "resting"),
        (TradeEvent.CANCELED, "resting"),
        (TradeEvent.REJECTED, "rejected"),
        (TradeEvent.ACCEPTED, "after-hours"),
        (TradeEvent.FILL, "after-hours"),
    ]
    assert updates[7].order.status == "rejected"
    assert updates[8].order.status == "accepted"


def test_partial_fill_streams_partial_fill_then_canceled_for_the_rest(
    client: Any, stream: StreamRun
) -> None:
    order = client.submit_order(market("ARKK", "3", "p-1"))
    new, partial, canceled = stream.take(3)
    stored = client.get_order_by_id(order.id)

    assert [new.event, partial.event, canceled.event] == ["new", "partial_fill", "canceled"]
    assert (partial.price, partial.qty, partial.position_qty) == (40.0, 1.0, 1.0)
    assert (partial.order.status, partial.order.filled_qty) == ("partially_filled", "1")
    assert partial.execution_id is not None
    assert partial.execution_id.version == 4
    assert (canceled.order.status, canceled.order.filled_qty) == ("canceled", "1")
    assert (canceled.execution_id, canceled.qty) == (None, None)
    assert canceled.order == stored
    assert partial.timestamp == canceled.timestamp == stored.canceled_at


def test_delayed_order_is_filled_by_the_ticker_with_no_request_after_submit(
    server: FakeAlpacaServer, client: Any, stream: StreamRun, clock: FixedClock
) -> None:
    order = client.submit_order(market("SLOW", "3", "d-1"))
    new = stream.next()
    counts_after_submit = server.request_counts()
    clock.advance(1)
    fill = stream.next()

    assert (order.status, new.event, new.order.id) == ("new", "new", order.id)
    assert (fill.event, fill.order.id, fill.order.status) == ("fill", order.id, "filled")
    assert (fill.price, fill.qty, fill.position_qty) == (100.0, 3.0, 3.0)
    assert fill.timestamp == T0 + timedelta(seconds=1)
    assert server.request_counts() == counts_after_submit == {("POST", "/v2/orders"): 1}


def test_cancel_of_a_resting_limit_order_streams_canceled(client: Any, stream: StreamRun) -> None:
    order = client.submit_order(limit("GLD", "1", "150", "l-1"))
    new = stream.next()
    client.cancel_order_by_id(order.id)
    canceled = stream.next()
    stored = client.get_order_by_id(order.id)

    assert (new.event, new.order.status, new.order.limit_price) == ("new", "new", "150")
    assert (canceled.event, canceled.order.status, canceled.order.filled_qty) == (
        "canceled",
        "canceled",
        "0",
    )
    assert canceled.order == stored
    assert canceled.timestamp == stored.canceled_at


def test_engine_listener_gets_each_change_in_order_before_the_call_returns_outside_the_lock(
    clock: FixedClock,
) -> None:
    engine = Engine(ACCOUNT, clock)
    seen: list[tuple[str, str]] = []
    other_thread_done: list[bool] = []

    def listener(event: OrderEvent) -> None:
        seen.append((event.event, event.order.client_order_id))
        reader = threading.Thread(target=lambda: other_thread_done.append(bool(engine.account())))
        reader.start()
        reader.join(timeout=WAIT_S)  # would block were the listener called under the lock

    engine.add_listener(listener)
    for cid, symbol in (("a", "ARKK"), ("b", "HALT")):
        ticket = OrderTicket(
            symbol=symbol,
            side="buy",
            type="market",
            time_in_force="day",
            raw_body="{}",
            qty=Decimal(3),
            client_order_id=cid,
        )
        engine.submit(ticket)

    assert seen == [
        ("new", "a"),
        ("partial_fill", "a"),
        ("canceled", "a"),
        ("rejected", "b"),
    ]
    assert other_thread_done == [True] * 4


def test_a_failing_listener_is_skipped_and_the_order_stands(clock: FixedClock) -> None:
    engine = Engine(ACCOUNT, clock)
    seen: list[str] = []

    def failing(event: OrderEvent) -> None:
        raise RuntimeError("listener bug")

    engine.add_listener(failing)
    engine.add_listener(lambda event: seen.append(event.event))
    ticket = OrderTicket(
        symbol="SPY", side="buy", type="market", time_in_force="day", raw_body="{}", qty=Decimal(1)
    )
    with capture_logs() as logs:
        order = engine.submit(ticket)

    assert not isinstance(order, ApiError)
    assert order.status == "filled"
    assert seen == ["new", "fill"]
    assert [entry["event"] for entry in logs] == ["fake_alpaca_listener_failed"] * 2


# -- authorization and protocol ---------------------------------------------------------------


def test_wrong_secret_is_answered_unauthorized_then_closed_and_never_logged(
    server: FakeAlpacaServer,
) -> None:
    with capture_logs() as logs, connect(server.stream_url, open_timeout=WAIT_S) as ws:
        ws.send(message("authenticate", key_id=KEY_ID, secret_key="wrong-secret-not-logged"))
        reply = json.loads(ws.recv(timeout=WAIT_S))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=WAIT_S)

    assert reply == {
        "stream": "authorization",
        "data": {"action": "authenticate", "status": "unauthorized"},
    }
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CloseCode.POLICY_VIOLATION
    assert server.stream_counters() == StreamCounters(0, 0, 0, 0, 1)
    assert "wrong-secret-not-logged" not in repr(logs)
    assert SECRET not in repr(logs)


def test_trading_stream_with_a_wrong_secret_is_refused_on_every_retry(
    server: FakeAlpacaServer,
) -> None:
    with trading_stream(server, secret="wrong-secret"):
        assert server.wait_for_stream(lambda counters: counters.refused >= 2, WAIT_S)

    assert server.stream_counters().connections == 0


def test_raw_protocol_answers_in_binary_frames_and_acknowledges_only_trade_updates(
    server: FakeAlpacaServer, client: Any
) -> None:
    with connect(server.stream_url, open_timeout=WAIT_S) as ws:
        ws.send(message("authenticate", key_id=KEY_ID, secret_key=SECRET))
        authorized = ws.recv(timeout=WAIT_S)
        ws.send(message("listen", streams=["trade_updates", "account_updates"]))
        listening = ws.recv(timeout=WAIT_S)
        client.submit_order(market("SPY", "1", "raw-protocol"))
        new = ws.recv(timeout=WAIT_S)

    assert isinstance(authorized, bytes)
    assert isinstance(new, bytes)
    assert json.loads(authorized) == {
        "stream": "authorization",
        "data": {"action": "authenticate", "status": "authorized"},
    }
    assert json.loads(listening) == {"stream": "listening", "data": {"streams": ["trade_updates"]}}
    assert json.loads(new)["data"]["event"] == "new"


# -- faults -----------------------------------------------------------------------------------


def test_duplicate_next_fills_sends_the_same_execution_twice_then_stops(
    server: FakeAlpacaServer, client: Any, stream: StreamRun
) -> None:
    server.duplicate_next_fills(1)
    for cid in ("a", "b", "c"):
        client.submit_order(market("SPY", "1", cid))
    updates = stream.take(7)

    assert events(updates) == [
        ("new", "a"),
        ("fill", "a"),
        ("fill", "a"),
        ("new", "b"),
        ("fill", "b"),
        ("new", "c"),
        ("fill", "c"),
    ]
    assert updates[1] == updates[2]
    assert len({updates[1].execution_id, updates[4].execution_id, updates[6].execution_id}) == 3
    assert server.stream_counters().trade_updates_sent == 7


def test_dropped_connection_is_reconnected_and_gets_later_events(
    server: FakeAlpacaServer, client: Any, stream: StreamRun
) -> None:
    client.submit_order(market("SPY", "1", "before"))
    before = stream.take(2)
    dropped = server.drop_stream_connections()
    assert subscribed(server, 2)
    client.submit_order(market("SPY", "1", "after"))
    after = stream.take(2)

    assert dropped == 1
    assert events(before + after) == [
        ("new", "before"),
        ("fill", "before"),
        ("new", "after"),
        ("fill", "after"),
    ]
    assert server.stream_counters() == StreamCounters(2, 2, 1, 4, 0)


def test_events_during_an_outage_are_lost_and_later_ones_arrive(
    server: FakeAlpacaServer, client: Any, stream: StreamRun
) -> None:
    client.submit_order(market("SPY", "1", "before"))
    before = stream.take(2)
    server.stream_outage(True)
    during = client.submit_order(market("SPY", "1", "during"))
    assert server.wait_for_stream(lambda counters: counters.refused >= 1, WAIT_S)
    server.stream_outage(False)
    assert subscribed(server, 2)
    client.submit_order(market("SPY", "1", "after"))
    after = stream.take(2)

    assert during.status == "filled"
    assert events(before + after) == [
        ("new", "before"),
        ("fill", "before"),
        ("new", "after"),
        ("fill", "after"),
    ]
    counters = server.stream_counters()
    assert (counters.connections, counters.subscriptions, counters.trade_updates_sent) == (2, 2, 4)


def test_admin_endpoints_drive_the_stream_faults_and_report_its_counters(
    server: FakeAlpacaServer, client: Any, stream: StreamRun
) -> None:
    armed = admin(server, "POST", "/_fake/stream/duplicate_fills", {"count": 1})
    client.submit_order(market("SPY", "1", "dup"))
    updates = stream.take(3)
    dropped = admin(server, "POST", "/_fake/stream/drop")
    assert subscribed(server, 2)
    outage_on = admin(server, "POST", "/_fake/stream/outage", {"on": True})
    assert server.wait_for_stream(lambda counters: counters.refused >= 1, WAIT_S)
    outage_off = admin(server, "POST", "/_fake/stream/outage", {"on": False})
    assert subscribed(server, 3)
    counters = admin(server, "GET", "/_fake/stream").json()

    assert (armed.status_code, armed.json()) == (200, {"count": 1})
    assert events(updates) == [("new", "dup"), ("fill", "dup"), ("fill", "dup")]
    assert (dropped.status_code, dropped.json()) == (200, {"dropped": 1})
    assert (outage_on.json(), outage_off.json()) == ({"on": True}, {"on": False})
    assert {k: counters[k] for k in ("connections", "subscriptions", "trade_updates_sent")} == {
        "connections": 3,
        "subscriptions": 3,
        "trade_updates_sent": 3,
    }
    assert admin(server, "GET", "/_fake/stats").json()["stream"] == counters
    assert admin(server, "POST", "/_fake/stream/outage", {"on": "yes"}).status_code == 400
    assert admin(server, "POST", "/_fake/stream/duplicate_fills", {"count": -1}).status_code == 400
    assert requests.post(server.base_url + "/_fake/stream/drop", timeout=5).status_code == 401


def test_stream_url_names_the_stream_path_and_other_paths_are_not_found(
    server: FakeAlpacaServer,
) -> None:
    assert server.stream_url.startswith("ws://127.0.0.1:")
    assert server.stream_url.endswith("/stream")
    with pytest.raises(InvalidStatus) as refused:
        connect(server.stream_url.replace("/stream", "/elsewhere"), open_timeout=WAIT_S)

    assert refused.value.response.status_code == 404
