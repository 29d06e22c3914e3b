"""The Alpaca broker: error table, token bucket, exact decimal bodies, and the real alpaca-py
client over HTTP against the fake Alpaca server (no mocks of alpaca-py)."""

from __future__ import annotations

import inspect
import itertools
import json
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderStatus
from alpaca_support import KEY_ID, SECRET, adapter_config, fake_venue_config, started_adapter
from plan_factory import Trade, planned
from pydantic import ValidationError
from structlog.testing import capture_logs

from rebalance_stream.brokers import (
    Broker,
    BrokerError,
    BrokerOrderStatus,
    BrokerUnavailable,
    DuplicateClientOrderId,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
    UnknownAsset,
)
from rebalance_stream.brokers import Quote as BrokerQuote
from rebalance_stream.brokers.alpaca import AlpacaBroker, AlpacaConfig
from rebalance_stream.brokers.alpaca_errors import (
    ApiFailure,
    HttpStatusError,
    Operation,
    Outcome,
    classify,
    describe,
    is_retryable_read,
    to_broker_error,
)
from rebalance_stream.brokers.alpaca_http import GuardedAdapter
from rebalance_stream.brokers.alpaca_wire import (
    STATUS_MAP,
    exact_amount,
    exact_limit_price,
    format_limit_price,
    latest_params,
    order_body,
    parse_account,
    parse_order,
    parse_positions,
    parse_quotes,
    parse_snapshots,
    parse_trade_price,
)
from rebalance_stream.brokers.fake_alpaca import (
    Delayed,
    FakeAlpacaConfig,
    FakeAlpacaServer,
    FaultKind,
    Partial,
    Quote,
    Reject,
    VenueAccount,
)
from rebalance_stream.brokers.fake_alpaca.api import Reply, Request
from rebalance_stream.brokers.fake_alpaca.model import Order as VenueOrder
from rebalance_stream.brokers.fake_alpaca.model import OrderQuery
from rebalance_stream.brokers.fake_alpaca.model import OrderTicket as VenueTicket
from rebalance_stream.brokers.fake_alpaca.wire import dumps
from rebalance_stream.brokers.protocol import MarketData, MarketSnapshots
from rebalance_stream.brokers.rate_limit import TokenBucket
from rebalance_stream.contracts.execution import OrderSide
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.order_execution import ExecutionConfig, PlanOrderExecutor
from rebalance_stream.streams.pipeline import utc_now

READ_TIMEOUT_S = 2.0


class FakeTime:
    """A monotonic and a wall clock that move only when something sleeps."""

    def __init__(self, start_s: float = 1_700_000_000.0) -> None:
        self.now_s = start_s
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now_s += seconds


def status_error(status: int, message: str = "boom", code: int | None = 40010001) -> ApiFailure:
    return describe(HttpStatusError(status, code, message))


def buy(
    qty: str = "1", client_order_id: str = "plan-1:SPY:BUY", symbol: str = "SPY"
) -> OrderRequest:
    return OrderRequest(client_order_id, symbol, OrderSide.BUY, qty=Decimal(qty))


# -- error classification ----------------------------------------------------------------------

DUPLICATE = "client_order_id must be unique"
CLASSIFICATION_TABLE = [
    # (failure, operation, outcome)
    (status_error(429), Operation.READ, Outcome.RETRY),
    (status_error(429), Operation.SUBMIT, Outcome.RETRY),
    (status_error(429), Operation.CANCEL, Outcome.RETRY),
    (status_error(500), Operation.READ, Outcome.RETRY),
    (status_error(503, code=None), Operation.READ, Outcome.RETRY),
    (status_error(500), Operation.SUBMIT, Outcome.UNKNOWN),
    (status_error(504, "<html>gateway</html>", code=None), Operation.SUBMIT, Outcome.UNKNOWN),
    (status_error(502), Operation.CANCEL, Outcome.RETRY),
    (describe(requests.ConnectionError("reset")), Operation.READ, Outcome.RETRY),
    (describe(requests.ConnectionError("reset")), Operation.SUBMIT, Outcome.UNKNOWN),
    (describe(requests.ReadTimeout("slow")), Operation.SUBMIT, Outcome.UNKNOWN),
    (describe(requests.ReadTimeout("slow")), Operation.READ, Outcome.RETRY),
    (describe(requests.exceptions.ChunkedEncodingError("cut")), Operation.READ, Outcome.RETRY),
    (describe(requests.exceptions.InvalidURL("bad")), Operation.READ, Outcome.FATAL),
    (describe(requests.exceptions.InvalidURL("bad")), Operation.SUBMIT, Outcome.FATAL),
    (status_error(404, "order not found", 40410000), Operation.READ, Outcome.NOT_FOUND),
    (status_error(404, "order not found", 40410000), Operation.CANCEL, Outcome.NOT_FOUND),
    (status_error(404, "<html>no route</html>", None), Operation.READ, Outcome.FATAL),
    (status_error(404, "order not found", 40410000), Operation.SUBMIT, Outcome.FATAL),
    (status_error(422, DUPLICATE), Operation.SUBMIT, Outcome.DUPLICATE),
    (
        status_error(422, "requested asset is not fractionable", 42210000),
        Operation.SUBMIT,
        Outcome.REJECTED,
    ),
    (status_error(403, "insufficient buying power", 40310000), Operation.SUBMIT, Outcome.REJECTED),
    (
        status_error(403, "potential wash trade detected", 40310000),
        Operation.SUBMIT,
        Outcome.REJECTED,
    ),
    (status_error(400, "invalid json"), Operation.SUBMIT, Outcome.REJECTED),
    (status_error(401, "request is not authorized", 40110000), Operation.SUBMIT, Outcome.FATAL),
    (status_error(401, "request is not authorized", 40110000), Operation.READ, Outcome.FATAL),
    (status_error(403, "forbidden", 40310000), Operation.READ, Outcome.FATAL),
    (
        status_error(422, 'order is already in "filled" state', 42210000),
        Operation.CANCEL,
        Outcome.ALREADY_DONE,
    ),
    (status_error(422, "invalid"), Operation.READ, Outcome.FATAL),
    (status_error(301, "moved", None), Operation.SUBMIT, Outcome.FATAL),
]


@pytest.mark.parametrize(("failure", "operation", "outcome"), CLASSIFICATION_TABLE)
def test_classify_table_row_gives_outcome(
    failure: ApiFailure, operation: Operation, outcome: Outcome
) -> None:
    assert classify(failure, operation) is outcome


def test_describe_alpaca_api_error_reads_status_code_and_message() -> None:
    response = requests.Response()
    response.status_code = 403
    body = '{"code": 40310000, "message": "insufficient buying power"}'
    error = APIError(body, requests.HTTPError(response=response))

    failure = describe(error)

    assert failure == ApiFailure(403, 40310000, "insufficient buying power", transient=False)
    assert classify(failure, Operation.SUBMIT) is Outcome.REJECTED


def test_describe_non_json_body_keeps_truncated_text_without_code() -> None:
    failure = describe(HttpStatusError.from_response(_response(504, "<html>" + "x" * 1000)))

    assert failure.code is None
    assert failure.transient
    assert failure.message.startswith("<html>")
    assert len(failure.message) < 400


def test_to_broker_error_maps_outcomes_onto_protocol_errors() -> None:
    failure = status_error(403, "insufficient buying power", 40310000)

    rejected = to_broker_error(failure, Outcome.REJECTED, "cid")

    assert isinstance(rejected, OrderRejected)
    assert "insufficient buying power" in str(rejected)
    assert isinstance(to_broker_error(failure, Outcome.DUPLICATE, "c"), DuplicateClientOrderId)
    assert isinstance(to_broker_error(failure, Outcome.NOT_FOUND, "o"), OrderNotFound)
    assert isinstance(to_broker_error(failure, Outcome.RETRY, "o"), BrokerUnavailable)
    assert isinstance(to_broker_error(failure, Outcome.UNKNOWN, "o"), BrokerUnavailable)
    fatal = to_broker_error(failure, Outcome.FATAL, "o")
    assert type(fatal) is BrokerError


def test_is_retryable_read_ignores_non_venue_exceptions() -> None:
    assert is_retryable_read(HttpStatusError(503, None, "busy"))
    assert not is_retryable_read(HttpStatusError(404, 40410000, "order not found"))
    assert not is_retryable_read(ValueError("a bug, not a venue failure"))


def _response(status: int, text: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = text.encode()
    return response


# -- token bucket ------------------------------------------------------------------------------


def test_token_bucket_burst_then_rate_never_exceeds_budget() -> None:
    time = FakeTime()
    bucket = TokenBucket(60, burst=5, clock=time.clock, wall_clock=time.clock, sleep=time.sleep)
    start = time.now_s

    for _ in range(50):
        bucket.acquire()

    elapsed_s = time.now_s - start
    # 5 at once, then one a second: the 50th token is free at 45 s.
    assert elapsed_s == pytest.approx(45.0)
    assert 5 + elapsed_s * 1.0 + 1e-9 >= 50


def test_token_bucket_full_burst_needs_no_sleep() -> None:
    time = FakeTime()
    bucket = TokenBucket(200, clock=time.clock, wall_clock=time.clock, sleep=time.sleep)

    for _ in range(200):
        bucket.acquire()

    assert time.slept == []


def test_token_bucket_remaining_zero_waits_until_reset() -> None:
    time = FakeTime()
    bucket = TokenBucket(200, clock=time.clock, wall_clock=time.clock, sleep=time.sleep)
    reset = time.now_s + 7

    bucket.observe({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(int(reset))})
    slept = bucket.acquire()

    assert slept == pytest.approx(7.0)
    assert time.now_s >= reset


def test_token_bucket_reset_header_names_are_case_insensitive() -> None:
    time = FakeTime()
    bucket = TokenBucket(200, clock=time.clock, wall_clock=time.clock, sleep=time.sleep)

    bucket.observe({"x-ratelimit-remaining": "0", "X-RATELIMIT-RESET": str(int(time.now_s) + 3)})

    assert bucket.acquire() == pytest.approx(3.0)


def test_token_bucket_remaining_caps_tokens() -> None:
    time = FakeTime()
    bucket = TokenBucket(60, clock=time.clock, wall_clock=time.clock, sleep=time.sleep)

    bucket.observe({"X-Ratelimit-Remaining": "2", "X-Ratelimit-Reset": "0"})
    for _ in range(3):
        bucket.acquire()

    assert time.slept == [pytest.approx(1.0)]


def test_token_bucket_reset_wait_is_capped() -> None:
    time = FakeTime()
    bucket = TokenBucket(
        200,
        clock=time.clock,
        wall_clock=time.clock,
        sleep=time.sleep,
        max_header_wait_s=5,
    )

    bucket.observe({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(time.now_s + 3600)})

    assert bucket.acquire() == pytest.approx(5.0)


def test_token_bucket_reset_in_the_past_does_not_wait() -> None:
    time = FakeTime()
    bucket = TokenBucket(200, clock=time.clock, wall_clock=time.clock, sleep=time.sleep)

    bucket.observe({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(time.now_s - 10)})

    # No wait for the reset, only for the next token at 200 a minute.
    assert bucket.acquire() == pytest.approx(0.3)


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Ratelimit-Remaining": "many"}, {"X-Ratelimit-Remaining": "nan"}],
)
def test_token_bucket_unreadable_headers_are_ignored(headers: dict[str, str]) -> None:
    time = FakeTime()
    bucket = TokenBucket(200, clock=time.clock, wall_clock=time.clock, sleep=time.sleep)

    bucket.observe(headers)

    assert bucket.acquire() == 0.0


# -- exact decimals and bodies -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0.123456789", "0.123456789"),
        ("1E+2", "100"),
        ("20.000", "20"),
        ("1.50", "1.5"),
        ("0.000000001", "0.000000001"),
        ("12345678901234.5", "12345678901234.5"),
    ],
)
def test_exact_amount_is_plain_decimal_text(value: str, text: str) -> None:
    assert exact_amount(Decimal(value), "qty") == text


@pytest.mark.parametrize("value", ["0", "-1", "0.0000000001", "NaN", "Infinity"])
def test_exact_amount_refuses_unsendable_amounts(value: str) -> None:
    with pytest.raises(OrderRejected):
        exact_amount(Decimal(value), "qty")


@pytest.mark.parametrize(
    ("price", "side", "text"),
    [
        ("1.239", OrderSide.BUY, "1.23"),
        ("1.239", OrderSide.SELL, "1.24"),
        ("187.3", OrderSide.BUY, "187.30"),
        ("1", OrderSide.BUY, "1.00"),
        ("0.123456", OrderSide.BUY, "0.1234"),
        ("0.123456", OrderSide.SELL, "0.1235"),
        ("0.99999", OrderSide.BUY, "0.9999"),
        ("0.99999", OrderSide.SELL, "1.00"),
    ],
)
def test_format_limit_price_ticks_by_price_level(price: str, side: OrderSide, text: str) -> None:
    assert format_limit_price(Decimal(price), side) == text


def test_format_limit_price_refuses_non_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        format_limit_price(Decimal(0), OrderSide.BUY)


def test_order_body_qty_is_exact_string_in_json() -> None:
    body = order_body(buy("0.123456789", symbol="spy"))

    assert body == {
        "symbol": "SPY",
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "client_order_id": "plan-1:SPY:BUY",
        "qty": "0.123456789",
    }
    assert '"qty": "0.123456789"' in json.dumps(body)


def test_order_body_notional_market_order() -> None:
    request = OrderRequest("c", "AAPL", OrderSide.SELL, notional=Decimal("250.10"))

    body = order_body(request)

    assert body["notional"] == "250.1"
    assert "qty" not in body
    assert "limit_price" not in body
    assert (body["type"], body["side"]) == ("market", "sell")


def test_order_body_limit_order_has_exact_limit_price() -> None:
    request = OrderRequest(
        "c", "aapl", OrderSide.SELL, qty=Decimal("2.50"), limit_price=Decimal("187.50")
    )

    assert order_body(request) == {
        "symbol": "AAPL",
        "side": "sell",
        "type": "limit",
        "time_in_force": "day",
        "client_order_id": "c",
        "qty": "2.5",
        "limit_price": "187.5",
    }


@pytest.mark.parametrize(
    ("price", "text"),
    [
        ("187.34", "187.34"),
        ("187.50", "187.5"),
        ("1.00", "1"),
        ("1.0000", "1"),
        ("1E+2", "100"),
        ("0.1234", "0.1234"),
        ("0.99990", "0.9999"),
    ],
)
def test_exact_limit_price_on_alpacas_tick_is_plain_text(price: str, text: str) -> None:
    assert exact_limit_price(Decimal(price)) == text


@pytest.mark.parametrize(
    "price", ["187.333", "1.001", "1.0001", "0.12345", "0", "-1", "NaN", "Infinity", "1E+30"]
)
def test_exact_limit_price_off_tick_or_not_positive_is_refused(price: str) -> None:
    with pytest.raises(OrderRejected, match="limit_price"):
        exact_limit_price(Decimal(price))


def test_order_body_off_tick_limit_price_is_refused() -> None:
    request = OrderRequest("c", "SPY", OrderSide.BUY, qty=Decimal(1), limit_price=Decimal("5.001"))

    with pytest.raises(OrderRejected, match=r"tick of 0\.01"):
        order_body(request)


# -- parsing -----------------------------------------------------------------------------------


def order_json(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "61e69015-8549-4bfd-b9c3-01e75843f47d",
        "client_order_id": "plan-1:SPY:BUY",
        "created_at": "2025-01-02T15:30:00.123456789Z",
        "submitted_at": "2025-01-02T15:30:00.123456789Z",
        "filled_at": None,
        "symbol": "SPY",
        "side": "buy",
        "qty": "0.123456789",
        "notional": None,
        "filled_qty": "0",
        "filled_avg_price": None,
        "status": "new",
    }
    document.update(overrides)
    return document


def test_parse_order_reads_decimals_from_strings() -> None:
    raw = order_json(status="filled", filled_qty="0.123456789", filled_avg_price="500.0123")
    raw["filled_at"] = "2025-01-02T15:30:01Z"

    order = parse_order(raw)

    assert order.qty == Decimal("0.123456789")
    assert order.filled_qty == Decimal("0.123456789")
    assert order.filled_avg_price == Decimal("500.0123")
    assert order.status is BrokerOrderStatus.FILLED
    assert order.side is OrderSide.BUY
    assert order.submitted_at == datetime(2025, 1, 2, 15, 30, 0, 123456, tzinfo=UTC)
    assert order.filled_at == datetime(2025, 1, 2, 15, 30, 1, tzinfo=UTC)


def test_parse_order_market_order_has_no_limit_price() -> None:
    order = parse_order(order_json(type="market", order_type="market", limit_price=None))

    assert (order.order_type, order.limit_price) == ("market", None)
    assert parse_order(order_json()).order_type == "market"


def test_parse_order_reads_limit_type_and_price() -> None:
    order = parse_order(order_json(type="limit", limit_price="187.34"))
    by_order_type = parse_order(order_json(order_type="limit", limit_price=Decimal("0.1234")))

    assert (order.order_type, order.limit_price) == ("limit", Decimal("187.34"))
    assert (by_order_type.order_type, by_order_type.limit_price) == ("limit", Decimal("0.1234"))


def test_parse_order_open_with_fill_is_partially_filled() -> None:
    order = parse_order(order_json(status="pending_cancel", filled_qty="0.1"))

    assert order.status is BrokerOrderStatus.PARTIALLY_FILLED


def test_parse_order_zero_average_price_without_fill_is_none() -> None:
    assert parse_order(order_json(filled_avg_price="0")).filled_avg_price is None


def test_parse_order_rejected_has_reason() -> None:
    order = parse_order(order_json(status="rejected"))

    assert order.status is BrokerOrderStatus.REJECTED
    assert order.reject_reason


def test_parse_order_unknown_status_stays_live() -> None:
    assert parse_order(order_json(status="brand_new_status")).status is BrokerOrderStatus.NEW


@pytest.mark.parametrize(
    "raw",
    [None, [], order_json(qty=1.5), order_json(side="short"), order_json(submitted_at="nope")],
)
def test_parse_order_unreadable_is_broker_unavailable(raw: object) -> None:
    with pytest.raises(BrokerUnavailable, match="unreadable order"):
        parse_order(raw)


def test_status_map_covers_every_alpaca_status() -> None:
    assert set(STATUS_MAP) == set(OrderStatus)


def test_parse_account_keeps_decimal_strings() -> None:
    account = parse_account({"cash": "1000.123456789", "buying_power": "2000.5"})

    assert account.cash == Decimal("1000.123456789")
    assert account.buying_power == Decimal("2000.5")


def test_parse_latest_prices() -> None:
    trades = {"trades": {"SPY": {"p": Decimal("500.01"), "s": 100}}}

    assert parse_trade_price(trades, "spy") == Decimal("500.01")
    assert parse_trade_price({"trades": {}}, "SPY") is None


def test_parse_quotes_reads_exact_decimals_and_time_of_each_symbol() -> None:
    raw = json.loads(
        '{"quotes": {"SPY": {"bp": 499.99, "ap": 500.01, "t": "2025-01-02T15:30:00.123456789Z"},'
        ' "AAPL": {"bp": "187.3311", "ap": "187.3313", "t": "2025-01-02T15:30:01Z"},'
        ' "GLD": {"bp": 190.1, "ap": 190.2}}}',
        parse_float=Decimal,
    )

    quotes = parse_quotes(raw, ["spy", "AAPL", "NOPE"])

    assert quotes == {
        "SPY": BrokerQuote(
            Decimal("499.99"),
            Decimal("500.01"),
            datetime(2025, 1, 2, 15, 30, 0, 123456, tzinfo=UTC),
        ),
        "AAPL": BrokerQuote(
            Decimal("187.3311"), Decimal("187.3313"), datetime(2025, 1, 2, 15, 30, 1, tzinfo=UTC)
        ),
    }
    assert quotes["SPY"].mid == Decimal("500.00")
    assert quotes["SPY"].spread == Decimal("0.02")


@pytest.mark.parametrize(
    "entry",
    [
        {"bp": Decimal("500.02"), "ap": Decimal("500.01")},
        {"bp": Decimal(0), "ap": Decimal("500.01")},
        {"bp": Decimal("500.01"), "ap": Decimal(0)},
        {"bp": Decimal("-1"), "ap": Decimal("500.01")},
        {"ap": Decimal("500.01")},
        {"bp": Decimal("500.01")},
        {"bp": "n/a", "ap": Decimal("500.01")},
        {"bp": 499.5, "ap": 500.5},
        "not an object",
    ],
)
def test_parse_quotes_crossed_zero_or_one_sided_quote_is_absent(entry: object) -> None:
    good = {"bp": Decimal("80.00"), "ap": Decimal("80.01")}

    quotes = parse_quotes({"quotes": {"SPY": entry, "TQQQ": good}}, ["SPY", "TQQQ"])

    assert quotes == {"TQQQ": BrokerQuote(Decimal("80.00"), Decimal("80.01"))}


def test_parse_quotes_locked_quote_and_unreadable_time_are_kept() -> None:
    raw = {"quotes": {"SPY": {"bp": Decimal(500), "ap": Decimal(500), "t": "yesterday"}}}

    assert parse_quotes(raw, ["SPY"]) == {"SPY": BrokerQuote(Decimal(500), Decimal(500), None)}


def test_parse_quotes_not_found_is_empty_and_garbage_is_unavailable() -> None:
    assert parse_quotes(None, ["SPY"]) == {}
    assert parse_quotes({"quotes": {}}, ["SPY"]) == {}
    for raw in ([], {"trades": {}}, {"quotes": []}):
        with pytest.raises(BrokerUnavailable, match="unreadable quotes"):
            parse_quotes(raw, ["SPY"])


def test_latest_params_upper_cases_each_symbol_once_with_the_feed() -> None:
    assert latest_params(["spy", "AAPL", "SPY"], None) == {"symbols": "SPY,AAPL"}
    assert latest_params(["spy"], "iex") == {"symbols": "SPY", "feed": "iex"}
    assert latest_params([], "iex") is None


# -- config ------------------------------------------------------------------------------------


def test_config_reads_alpaca_variables_and_defaults_to_paper(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    monkeypatch.delenv("APCA_API_BASE_URL", raising=False)
    monkeypatch.setenv("REBALANCE_STREAM_ALPACA_READ_TIMEOUT_S", "4.5")

    config = AlpacaConfig()

    assert config.key_id == KEY_ID
    assert config.secret_key.get_secret_value() == SECRET
    assert config.base_url == "https://paper-api.alpaca.markets"
    assert config.is_paper
    assert config.read_timeout_s == 4.5
    assert SECRET not in repr(config)
    assert SECRET not in str(config)


def test_config_base_url_loses_version_suffix() -> None:
    config = AlpacaConfig(key_id="k", secret_key="s", base_url="https://api.alpaca.markets/v2/")

    assert config.base_url == "https://api.alpaca.markets"
    assert not config.is_paper


def test_config_without_key_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)

    with pytest.raises(ValidationError):
        AlpacaConfig()


# -- against the fake Alpaca server ------------------------------------------------------------

VENUE_ACCOUNT = VenueAccount(
    cash=Decimal("100000.00"),
    positions={"SPY": Decimal("60"), "TQQQ": Decimal("500")},
    quotes={
        "SPY": Quote(Decimal("499.99"), Decimal("500.01")),
        "AAPL": Quote(Decimal("187.3311"), Decimal("187.3313")),
        "TQQQ": Quote(Decimal("80.00"), Decimal("80.00")),
        "SLOW": Quote(Decimal("100.00"), Decimal("100.00")),
        "BAD": Quote(Decimal("10.00"), Decimal("10.00")),
        "PENNY": Quote(Decimal("1.00"), Decimal("1.00")),
    },
    fractionable=frozenset({"SPY", "AAPL"}),
    fills={"SLOW": Delayed(3_600_000), "BAD": Reject()},
)


class StampingServer(FakeAlpacaServer):
    """The fake server, noting the fake time at which each request arrives."""

    def __init__(self, config: FakeAlpacaConfig, time: FakeTime) -> None:
        super().__init__(config)
        self.stamps: list[float] = []
        self._fake_time = time

    def handle(self, request: Request) -> Reply:
        self.stamps.append(self._fake_time.now_s)
        return super().handle(request)


QUOTES_PATH = "/v2/stocks/quotes/latest"


class RecordingServer(FakeAlpacaServer):
    """The fake server, noting each market data request's query; its quotes answer is
    ``quotes_body`` instead, when that is set (the fake never quotes crossed or zero)."""

    def __init__(self, config: FakeAlpacaConfig) -> None:
        super().__init__(config)
        self.queries: list[tuple[str, dict[str, str]]] = []
        self.quotes_body: object | None = None

    def handle(self, request: Request) -> Reply:
        reply = super().handle(request)
        if request.path.startswith("/v2/stocks/"):
            self.queries.append((request.path, dict(request.params)))
        if request.path == QUOTES_PATH and self.quotes_body is not None and reply.status == 200:
            return replace(reply, body=dumps(self.quotes_body))
        return reply


def venue_config(**changes: Any) -> FakeAlpacaConfig:
    return fake_venue_config(VENUE_ACCOUNT, **changes)


@pytest.fixture
def venue() -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer(venue_config()) as server:
        yield server


def alpaca_config(server: FakeAlpacaServer, **changes: Any) -> AlpacaConfig:
    return adapter_config(server, **{"read_timeout_s": READ_TIMEOUT_S, **changes})


@contextmanager
def started(
    server: FakeAlpacaServer,
    *,
    bucket: TokenBucket | None = None,
    sleep: Callable[[float], None] | None = None,
    **changes: Any,
) -> Iterator[AlpacaBroker]:
    """The adapter over ``server``; its backoff sleeps on a FakeTime unless told otherwise."""
    with started_adapter(
        server,
        bucket=bucket,
        sleep=sleep or FakeTime().sleep,
        **{"read_timeout_s": READ_TIMEOUT_S, **changes},
    ) as broker:
        yield broker


@pytest.fixture
def broker(venue: FakeAlpacaServer) -> Iterator[AlpacaBroker]:
    with started(venue) as alpaca:
        yield alpaca


def count(server: FakeAlpacaServer, method: str, template: str) -> int:
    return server.request_counts().get((method, template), 0)


def total_requests(server: FakeAlpacaServer) -> int:
    return sum(server.request_counts().values())


def venue_orders(server: FakeAlpacaServer) -> list[VenueOrder]:
    return server.engine.orders(OrderQuery(status="all", limit=500))


def test_alpaca_broker_has_every_broker_method_with_its_signature() -> None:
    methods = [name for name in vars(Broker) if not name.startswith("_")]
    as_broker: Broker = AlpacaBroker.__new__(AlpacaBroker)  # mypy checks the structure

    assert len(methods) == 13
    for name in methods:
        expected = inspect.signature(getattr(Broker, name))
        assert inspect.signature(getattr(type(as_broker), name)) == expected, name


def test_alpaca_broker_get_positions_reads_every_position_in_one_request(
    broker: AlpacaBroker, venue: FakeAlpacaServer
) -> None:
    positions = broker.get_positions()

    expected = {h.symbol: h.qty for h in venue.engine.holdings()}
    assert positions == expected
    assert positions  # the venue account holds something
    assert count(venue, "GET", "/v2/positions") == 1


def test_parse_positions_refuses_what_is_not_a_list_of_positions() -> None:
    with pytest.raises(BrokerUnavailable, match="not a JSON array"):
        parse_positions({"symbol": "SPY"})
    with pytest.raises(BrokerUnavailable, match="unreadable positions"):
        parse_positions([{"symbol": "SPY"}])


def test_alpaca_broker_get_clock_is_kept_between_plans(venue: FakeAlpacaServer) -> None:
    with started(venue) as alpaca:
        readings = [alpaca.get_clock() for _ in range(3)]
    with started(venue, clock_cache_s=0) as uncached:
        uncached.get_clock()
        uncached.get_clock()

    assert readings[0] == readings[1] == readings[2]
    assert readings[0].next_change is not None  # the fake's next close, an hour away
    assert count(venue, "GET", "/v2/clock") == 1 + 2


def test_alpaca_broker_get_clock_reads_is_open_and_time(broker: AlpacaBroker) -> None:
    clock = broker.get_clock()

    assert clock.is_open is True
    assert clock.timestamp.tzinfo is not None


def test_alpaca_broker_get_account_is_decimal(broker: AlpacaBroker) -> None:
    account = broker.get_account()

    assert account.cash == Decimal("100000")
    assert account.buying_power == Decimal("100000")


def test_alpaca_broker_get_position_qty_held_and_absent(broker: AlpacaBroker) -> None:
    assert broker.get_position_qty("SPY") == Decimal(60)
    assert broker.get_position_qty("AAPL") == Decimal(0)


def test_alpaca_broker_get_asset_known_and_unknown(broker: AlpacaBroker) -> None:
    spy = broker.get_asset("spy")

    assert (spy.symbol, spy.tradable, spy.fractionable) == ("SPY", True, True)
    assert broker.get_asset("TQQQ").fractionable is False
    with pytest.raises(UnknownAsset):
        broker.get_asset("NOPE")


def test_alpaca_broker_keeps_a_known_asset_but_asks_again_for_an_unknown_one(
    venue: FakeAlpacaServer,
) -> None:
    with started(venue) as alpaca:
        first, again = alpaca.get_asset("SPY"), alpaca.get_asset("spy")
        for _ in range(2):
            with pytest.raises(UnknownAsset):
                alpaca.get_asset("NOPE")

    assert first == again
    assert count(venue, "GET", "/v2/assets/{symbol}") == 1 + 2


def test_alpaca_broker_concurrent_first_reads_of_an_asset_make_one_request() -> None:
    """Eight plans that need SPY at once: one GET, seven wait for its answer (no stampede)."""
    with FakeAlpacaServer(venue_config(latency_ms=200)) as slow, started(slow) as alpaca:
        start = threading.Barrier(8)

        def read() -> bool:
            start.wait()
            return alpaca.get_asset("spy").fractionable

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: read(), range(8)))

        assert answers == [True] * 8
        assert count(slow, "GET", "/v2/assets/{symbol}") == 1


def test_alpaca_broker_concurrent_reads_of_the_clock_make_one_request() -> None:
    """Eight plans asking whether the market is open at once, with no reading kept: one GET."""
    with FakeAlpacaServer(venue_config(latency_ms=200)) as slow, started(slow) as alpaca:
        start = threading.Barrier(8)

        def read() -> bool:
            start.wait()
            return alpaca.get_clock().is_open

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: read(), range(8)))

        assert answers == [True] * 8
        assert count(slow, "GET", "/v2/clock") == 1


def test_alpaca_broker_asset_cache_of_zero_seconds_reads_every_time(
    venue: FakeAlpacaServer,
) -> None:
    with started(venue, asset_cache_s=0) as alpaca:
        alpaca.get_asset("SPY")
        alpaca.get_asset("SPY")

    assert count(venue, "GET", "/v2/assets/{symbol}") == 2


def test_alpaca_broker_get_latest_price_is_exact_or_none(broker: AlpacaBroker) -> None:
    assert broker.get_latest_price("AAPL") == Decimal("187.3312")
    assert broker.get_latest_price("NOPE") is None


QUOTED_AT = datetime(2025, 1, 2, 15, 30, tzinfo=UTC)


def test_alpaca_broker_get_quotes_asks_once_for_every_symbol() -> None:
    with (
        RecordingServer(venue_config(clock=lambda: QUOTED_AT)) as venue,
        started(venue) as alpaca,
    ):
        quotes = alpaca.get_quotes(["spy", "AAPL", "NOPE", "SPY"])

    assert quotes == {
        "SPY": BrokerQuote(Decimal("499.99"), Decimal("500.01"), QUOTED_AT),
        "AAPL": BrokerQuote(Decimal("187.3311"), Decimal("187.3313"), QUOTED_AT),
    }
    assert venue.queries == [(QUOTES_PATH, {"symbols": "SPY,AAPL,NOPE"})]
    assert total_requests(venue) == count(venue, "GET", QUOTES_PATH) == 1


def test_alpaca_broker_get_market_data_reads_prices_and_quotes_in_one_request() -> None:
    with (
        RecordingServer(venue_config(clock=lambda: QUOTED_AT)) as venue,
        started(venue, data_feed="iex") as alpaca,
    ):
        market = alpaca.get_market_data(["spy", "AAPL", "NOPE", "SPY"])
        none = alpaca.get_market_data([])

    assert isinstance(alpaca, MarketSnapshots)
    assert market.quotes == {
        "SPY": BrokerQuote(Decimal("499.99"), Decimal("500.01"), QUOTED_AT),
        "AAPL": BrokerQuote(Decimal("187.3311"), Decimal("187.3313"), QUOTED_AT),
    }
    assert market.prices == {"SPY": Decimal("500.00"), "AAPL": Decimal("187.3312")}
    assert none == MarketData({}, {})
    assert venue.queries == [("/v2/stocks/snapshots", {"symbols": "AAPL,NOPE,SPY", "feed": "iex"})]
    assert total_requests(venue) == 1


def test_parse_snapshots_prices_from_trades_else_the_quote_and_refuses_a_non_object() -> None:
    raw = {
        "SPY": {
            "latestTrade": {"p": Decimal("500.02")},
            "latestQuote": {"bp": Decimal("499.99"), "ap": Decimal("500.01")},
        },
        "GLD": {"latestQuote": {"bp": Decimal("190.00"), "ap": Decimal("190.10")}},
        "QQQ": {"latestTrade": {"p": 0}, "latestQuote": {"bp": Decimal(2), "ap": Decimal(1)}},
        "TQQQ": "not a snapshot",
    }

    market = parse_snapshots(raw, ["spy", "GLD", "QQQ", "TQQQ", "NOPE"])

    assert market.prices == {"SPY": Decimal("500.02"), "GLD": Decimal("190.05")}
    assert market.quotes == {
        "SPY": BrokerQuote(Decimal("499.99"), Decimal("500.01")),
        "GLD": BrokerQuote(Decimal("190.00"), Decimal("190.10")),
    }  # QQQ's quote is crossed and its trade is no price: it has neither
    assert parse_snapshots(None, ["SPY"]) == MarketData({}, {})
    with pytest.raises(BrokerUnavailable, match="snapshots"):
        parse_snapshots(["SPY"], ["SPY"])


def test_alpaca_broker_get_quotes_sends_the_configured_feed() -> None:
    with RecordingServer(venue_config()) as venue, started(venue, data_feed="iex") as alpaca:
        quotes = alpaca.get_quotes(["TQQQ"])

    assert quotes["TQQQ"].bid == quotes["TQQQ"].ask == Decimal("80.00")
    assert venue.queries == [(QUOTES_PATH, {"symbols": "TQQQ", "feed": "iex"})]


def test_alpaca_broker_get_quotes_of_no_symbols_sends_nothing(
    venue: FakeAlpacaServer, broker: AlpacaBroker
) -> None:
    assert broker.get_quotes([]) == {}
    assert total_requests(venue) == 0


def test_alpaca_broker_get_quotes_leaves_out_crossed_and_zero_quotes() -> None:
    with RecordingServer(venue_config()) as venue, started(venue) as alpaca:
        venue.quotes_body = {
            "quotes": {
                "SPY": {
                    "bp": Decimal("500.02"),
                    "ap": Decimal("500.01"),
                    "t": "2025-01-02T15:30:00Z",
                },
                "AAPL": {"bp": Decimal(0), "ap": Decimal("187.3313"), "t": "2025-01-02T15:30:00Z"},
                "TQQQ": {
                    "bp": Decimal("80.00"),
                    "ap": Decimal("80.01"),
                    "t": "2025-01-02T15:30:00Z",
                },
            }
        }
        quotes = alpaca.get_quotes(["SPY", "AAPL", "TQQQ"])

    assert quotes == {"TQQQ": BrokerQuote(Decimal("80.00"), Decimal("80.01"), QUOTED_AT)}
    assert count(venue, "GET", QUOTES_PATH) == 1


def limit_order(cid: str, symbol: str, side: OrderSide, qty: str, limit_price: str) -> OrderRequest:
    return OrderRequest(cid, symbol, side, qty=Decimal(qty), limit_price=Decimal(limit_price))


def test_alpaca_broker_marketable_limit_buy_fills_at_the_ask(
    venue: FakeAlpacaServer, broker: AlpacaBroker
) -> None:
    order = broker.submit_order(limit_order("cid-limit-buy", "AAPL", OrderSide.BUY, "2", "187.34"))

    [raw_body] = venue.order_requests()
    body = json.loads(raw_body)
    assert (body["type"], body["limit_price"], body["time_in_force"], body["qty"]) == (
        "limit",
        "187.34",
        "day",
        "2",
    )
    assert order.status is BrokerOrderStatus.FILLED
    assert (order.order_type, order.limit_price) == ("limit", Decimal("187.34"))
    assert (order.filled_qty, order.filled_avg_price) == (Decimal(2), Decimal("187.3313"))


def test_alpaca_broker_marketable_limit_sell_fills_at_the_bid(broker: AlpacaBroker) -> None:
    order = broker.submit_order(limit_order("cid-limit-sell", "SPY", OrderSide.SELL, "1", "499"))

    assert order.status is BrokerOrderStatus.FILLED
    assert (order.order_type, order.limit_price) == ("limit", Decimal(499))
    assert order.filled_avg_price == Decimal("499.99")


def test_alpaca_broker_resting_limit_buy_is_new_until_canceled(
    venue: FakeAlpacaServer, broker: AlpacaBroker
) -> None:
    placed = broker.submit_order(limit_order("cid-rest", "SPY", OrderSide.BUY, "2", "499.50"))
    read = broker.get_order(placed.broker_order_id)
    buying_power = broker.get_account().buying_power

    broker.cancel_order(placed.broker_order_id)
    canceled = broker.get_order(placed.broker_order_id)

    assert json.loads(venue.order_requests()[0])["limit_price"] == "499.5"
    assert placed.status is BrokerOrderStatus.NEW
    assert (placed.order_type, placed.limit_price) == ("limit", Decimal("499.5"))
    assert (placed.filled_qty, placed.filled_avg_price) == (Decimal(0), None)
    assert read == placed
    assert buying_power == Decimal("100000") - 2 * Decimal("499.5")
    assert canceled.status is BrokerOrderStatus.CANCELED
    assert (canceled.filled_qty, canceled.filled_avg_price) == (Decimal(0), None)
    assert (canceled.order_type, canceled.limit_price) == ("limit", Decimal("499.5"))


def test_alpaca_broker_resting_limit_fills_when_the_ask_reaches_it(
    venue: FakeAlpacaServer, broker: AlpacaBroker
) -> None:
    placed = broker.submit_order(limit_order("cid-repriced", "SPY", OrderSide.BUY, "1", "499.50"))

    venue.set_quote("SPY", "499.00", "499.40")
    filled = broker.get_order(placed.broker_order_id)

    assert placed.status is BrokerOrderStatus.NEW
    assert filled.status is BrokerOrderStatus.FILLED
    assert (filled.filled_qty, filled.filled_avg_price) == (Decimal(1), Decimal("499.40"))


@pytest.mark.parametrize(
    ("symbol", "limit_price"), [("AAPL", "187.333"), ("SPY", "500.001"), ("PENNY", "0.12345")]
)
def test_alpaca_broker_limit_price_off_tick_is_refused_before_sending(
    venue: FakeAlpacaServer, broker: AlpacaBroker, symbol: str, limit_price: str
) -> None:
    request = limit_order("cid-off-tick", symbol, OrderSide.BUY, "1", limit_price)

    with pytest.raises(OrderRejected, match="tick"):
        broker.submit_order(request)

    assert venue.order_posts() == []
    assert total_requests(venue) == 0


def test_alpaca_broker_submit_order_sends_exact_decimal_string(
    venue: FakeAlpacaServer, broker: AlpacaBroker
) -> None:
    order = broker.submit_order(buy("0.123456789", "cid-exact", "AAPL"))

    [raw_body] = venue.order_requests()
    body = json.loads(raw_body)
    assert body["qty"] == "0.123456789"
    assert '"qty": "0.123456789"' in raw_body
    assert (body["type"], body["time_in_force"], body["client_order_id"]) == (
        "market",
        "day",
        "cid-exact",
    )
    assert order.status is BrokerOrderStatus.FILLED
    assert order.qty == Decimal("0.123456789")
    assert order.filled_qty == Decimal("0.123456789")
    assert order.filled_avg_price == Decimal("187.3313")
    assert order.client_order_id == "cid-exact"


def test_alpaca_broker_submit_notional_order(venue: FakeAlpacaServer, broker: AlpacaBroker) -> None:
    request = OrderRequest("cid-notional", "SPY", OrderSide.BUY, notional=Decimal("1000.10"))

    order = broker.submit_order(request)

    assert json.loads(venue.order_requests()[0])["notional"] == "1000.1"
    assert order.notional == Decimal("1000.1")
    assert order.qty is None


def test_alpaca_broker_get_order_and_by_client_id(broker: AlpacaBroker) -> None:
    placed = broker.submit_order(buy("1", "cid-get"))

    assert broker.get_order(placed.broker_order_id) == placed
    assert broker.get_order_by_client_id("cid-get") == placed
    assert broker.get_order_by_client_id("cid-never-sent") is None
    with pytest.raises(OrderNotFound):
        broker.get_order("00000000-0000-0000-0000-000000000000")


def test_alpaca_broker_cancel_open_order_then_read_final_state(broker: AlpacaBroker) -> None:
    placed = broker.submit_order(buy("1", "cid-slow", "SLOW"))

    broker.cancel_order(placed.broker_order_id)

    assert placed.status is BrokerOrderStatus.NEW
    assert broker.get_order(placed.broker_order_id).status is BrokerOrderStatus.CANCELED


def test_alpaca_broker_cancel_filled_order_is_not_an_error(
    venue: FakeAlpacaServer, broker: AlpacaBroker
) -> None:
    placed = broker.submit_order(buy("1", "cid-filled"))

    broker.cancel_order(placed.broker_order_id)

    assert count(venue, "DELETE", "/v2/orders/{order_id}") == 1
    assert broker.get_order(placed.broker_order_id).status is BrokerOrderStatus.FILLED


def test_alpaca_broker_cancel_unknown_order_raises(broker: AlpacaBroker) -> None:
    with pytest.raises(OrderNotFound):
        broker.cancel_order("00000000-0000-0000-0000-000000000000")


def test_alpaca_broker_list_orders_pages_by_until_oldest_first(venue: FakeAlpacaServer) -> None:
    for index in range(1201):
        prefix = "keep" if index % 2 == 0 else "other"
        venue.engine.submit(
            VenueTicket(
                "PENNY",
                "buy",
                "market",
                "day",
                "{}",
                qty=Decimal(1),
                client_order_id=f"{prefix}-{index:05d}",
            )
        )

    with started(venue) as alpaca:
        kept = alpaca.list_orders("keep-")
        everything = alpaca.list_orders()

    assert [o.client_order_id for o in kept] == [f"keep-{i:05d}" for i in range(0, 1201, 2)]
    assert len(everything) == 1201
    assert len({o.broker_order_id for o in everything}) == 1201
    # 1201 orders at 500 a page, each page overlapping the last by the order at its edge.
    assert count(venue, "GET", "/v2/orders") == 2 * 3


def test_alpaca_broker_duplicate_client_order_id_raises(
    venue: FakeAlpacaServer, broker: AlpacaBroker
) -> None:
    broker.submit_order(buy("1", "cid-dup"))

    with pytest.raises(DuplicateClientOrderId):
        broker.submit_order(buy("1", "cid-dup"))

    assert len(venue_orders(venue)) == 1


def test_alpaca_broker_rejection_carries_alpacas_message(
    venue: FakeAlpacaServer, broker: AlpacaBroker
) -> None:
    with pytest.raises(OrderRejected, match="insufficient buying power"):
        broker.submit_order(buy("1000", "cid-too-big"))
    with pytest.raises(OrderRejected, match="not fractionable"):
        broker.submit_order(buy("0.5", "cid-fraction", "TQQQ"))

    assert venue_orders(venue) == []
    assert count(venue, "POST", "/v2/orders") == 2


def test_alpaca_broker_rejected_status_is_returned(broker: AlpacaBroker) -> None:
    order = broker.submit_order(buy("1", "cid-bad", "BAD"))

    assert order.status is BrokerOrderStatus.REJECTED
    assert order.is_terminal


def test_alpaca_broker_read_500_then_success_is_retried(
    venue: FakeAlpacaServer, broker: AlpacaBroker
) -> None:
    venue.inject_fault(FaultKind.HTTP_500, method="GET", path="/v2/account")

    account = broker.get_account()

    assert account.cash == Decimal("100000")
    assert count(venue, "GET", "/v2/account") == 2
    assert broker.stats.retries == 1
    assert broker.stats.requests == 2


def test_alpaca_broker_read_500_past_attempts_is_unavailable(venue: FakeAlpacaServer) -> None:
    venue.inject_fault(FaultKind.HTTP_500, method="GET", path="/v2/clock", count=10)

    with started(venue, read_attempts=3) as alpaca, pytest.raises(BrokerUnavailable):
        alpaca.get_clock()

    assert count(venue, "GET", "/v2/clock") == 3


def test_alpaca_broker_read_timeout_is_retried(venue: FakeAlpacaServer) -> None:
    venue.inject_fault(FaultKind.LATENCY, method="GET", path="/v2/clock", latency_ms=1500)

    with started(venue, read_timeout_s=0.3) as alpaca:
        clock = alpaca.get_clock()
        retries = alpaca.stats.retries

    assert clock.is_open
    assert retries == 1
    assert count(venue, "GET", "/v2/clock") == 2


def test_alpaca_broker_read_connection_cut_is_retried(
    venue: FakeAlpacaServer, broker: AlpacaBroker
) -> None:
    venue.inject_fault(FaultKind.DISCONNECT, method="GET", path="/v2/positions/{symbol}")

    assert broker.get_position_qty("SPY") == Decimal(60)
    assert count(venue, "GET", "/v2/positions/{symbol}") == 2


@pytest.mark.parametrize(
    "fault", [FaultKind.HTTP_504_AFTER_ACCEPT, FaultKind.DISCONNECT_AFTER_ACCEPT]
)
def test_alpaca_broker_submit_accepted_then_lost_answer_is_found_not_resent(
    venue: FakeAlpacaServer, broker: AlpacaBroker, fault: FaultKind
) -> None:
    venue.inject_fault(fault, method="POST", path="/v2/orders")

    order = broker.submit_order(buy("0.5", "cid-lost-answer"))

    [placed] = venue_orders(venue)
    assert order.broker_order_id == placed.id
    assert order.client_order_id == "cid-lost-answer"
    assert order.status is BrokerOrderStatus.FILLED
    assert count(venue, "POST", "/v2/orders") == 1
    assert len(venue.order_requests()) == 1
    assert broker.stats.unknown_outcomes == 1


def test_alpaca_broker_submit_lost_answer_with_failing_lookups_still_resolves(
    venue: FakeAlpacaServer, broker: AlpacaBroker
) -> None:
    venue.inject_fault(FaultKind.HTTP_504_AFTER_ACCEPT, method="POST", path="/v2/orders")
    venue.inject_fault(
        FaultKind.HTTP_500, method="GET", path="/v2/orders:by_client_order_id", count=2
    )

    order = broker.submit_order(buy("1", "cid-slow-lookup"))

    assert order.client_order_id == "cid-slow-lookup"
    assert count(venue, "POST", "/v2/orders") == 1
    assert count(venue, "GET", "/v2/orders:by_client_order_id") == 3


def test_alpaca_broker_submit_timeout_is_resolved_by_lookup(venue: FakeAlpacaServer) -> None:
    venue.inject_fault(FaultKind.LATENCY, method="POST", path="/v2/orders", latency_ms=800)

    with started(
        venue,
        read_timeout_s=0.2,
        resolve_attempts=12,
        backoff_base_s=0.1,
        backoff_max_s=0.5,
        sleep=time.sleep,
    ) as alpaca:
        order = alpaca.submit_order(buy("1", "cid-timeout"))

    assert order.client_order_id == "cid-timeout"
    assert count(venue, "POST", "/v2/orders") == 1
    assert len(venue_orders(venue)) == 1


@pytest.mark.parametrize("fault", [FaultKind.DISCONNECT, FaultKind.HTTP_500])
def test_alpaca_broker_submit_not_placed_is_unavailable_and_never_resent(
    venue: FakeAlpacaServer, fault: FaultKind
) -> None:
    venue.inject_fault(fault, method="POST", path="/v2/orders")

    with (
        started(venue, resolve_attempts=3) as alpaca,
        pytest.raises(BrokerUnavailable, match="not sent again"),
    ):
        alpaca.submit_order(buy("1", "cid-not-placed"))

    assert count(venue, "POST", "/v2/orders") == 1
    assert count(venue, "GET", "/v2/orders:by_client_order_id") == 3
    assert venue_orders(venue) == []


def test_alpaca_broker_submit_answered_429_is_sent_again_after_the_reset_and_placed_once(
    venue: FakeAlpacaServer,
) -> None:
    venue.inject_fault(FaultKind.HTTP_429, method="POST", path="/v2/orders", count=2, reset_in_s=0)

    with started(venue) as alpaca:
        order = alpaca.submit_order(buy("1", "cid-rate-limited"))
        stats = alpaca.stats

    assert order.client_order_id == "cid-rate-limited"
    assert [status for _, status in venue.order_posts()] == [429, 429, 200]
    assert count(venue, "GET", "/v2/orders:by_client_order_id") == 0
    assert [o.client_order_id for o in venue_orders(venue)] == ["cid-rate-limited"]
    assert (stats.rate_limited, stats.retries, stats.unknown_outcomes) == (2, 2, 0)


def test_alpaca_broker_submit_still_429_after_its_attempts_is_unavailable_and_not_placed(
    venue: FakeAlpacaServer,
) -> None:
    venue.inject_fault(FaultKind.HTTP_429, method="POST", path="/v2/orders", count=3, reset_in_s=0)

    with (
        started(venue, submit_attempts=3) as alpaca,
        pytest.raises(BrokerUnavailable, match="cid-refused: HTTP 429"),
    ):
        alpaca.submit_order(buy("1", "cid-refused"))

    assert [status for _, status in venue.order_posts()] == [429, 429, 429]
    assert count(venue, "GET", "/v2/orders:by_client_order_id") == 0
    assert venue_orders(venue) == []


def test_alpaca_broker_429_storm_completes_within_the_bucket() -> None:
    fake_time = FakeTime()
    config = venue_config(clock=lambda: datetime.fromtimestamp(fake_time.now_s, UTC))
    with StampingServer(config, fake_time) as venue:
        venue.inject_fault(FaultKind.HTTP_429, method="GET", count=12, reset_in_s=2)
        bucket = TokenBucket(
            60,
            burst=3,
            clock=fake_time.clock,
            wall_clock=fake_time.clock,
            sleep=fake_time.sleep,
        )
        with started(venue, bucket=bucket, sleep=fake_time.sleep, read_attempts=20) as alpaca:
            start = fake_time.now_s
            positions = [alpaca.get_position_qty("SPY") for _ in range(20)]
            stats = alpaca.stats
        stamps = venue.stamps

    assert positions == [Decimal(60)] * 20
    assert len(stamps) == total_requests(venue) == stats.requests == 20 + 12
    assert stats.rate_limited == 12
    assert stats.retries == 12
    # Never more than the bucket allows, in any window: burst + rate * window.
    for first in range(len(stamps)):
        for last in range(first, len(stamps)):
            window_s = stamps[last] - stamps[first]
            assert last - first + 1 <= 3 + window_s * 1.0 + 1e-6
    # After each 429 (X-Ratelimit-Remaining: 0) nothing is sent before its reset.
    for earlier, later in itertools.pairwise(stamps[:13]):
        assert later >= int(earlier) + 2
    assert fake_time.now_s > start


def test_alpaca_broker_shares_one_bucket_per_key_id(venue: FakeAlpacaServer) -> None:
    config = alpaca_config(venue, key_id=f"{KEY_ID}-shared-test")
    first, second = AlpacaBroker(config), AlpacaBroker(config)
    with first, second:
        first_bucket = _bucket_of(first)
        second_bucket = _bucket_of(second)

    assert first_bucket is second_bucket


def _bucket_of(broker: AlpacaBroker) -> TokenBucket:
    trading = broker._started()[0]
    adapter = trading._session.get_adapter("https://")
    assert isinstance(adapter, GuardedAdapter)
    return adapter._bucket


def test_alpaca_broker_secret_never_logged_nor_in_reprs_or_errors(venue: FakeAlpacaServer) -> None:
    venue.inject_fault(FaultKind.HTTP_504_AFTER_ACCEPT, method="POST", path="/v2/orders")
    venue.inject_fault(FaultKind.HTTP_500, method="GET", path="/v2/account")
    errors: list[BaseException] = []

    with capture_logs() as logs, started(venue) as alpaca:
        alpaca.submit_order(buy("1", "cid-secret"))
        alpaca.get_account()
        for request in (buy("1000", "cid-big"), buy("1", "cid-secret")):
            try:
                alpaca.submit_order(request)
            except BrokerError as exc:
                errors.append(exc)
        shown = [repr(alpaca), repr(alpaca.stats), repr(alpaca_config(venue))]
    with capture_logs() as bad_logs, started(venue, secret_key="wrong-" + SECRET) as wrong:
        try:
            wrong.get_account()
        except BrokerError as exc:
            errors.append(exc)

    assert len(errors) == 3
    assert any(entry["event"] == "alpaca_retry" for entry in logs)
    assert any(entry["event"] == "alpaca_submit_outcome_unknown" for entry in logs)
    texts = [repr(entry) for entry in [*logs, *bad_logs]]
    texts += ["".join(traceback.format_exception(exc)) for exc in errors]
    texts += shown
    assert any("HTTP 401" in text for text in texts)
    assert all(SECRET not in text for text in texts)


def test_alpaca_broker_before_start_raises(venue: FakeAlpacaServer) -> None:
    with pytest.raises(RuntimeError, match="start"):
        AlpacaBroker(alpaca_config(venue)).get_clock()


def test_alpaca_broker_executor_happy_path_request_counts(venue: FakeAlpacaServer) -> None:
    plan = RebalancePlanned.model_validate(
        planned("plan-http", [Trade("AAPL", "BUY", "1000.00"), Trade("SPY", "BUY", "1000.00")])
    ).rebalance_plan
    config = ExecutionConfig(poll_interval_s=0.01)

    with started(venue) as alpaca:
        outcome = PlanOrderExecutor(alpaca, config, utc_now, time.sleep).execute(plan)

    assert [(o.symbol, o.status) for o in outcome.orders] == [
        ("AAPL", "filled"),
        ("SPY", "filled"),
    ]
    counts = venue.request_counts()
    assert counts[("POST", "/v2/orders")] == 2
    # Per order: lookup, asset, submit; the fill is in the answer.
    assert counts[("GET", "/v2/orders:by_client_order_id")] == 2
    assert counts.get(("GET", "/v2/orders/{order_id}"), 0) == 0
    # The plan's trades and quotes in one snapshots request, whatever its number of symbols.
    assert counts[("GET", "/v2/stocks/snapshots")] == 1
    assert ("GET", "/v2/stocks/trades/latest") not in counts
    assert ("GET", "/v2/stocks/quotes/latest") not in counts
    assert total_requests(venue) == 2 * 3 + 2  # and one read of buying power


def test_alpaca_broker_executor_sells_then_buys_a_full_plan(venue: FakeAlpacaServer) -> None:
    plan = RebalancePlanned.model_validate(
        planned(
            "plan-rotation",
            [
                Trade("TQQQ", "SELL", "-8000.00", 1),
                Trade("SPY", "BUY", "5000.10", 2),
                Trade("AAPL", "BUY", "1873.313", 3),
            ],
        )
    ).rebalance_plan
    config = ExecutionConfig(poll_interval_s=0.01)

    with started(venue) as alpaca:
        outcome = PlanOrderExecutor(alpaca, config, utc_now, time.sleep).execute(plan)
        held = {s: alpaca.get_position_qty(s) for s in ("TQQQ", "SPY", "AAPL")}

    assert [(o.symbol, o.side, o.status, o.filled_qty) for o in outcome.orders] == [
        ("TQQQ", OrderSide.SELL, "filled", Decimal(100)),
        ("SPY", OrderSide.BUY, "filled", Decimal("10.0002")),
        ("AAPL", OrderSide.BUY, "filled", Decimal("10.000005338")),
    ]
    bodies = [json.loads(body) for body in venue.order_requests()]
    assert (bodies[0]["symbol"], bodies[0]["side"], bodies[0]["qty"]) == ("TQQQ", "sell", "100")
    assert {(b["symbol"], b["side"], b["qty"]) for b in bodies[1:]} == {
        ("SPY", "buy", "10.0002"),
        ("AAPL", "buy", "10.000005338"),
    }
    assert held == {
        "TQQQ": Decimal(400),
        "SPY": Decimal("70.0002"),
        "AAPL": Decimal("10.000005338"),
    }


def test_alpaca_broker_executor_partial_fill_is_canceled_with_what_filled(
    venue: FakeAlpacaServer,
) -> None:
    venue.set_fill("TQQQ", Partial(Decimal("0.5")))
    plan = RebalancePlanned.model_validate(
        planned("plan-partial", [Trade("TQQQ", "BUY", "800.00", 1)])
    ).rebalance_plan

    with started(venue) as alpaca:
        outcome = PlanOrderExecutor(
            alpaca, ExecutionConfig(poll_interval_s=0.01), utc_now, time.sleep
        ).execute(plan)

    [order] = outcome.orders
    assert (order.status, order.planned_qty, order.filled_qty, order.success) == (
        "canceled",
        Decimal(10),
        Decimal(5),
        False,
    )
