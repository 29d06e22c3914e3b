"""The fake Alpaca server, driven by the real alpaca-py clients over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import (
    StockLatestQuoteRequest,
    StockLatestTradeRequest,
    StockSnapshotRequest,
)
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest, MarketOrderRequest
from support import FixedClock

from rebalance_stream.brokers.fake_alpaca import (
    Delayed,
    FakeAlpacaConfig,
    FakeAlpacaServer,
    FaultKind,
    Partial,
    Quote,
    Reject,
    VenueAccount,
    serve,
)
from rebalance_stream.brokers.paper_account import PaperAccount

KEY_ID = "fake-key-id"
SECRET = "fake-secret-never-logged"

ACCOUNT = VenueAccount(
    cash=Decimal("10000.00"),
    positions={"SPY": Decimal("10"), "TQQQ": Decimal("50")},
    quotes={
        "SPY": Quote(Decimal("499.99"), Decimal("500.01")),
        "TQQQ": Quote(Decimal("79.98"), Decimal("80.02")),
        "GLD": Quote(Decimal("190.00"), Decimal("190.10")),
        "ARKK": Quote(Decimal("40.00"), Decimal("40.00")),
        "SLOW": Quote(Decimal("100.00"), Decimal("100.00")),
    },
    fractionable=frozenset({"SPY", "GLD"}),
    fills={"ARKK": Partial(Decimal("0.5")), "SLOW": Delayed(500)},
)


def trading_client(server: FakeAlpacaServer, secret: str = SECRET, retries: int = 0) -> Any:
    client = TradingClient(KEY_ID, secret, url_override=server.base_url)
    # alpaca-py retries 429 and 504 itself, sleeping 3 s between tries, and its constructor
    # ignores retry_attempts=0; the attributes are the only way to make it fail fast.
    client._retry = retries
    client._retry_wait = 0
    return client


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
    return trading_client(server)


def market(symbol: str, qty: str, side: OrderSide = OrderSide.BUY, cid: str = "c-1") -> Any:
    return MarketOrderRequest(
        symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.DAY, client_order_id=cid
    )


def admin(server: FakeAlpacaServer, method: str, path: str, body: object = None) -> Any:
    headers = {"APCA-API-KEY-ID": KEY_ID, "APCA-API-SECRET-KEY": SECRET}
    return requests.request(method, server.base_url + path, json=body, headers=headers, timeout=5)


def api_error(call: Any, *args: Any) -> APIError:
    with pytest.raises(APIError) as caught:
        call(*args)
    return caught.value


# -- read endpoints ---------------------------------------------------------------------------


def test_get_account_fresh_venue_reports_cash_and_equity(client: Any) -> None:
    account = client.get_account()

    assert account.cash == "10000"
    assert account.buying_power == "10000"
    assert account.long_market_value == "9000"  # 10 * 500.00 + 50 * 80.00
    assert account.equity == "19000"
    assert account.status == "ACTIVE"


def test_get_clock_open_market_parses_with_next_close_later(client: Any) -> None:
    clock = client.get_clock()

    assert clock.is_open is True
    assert clock.next_close > clock.timestamp


def test_get_asset_by_symbol_and_by_id_reports_fractionable(client: Any) -> None:
    asset = client.get_asset("SPY")

    assert (asset.symbol, asset.fractionable, asset.tradable) == ("SPY", True, True)
    assert client.get_asset(asset.id).symbol == "SPY"
    assert client.get_asset("TQQQ").fractionable is False


def test_get_asset_unknown_symbol_answers_404(client: Any) -> None:
    error = api_error(client.get_asset, "NOPE")

    assert (error.status_code, error.code, error.message) == (404, 40410000, "asset not found")


def test_get_positions_held_symbols_parse_with_cost_basis(client: Any) -> None:
    positions = {p.symbol: p for p in client.get_all_positions()}
    spy = client.get_open_position("SPY")

    assert set(positions) == {"SPY", "TQQQ"}
    assert (spy.qty, spy.qty_available, spy.side) == ("10", "10", "long")
    assert (spy.avg_entry_price, spy.cost_basis, spy.current_price) == ("500", "5000", "500")


def test_get_open_position_none_held_answers_alpacas_404(client: Any) -> None:
    error = api_error(client.get_open_position, "GLD")

    assert error.status_code == 404
    assert json.loads(str(error)) == {"code": 40410000, "message": "position does not exist"}


def test_data_client_latest_quote_and_trade_use_the_same_base_url(
    server: FakeAlpacaServer,
) -> None:
    data = StockHistoricalDataClient(KEY_ID, SECRET, url_override=server.base_url)
    data._retry = 0

    quotes = data.get_stock_latest_quote(
        StockLatestQuoteRequest(symbol_or_symbols=["SPY", "NOPE"], feed="iex")
    )
    trades = data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="GLD"))

    assert set(quotes) == {"SPY"}
    assert (quotes["SPY"].bid_price, quotes["SPY"].ask_price) == (499.99, 500.01)
    assert trades["GLD"].price == 190.05
    assert server.request_counts()[("GET", "/v2/stocks/quotes/latest")] == 1


def test_data_client_reads_the_fakes_snapshots_as_alpacas(server: FakeAlpacaServer) -> None:
    """alpaca-py's own parsing of the multi-symbol snapshots: keyed by symbol at the top."""
    data = StockHistoricalDataClient(KEY_ID, SECRET, url_override=server.base_url)
    data._retry = 0

    snapshots = data.get_stock_snapshot(
        StockSnapshotRequest(symbol_or_symbols=["SPY", "GLD", "NOPE"], feed="iex")
    )

    assert set(snapshots) == {"SPY", "GLD"}
    spy, gld = snapshots["SPY"], snapshots["GLD"]
    assert spy.latest_quote is not None
    assert spy.latest_trade is not None
    assert gld.latest_trade is not None
    # alpaca-py's models hold floats: compared as the decimals they print as.
    quote = (spy.latest_quote.bid_price, spy.latest_quote.ask_price)
    assert [Decimal(repr(side)) for side in quote] == [Decimal("499.99"), Decimal("500.01")]
    assert Decimal(repr(spy.latest_trade.price)) == Decimal("500.0")
    assert Decimal(repr(gld.latest_trade.price)) == Decimal("190.05")
    assert server.request_counts()[("GET", "/v2/stocks/snapshots")] == 1


# -- orders -----------------------------------------------------------------------------------


def test_submit_market_buy_fills_at_ask_and_records_alpaca_pys_raw_body(
    server: FakeAlpacaServer, client: Any
) -> None:
    order = client.submit_order(market("SPY", "1.5"))

    assert (order.status, order.qty, order.filled_qty) == (OrderStatus.FILLED, "1.5", "1.5")
    assert order.filled_avg_price == "500.01"
    assert client.get_account().cash == "9249.985"
    # alpaca-py turns qty into a float before it writes JSON: "1.5" arrives as the number 1.5.
    assert server.order_requests() == [
        '{"symbol": "SPY", "qty": 1.5, "side": "buy", "type": "market", '
        '"time_in_force": "day", "client_order_id": "c-1"}'
    ]
    stored = server.engine.order(str(order.id))
    assert stored is not None
    assert stored.raw_body == server.order_requests()[0]


def test_an_order_post_cut_off_mid_body_is_not_handled(
    server: FakeAlpacaServer, client: Any
) -> None:
    """A client killed while it sends: the venue never sees a whole order, so none is made."""
    body = b'{"symbol": "SPY", "qty": 1, "side": "buy", "type": "market"}'
    host, port = urlsplit(server.base_url).hostname, urlsplit(server.base_url).port
    with socket.create_connection((host, port)) as connection:
        head = (
            f"POST /v2/orders HTTP/1.1\r\nHost: {host}\r\nAPCA-API-KEY-ID: {KEY_ID}\r\n"
            f"APCA-API-SECRET-KEY: {SECRET}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        connection.sendall(head.encode() + body[:10])
        connection.shutdown(socket.SHUT_WR)
        assert connection.recv(1024) == b""  # closed, no reply

    assert server.order_posts() == []
    client.submit_order(market("SPY", "1"))
    assert [status for _, status in server.order_posts()] == [200]


def test_submit_order_request_qty_past_float_precision_arrives_rounded(
    server: FakeAlpacaServer, client: Any
) -> None:
    server.set_quote("GLD", "0.01", "0.01")

    order = client.submit_order(market("GLD", "123456.123456789"))

    assert '"qty": 123456.123456789,' in server.order_requests()[0]
    assert order.qty == "123456.123456789"
    # 17 significant digits do not survive the float: the last digit is rounded away.
    api_error(client.submit_order, market("GLD", "12345678.123456789", cid="c-2"))
    assert '"qty": 12345678.12345679,' in server.order_requests()[1]


def test_raw_post_with_string_amounts_keeps_the_exact_decimal(
    server: FakeAlpacaServer, client: Any
) -> None:
    body = {"symbol": "SPY", "qty": "0.123456789", "side": "buy", "type": "market"}

    raw = client.post("/orders", {**body, "time_in_force": "day", "client_order_id": "s-1"})

    assert (raw["qty"], raw["filled_qty"], raw["status"]) == (
        "0.123456789",
        "0.123456789",
        "filled",
    )
    assert '"qty": "0.123456789"' in server.order_requests()[0]


def test_sell_fills_at_bid_and_shrinks_the_position_at_the_same_avg_entry(client: Any) -> None:
    order = client.submit_order(market("TQQQ", "20", OrderSide.SELL))

    position = client.get_open_position("TQQQ")
    assert (order.status, order.filled_avg_price) == (OrderStatus.FILLED, "79.98")
    assert (position.qty, position.cost_basis, position.avg_entry_price) == ("30", "2400", "80")
    assert client.get_account().cash == "11599.6"

    client.submit_order(market("TQQQ", "30", OrderSide.SELL, cid="c-2"))

    assert api_error(client.get_open_position, "TQQQ").status_code == 404
    assert [p.symbol for p in client.get_all_positions()] == ["SPY"]


def test_notional_buy_fills_the_qty_the_notional_buys_rounded_down(
    server: FakeAlpacaServer, client: Any
) -> None:
    request = MarketOrderRequest(
        symbol="SPY", notional="1000", side="buy", time_in_force="day", client_order_id="n"
    )

    order = client.submit_order(request)

    assert '"notional": 1000.0,' in server.order_requests()[0]
    assert (order.notional, order.qty, order.filled_qty) == ("1000", None, "1.99996")
    assert client.get_account().cash == "9000.0000004"  # 10000 - 1.99996 * 500.01


def test_get_order_by_id_and_by_client_order_id_find_the_same_order(client: Any) -> None:
    submitted = client.submit_order(market("SPY", "1", cid="plan-7:SPY:BUY"))

    by_id = client.get_order_by_id(submitted.id)
    by_client_id = client.get_order_by_client_id("plan-7:SPY:BUY")

    assert by_id.id == by_client_id.id == submitted.id
    assert by_client_id.asset_id == UUID(client.get_asset("SPY").id.hex)


def test_get_order_by_client_order_id_unknown_answers_404(client: Any) -> None:
    error = api_error(client.get_order_by_client_id, "never-sent")

    assert (error.status_code, error.message) == (404, "order not found")


def test_submit_duplicate_client_order_id_answers_422(client: Any) -> None:
    client.submit_order(market("SPY", "1", cid="dup"))

    error = api_error(client.submit_order, market("SPY", "1", cid="dup"))

    assert error.status_code == 422
    assert json.loads(str(error)) == {"code": 40010001, "message": "client_order_id must be unique"}


def test_get_orders_paging_by_until_and_after_returns_each_order_once(client: Any) -> None:
    ids = [client.submit_order(market("SPY", "1", cid=f"p-{n}")).id for n in range(5)]
    newest_first: list[Order] = []
    until = None
    while page := client.get_orders(
        GetOrdersRequest(status=QueryOrderStatus.ALL, limit=2, until=until)
    ):
        newest_first += page
        until = page[-1].submitted_at
    oldest_first: list[Order] = []
    after = None
    while page := client.get_orders(
        GetOrdersRequest(status=QueryOrderStatus.ALL, limit=2, after=after, direction="asc")
    ):
        oldest_first += page
        after = page[-1].submitted_at

    assert [o.id for o in newest_first] == ids[::-1]
    assert [o.id for o in oldest_first] == ids


def test_get_orders_status_and_symbols_filter_open_from_closed(client: Any) -> None:
    filled = client.submit_order(market("SPY", "1"))
    resting = client.submit_order(
        LimitOrderRequest(
            symbol="GLD",
            qty=1,
            side="buy",
            time_in_force="day",
            limit_price=180,
            client_order_id="l",
        )
    )

    open_orders = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    closed = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED, symbols=["SPY"]))
    none = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, symbols=["TQQQ"]))

    assert [o.id for o in open_orders] == [resting.id]
    assert [o.id for o in closed] == [filled.id]
    assert none == []


def test_limit_order_not_marketable_rests_until_the_quote_moves(
    server: FakeAlpacaServer, client: Any
) -> None:
    order = client.submit_order(
        LimitOrderRequest(symbol="GLD", qty=2, side="buy", time_in_force="day", limit_price="189.5")
    )
    assert (order.status, order.filled_qty) == (OrderStatus.NEW, "0")
    assert client.get_account().buying_power == "9621"  # 10000 - 2 * 189.5 reserved

    server.set_quote("GLD", "189.00", "189.40")

    filled = client.get_order_by_id(order.id)
    assert (filled.status, filled.filled_avg_price) == (OrderStatus.FILLED, "189.4")


def test_cancel_open_order_answers_204_then_422_with_alpacas_message(client: Any) -> None:
    order = client.submit_order(
        LimitOrderRequest(symbol="GLD", qty=1, side="buy", time_in_force="day", limit_price=1)
    )

    assert client.cancel_order_by_id(order.id) is None
    assert client.get_order_by_id(order.id).status == OrderStatus.CANCELED
    error = api_error(client.cancel_order_by_id, order.id)
    assert (error.status_code, error.code) == (422, 42210000)
    assert error.message == 'order is already in "canceled" state'


def test_cancel_filled_order_answers_422(client: Any) -> None:
    order = client.submit_order(market("SPY", "1"))

    error = api_error(client.cancel_order_by_id, order.id)

    assert (error.status_code, error.message) == (422, 'order is already in "filled" state')


# -- fill behaviours and refusals ---------------------------------------------------------------


def test_partial_fill_behaviour_fills_half_and_cancels_the_rest(client: Any) -> None:
    order = client.submit_order(market("ARKK", "10"))

    assert (order.status, order.filled_qty, order.filled_avg_price) == (
        OrderStatus.CANCELED,
        "5",
        "40",
    )
    assert client.get_account().cash == "9800"


def test_delayed_fill_behaviour_fills_once_the_clock_passes_the_delay(
    client: Any, clock: FixedClock
) -> None:
    order = client.submit_order(market("SLOW", "3"))
    assert order.status == OrderStatus.NEW

    clock.advance(0.5)

    assert client.get_order_by_id(order.id).status == OrderStatus.FILLED


def test_reject_behaviour_returns_a_rejected_order(server: FakeAlpacaServer, client: Any) -> None:
    server.set_fill("GLD", Reject("venue says no"))

    order = client.submit_order(market("GLD", "1"))

    assert (order.status, order.filled_qty) == (OrderStatus.REJECTED, "0")
    assert order.failed_at is not None
    stored = server.engine.order(str(order.id))
    assert stored is not None
    assert stored.reject_reason == "venue says no"


def test_sync_reject_behaviour_answers_403_and_places_nothing(
    server: FakeAlpacaServer, client: Any
) -> None:
    server.set_fill("GLD", Reject("halted", sync=True))

    error = api_error(client.submit_order, market("GLD", "1"))

    assert (error.status_code, error.code, error.message) == (403, 40310000, "halted")
    assert client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL)) == []


def test_buy_beyond_buying_power_answers_403_insufficient_buying_power(client: Any) -> None:
    error = api_error(client.submit_order, market("SPY", "20"))

    assert error.status_code == 403
    assert json.loads(str(error)) == {
        "buying_power": "10000",
        "code": 40310000,
        "cost_basis": "10000.2",
        "message": "insufficient buying power",
    }


def test_sell_more_than_held_answers_403_insufficient_qty(client: Any) -> None:
    error = api_error(client.submit_order, market("TQQQ", "51", OrderSide.SELL))

    assert (error.status_code, error.code) == (403, 40310000)
    assert error.message == "insufficient qty available for order (requested: 51, available: 50)"


def test_fractional_qty_on_non_fractionable_asset_answers_422(client: Any) -> None:
    error = api_error(client.submit_order, market("TQQQ", "0.5"))

    assert (error.status_code, error.code) == (422, 42210000)
    assert error.message == "requested asset is not fractionable"


def test_fractional_qty_good_till_canceled_answers_422(client: Any) -> None:
    request = MarketOrderRequest(symbol="SPY", qty="0.5", side="buy", time_in_force="gtc")

    error = api_error(client.submit_order, request)

    assert (error.status_code, error.message) == (422, "fractional orders must be DAY orders")


def test_opposite_order_while_one_rests_answers_403_wash_trade(client: Any) -> None:
    client.submit_order(
        LimitOrderRequest(symbol="SPY", qty=1, side="sell", time_in_force="day", limit_price=600)
    )

    error = api_error(client.submit_order, market("SPY", "1"))

    assert (error.status_code, error.code) == (403, 40310000)
    assert error.message == "potential wash trade detected. use complex orders"


def test_opposite_limits_that_do_not_cross_are_both_accepted(client: Any) -> None:
    def limit(side: str, price: int) -> Any:
        return LimitOrderRequest(
            symbol="SPY", qty=1, side=side, time_in_force="day", limit_price=price
        )

    client.submit_order(limit("sell", 600))
    resting = client.submit_order(limit("buy", 450))

    error = api_error(client.submit_order, limit("buy", 650))

    assert resting.status == OrderStatus.NEW
    assert (error.status_code, error.code) == (403, 40310000)


def test_market_closed_order_rests_accepted_and_fills_at_the_open(
    server: FakeAlpacaServer, client: Any
) -> None:
    server.set_market_open(False)
    order = client.submit_order(market("SPY", "1"))
    assert order.status == OrderStatus.ACCEPTED

    server.set_market_open(True)

    assert client.get_order_by_id(order.id).status == OrderStatus.FILLED


# -- auth, rate limit, counters -----------------------------------------------------------------


def test_wrong_secret_answers_401(server: FakeAlpacaServer) -> None:
    error = api_error(trading_client(server, secret="wrong").get_account)

    assert error.status_code == 401
    assert SECRET not in repr(server.config)


def test_missing_key_headers_answer_401_with_rate_headers(server: FakeAlpacaServer) -> None:
    response = requests.get(server.base_url + "/v2/account", timeout=5)

    assert response.status_code == 401
    assert response.json() == {"code": 40110000, "message": "request is not authorized"}
    assert response.headers["X-Ratelimit-Limit"] == "200"


def test_every_answer_carries_rate_headers_counting_down(server: FakeAlpacaServer) -> None:
    headers = {"APCA-API-KEY-ID": KEY_ID, "APCA-API-SECRET-KEY": SECRET}

    first = requests.get(server.base_url + "/v2/clock", headers=headers, timeout=5)
    second = requests.get(server.base_url + "/v2/orders/nope", headers=headers, timeout=5)

    assert first.headers["X-Ratelimit-Remaining"] == "199"
    assert (second.status_code, second.headers["X-Ratelimit-Remaining"]) == (404, "198")
    reset = int(first.headers["X-Ratelimit-Reset"])
    assert reset == int(FixedClock().now.timestamp()) + 60


def test_rate_limit_exhausted_answers_429(clock: FixedClock) -> None:
    config = FakeAlpacaConfig(
        account=ACCOUNT, api_key_id=KEY_ID, secret_key=SECRET, rate_limit_per_min=2, clock=clock
    )
    with FakeAlpacaServer(config) as server:
        client = trading_client(server)
        client.get_clock()
        client.get_clock()

        error = api_error(client.get_clock)
        clock.advance(60)
        after_window = client.get_clock()

    assert error.status_code == 429
    assert error.response.headers["X-Ratelimit-Remaining"] == "0"
    assert after_window.is_open is True


def test_request_counts_are_per_method_and_path_template(
    server: FakeAlpacaServer, client: Any
) -> None:
    order = client.submit_order(market("SPY", "1"))
    client.get_order_by_id(order.id)
    client.get_order_by_id(order.id)

    assert server.request_counts() == {
        ("POST", "/v2/orders"): 1,
        ("GET", "/v2/orders/{order_id}"): 2,
    }
    stats = admin(server, "GET", "/_fake/stats").json()
    assert {"method": "GET", "path": "/v2/orders/{order_id}", "count": 2} in stats["request_counts"]
    assert stats["order_requests"] == server.order_requests()


# -- faults ---------------------------------------------------------------------------------------


def test_latency_fault_delays_only_the_matching_request(
    server: FakeAlpacaServer, client: Any
) -> None:
    server.inject_fault(FaultKind.LATENCY, method="GET", path="/v2/clock", latency_ms=30)

    started = time.monotonic()
    client.get_clock()
    slow_s = time.monotonic() - started
    started = time.monotonic()
    client.get_clock()
    fast_s = time.monotonic() - started

    assert slow_s >= 0.03
    assert fast_s < slow_s
    assert server.faults.pending() == []


def test_429_fault_answers_with_remaining_zero_and_a_reset(
    server: FakeAlpacaServer, client: Any
) -> None:
    server.inject_fault("http_429", path="/v2/account", reset_in_s=7)

    error = api_error(client.get_account)

    assert error.status_code == 429
    assert error.response.headers["X-Ratelimit-Remaining"] == "0"
    assert error.response.headers["X-Ratelimit-Reset"] == str(int(FixedClock().now.timestamp()) + 7)
    assert client.get_account().cash == "10000"  # count=1: the next request passes


def test_429_fault_is_retried_by_alpaca_py_itself(server: FakeAlpacaServer) -> None:
    server.inject_fault("http_429", path="/v2/account")

    account = trading_client(server, retries=1).get_account()

    assert account.cash == "10000"
    assert server.request_counts()[("GET", "/v2/account")] == 2


def test_500_fault_before_processing_places_no_order(server: FakeAlpacaServer, client: Any) -> None:
    server.inject_fault("http_500", method="POST", path="/v2/orders")

    error = api_error(client.submit_order, market("SPY", "1", cid="five-hundred"))

    assert error.status_code == 500
    assert server.engine.order_by_client_id("five-hundred") is None
    assert len(server.order_requests()) == 1


def test_504_fault_after_accept_places_the_order_and_answers_html(
    server: FakeAlpacaServer, client: Any
) -> None:
    server.inject_fault("http_504_after_accept", method="POST", path="/v2/orders")

    error = api_error(client.submit_order, market("SPY", "1", cid="timed-out"))

    assert error.status_code == 504
    assert "504 Gateway Time-out" in str(error)
    assert client.get_order_by_client_id("timed-out").status == OrderStatus.FILLED


def test_504_after_accept_retried_by_alpaca_py_answers_duplicate_422(
    server: FakeAlpacaServer,
) -> None:
    server.inject_fault("http_504_after_accept", method="POST", path="/v2/orders")

    error = api_error(trading_client(server, retries=1).submit_order, market("SPY", "1"))

    # alpaca-py resent the POST on its own; the venue had the first one, so the caller sees a
    # 422 duplicate instead of the 504.
    assert (error.status_code, error.code) == (422, 40010001)
    assert len(server.order_requests()) == 2


def test_disconnect_after_accept_raises_connection_error_and_the_order_exists(
    server: FakeAlpacaServer, client: Any
) -> None:
    server.inject_fault(FaultKind.DISCONNECT_AFTER_ACCEPT, method="POST", path="/v2/orders")

    with pytest.raises(requests.exceptions.ConnectionError):
        client.submit_order(market("SPY", "1", cid="cut"))

    assert client.get_order_by_client_id("cut").status == OrderStatus.FILLED


def test_disconnect_before_processing_places_no_order(
    server: FakeAlpacaServer, client: Any
) -> None:
    server.inject_fault(FaultKind.DISCONNECT, method="POST", path="/v2/orders")

    with pytest.raises(requests.exceptions.ConnectionError):
        client.submit_order(market("SPY", "1", cid="cut-early"))

    assert server.engine.order_by_client_id("cut-early") is None


def test_fault_count_and_path_pattern_pick_the_next_n_matching_requests(
    server: FakeAlpacaServer, client: Any
) -> None:
    order = client.submit_order(market("SPY", "1"))
    server.inject_fault("http_500", method="GET", path="/v2/orders/*", count=2)

    statuses = []
    for _ in range(3):
        try:
            client.get_order_by_id(order.id)
            statuses.append(200)
        except APIError as exc:
            statuses.append(exc.status_code)
    client.get_clock()

    assert statuses == [500, 500, 200]
    assert server.faults.pending() == []


def test_admin_http_endpoints_script_faults_quotes_fills_and_market(
    server: FakeAlpacaServer, client: Any
) -> None:
    armed = admin(server, "POST", "/_fake/faults", {"kind": "http_500", "path": "/v2/clock"})
    assert armed.json()["armed"][0]["kind"] == "http_500"
    assert api_error(client.get_clock).status_code == 500

    admin(server, "POST", "/_fake/quotes", {"symbol": "GLD", "bid": "200.00", "ask": "200.02"})
    admin(server, "POST", "/_fake/fills", {"symbol": "GLD", "fill": {"partial": "0.5"}})
    order = client.submit_order(market("GLD", "4"))
    assert (order.filled_qty, order.filled_avg_price) == ("2", "200.02")

    admin(server, "POST", "/_fake/faults", [{"kind": "latency", "latency_ms": 1, "count": 3}])
    assert admin(server, "DELETE", "/_fake/faults").status_code == 204
    assert admin(server, "GET", "/_fake/faults").json() == {"armed": []}
    assert admin(server, "POST", "/_fake/market", {"is_open": False}).status_code == 200
    assert client.get_clock().is_open is False
    assert admin(server, "POST", "/_fake/faults", {"kind": "nope"}).status_code == 400
    assert requests.get(server.base_url + "/_fake/stats", timeout=5).status_code == 401


def test_config_from_paper_account_maps_prices_fills_and_market() -> None:
    config = FakeAlpacaConfig.from_paper_account(PaperAccount.sample(), api_key_id="k")

    assert config.account.quotes["SPY"] == Quote(Decimal("500.00"), Decimal("500.00"))
    assert config.account.fills["ARKK"] == Partial(Decimal("0.5"))
    assert config.account.market_open is True
    assert config.api_key_id == "k"


def test_serve_prints_its_url_and_takes_the_key_pair_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "env-key")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "env-secret-not-printed")
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(["--port", "0", "--stream-port", "0"], stop))
    thread.start()
    output = ""
    try:
        deadline = time.monotonic() + 5
        while "listening on" not in output and time.monotonic() < deadline:
            time.sleep(0.005)
            output += capsys.readouterr().out
        match = re.search(r"listening on (http://\S+)", output)
        assert match is not None
        headers = {"APCA-API-KEY-ID": "env-key", "APCA-API-SECRET-KEY": "env-secret-not-printed"}
        response = requests.get(match.group(1) + "/v2/positions", headers=headers, timeout=5)
    finally:
        stop.set()
        thread.join(timeout=5)

    assert {p["symbol"] for p in response.json()} == {"SPY", "QQQ", "TQQQ", "IWM"}
    assert "env-secret-not-printed" not in output + capsys.readouterr().out
