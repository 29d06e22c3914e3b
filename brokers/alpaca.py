"""The Alpaca broker: the Broker protocol over alpaca-py's REST clients, for real money.

Each plan's order is placed at most once. A submit is sent once; when its outcome is unknown
(timeout, 5xx, connection cut) the order is looked up by client_order_id, with backoff, and
never sent again:

    POST /v2/orders -> 504            (Alpaca may have accepted it)
    GET  /v2/orders:by_client_order_id -> 404, 200   -> that order is returned
    (still 404 after ``resolve_attempts`` lookups -> BrokerUnavailable)

Reads and cancels are retried with jittered exponential backoff on 429, 5xx and connection
errors (``alpaca_errors`` has the whole table). A submit answered 429 (refused by the rate
limiter before processing) is sent again, with the same client_order_id, after the limit
resets: at most ``submit_attempts`` sends. Every request waits for the key's token bucket.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any, Final, TypeVar
from urllib.parse import quote

import structlog
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.trading.client import TradingClient
from cachetools import TTLCache, cachedmethod
from tenacity import Retrying

from rebalance_stream.brokers.alpaca_clock import clock_cache
from rebalance_stream.brokers.alpaca_config import AlpacaConfig
from rebalance_stream.brokers.alpaca_errors import (
    VENUE_FAILURES,
    ApiFailure,
    Operation,
    Outcome,
    classify,
    describe,
    is_rate_limited,
    is_retryable_read,
    to_broker_error,
)
from rebalance_stream.brokers.alpaca_http import (
    GuardedAdapter,
    RequestStats,
    close_session,
    guard,
)
from rebalance_stream.brokers.alpaca_market_data import AlpacaMarketData
from rebalance_stream.brokers.alpaca_retry import backoff
from rebalance_stream.brokers.alpaca_wire import (
    order_body,
    parse_account,
    parse_asset,
    parse_clock,
    parse_order,
    parse_orders,
    parse_position_qty,
    parse_positions,
)
from rebalance_stream.brokers.protocol import (
    AccountSnapshot,
    AssetInfo,
    BrokerOrder,
    BrokerUnavailable,
    MarketClock,
    MarketData,
    OrderNotFound,
    OrderRequest,
    Quote,
    UnknownAsset,
)
from rebalance_stream.brokers.rate_limit import TokenBucket, shared_bucket
from rebalance_stream.contracts.wire import format_timestamp

__all__ = ["ORDERS_PAGE_LIMIT", "AlpacaBroker", "AlpacaConfig"]

log = structlog.get_logger(__name__)

ORDERS_PAGE_LIMIT: Final = 500
ASSET_CACHE_SIZE: Final = 10_000
_TIE_MARGIN = timedelta(microseconds=1)

T = TypeVar("T")


class AlpacaBroker:
    """A Broker over Alpaca. Thread-safe; ``stats`` counts requests and retries.

    The constructor stores configuration; ``start()`` builds the clients (or use ``with``).
    Calls before ``start()`` raise RuntimeError. ``bucket`` defaults to the one shared by
    every broker with the same key id; ``sleep`` is the backoff's sleep.
    """

    def __init__(
        self,
        config: AlpacaConfig,
        *,
        bucket: TokenBucket | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._config = config
        self._bucket = bucket
        self._sleep = sleep
        self.stats = RequestStats()
        self._clients: tuple[TradingClient, StockHistoricalDataClient] | None = None
        self._assets: TTLCache[str, AssetInfo] = TTLCache(
            maxsize=ASSET_CACHE_SIZE, ttl=config.asset_cache_s, timer=time.monotonic
        )
        self._assets_condition = threading.Condition()
        self._clock = clock_cache(config.clock_cache_s)
        self._clock_condition = threading.Condition()
        self._market = AlpacaMarketData(config, self._data_get)

    def __repr__(self) -> str:
        return f"AlpacaBroker(base_url={self._config.base_url!r}, paper={self._config.is_paper})"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Build the trading and data clients, each guarded (see ``alpaca_http``)."""
        if self._clients is not None:
            return
        config = self._config
        bucket = self._bucket or shared_bucket(
            config.key_id, config.rate_limit_per_minute, config.rate_limit_burst
        )
        secret = config.secret_key.get_secret_value()
        trading = TradingClient(
            config.key_id, secret, paper=config.is_paper, url_override=config.base_url
        )
        data = StockHistoricalDataClient(config.key_id, secret, url_override=config.data_url)
        timeout_s = (config.connect_timeout_s, config.read_timeout_s)
        for client in (trading, data):
            guard(client, GuardedAdapter(bucket, self.stats, timeout_s, config.pool_size))
        self._clients = (trading, data)
        log.info("alpaca_broker_started", base_url=config.base_url, paper=config.is_paper)

    def close(self) -> None:
        """Close the clients' connections; idempotent."""
        if self._clients is None:
            return
        for client in self._clients:
            close_session(client)
        self._clients = None
        log.info("alpaca_broker_closed")

    def __enter__(self) -> AlpacaBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- Broker ------------------------------------------------------------------------------

    @cachedmethod(
        cache=lambda self: self._clock,
        key=lambda _self: "clock",
        condition=lambda self: self._clock_condition,
    )
    def get_clock(self) -> MarketClock:
        """The market clock; a reading is kept for ``clock_cache_s`` (see ``alpaca_clock``).
        Concurrent reads while none is kept make one request; the others wait for it."""
        return parse_clock(self._read(lambda: self._trading.get("/clock"), "clock"))

    def get_account(self) -> AccountSnapshot:
        return parse_account(self._read(lambda: self._trading.get("/account"), "account"))

    def get_position_qty(self, symbol: str) -> Decimal:
        """The quantity held, Decimal 0 when Alpaca has no position (404)."""
        path = f"/positions/{_segment(symbol)}"
        try:
            raw = self._read(lambda: self._trading.get(path), symbol)
        except OrderNotFound:
            return Decimal(0)
        return parse_position_qty(raw)

    def get_positions(self) -> dict[str, Decimal]:
        """Every position, from one GET /v2/positions."""
        return parse_positions(self._read(lambda: self._trading.get("/positions"), "positions"))

    @cachedmethod(
        cache=lambda self: self._assets,
        key=lambda _self, symbol: symbol.upper(),
        condition=lambda self: self._assets_condition,
    )
    def get_asset(self, symbol: str) -> AssetInfo:
        """Raises UnknownAsset when Alpaca does not know the symbol (404). A known asset is
        kept for ``asset_cache_s``: whether it is fractionable does not change per order.
        Concurrent first reads of one symbol make one request; the others wait for it."""
        path = f"/assets/{_segment(symbol)}"
        try:
            raw = self._read(lambda: self._trading.get(path), symbol)
        except OrderNotFound:
            raise UnknownAsset(symbol.upper()) from None
        return parse_asset(raw)

    def get_latest_price(self, symbol: str) -> Decimal | None:
        """The latest trade's price, else the latest quote's midpoint, else None."""
        return self.get_latest_prices([symbol]).get(symbol.upper())

    def get_latest_prices(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """Latest trade prices in one request; see ``AlpacaMarketData.latest_prices``."""
        return self._market.latest_prices(symbols)

    def get_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """Latest quotes in one request; see ``AlpacaMarketData.quotes``."""
        return self._market.quotes(symbols)

    def get_market_data(self, symbols: Sequence[str]) -> MarketData:
        """Prices and quotes from one snapshots read, shared by calls for the same symbols
        for ``market_data_share_s`` (``MarketSnapshots``; see ``alpaca_market_data``)."""
        return self._market.snapshots(symbols)

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Send the market or limit day order once. Raises DuplicateClientOrderId,
        OrderRejected (with Alpaca's message; before sending for a limit price off Alpaca's
        tick) or BrokerUnavailable; an unknown outcome is resolved by lookup."""
        body = order_body(request)
        client_order_id = request.client_order_id
        sending = self._retrying(self._config.submit_attempts, retry_on=is_rate_limited)
        try:
            raw = sending(lambda: self._trading.post("/orders", body))
        except VENUE_FAILURES as exc:
            failure = describe(exc)
            outcome = classify(failure, Operation.SUBMIT)
            if outcome is Outcome.UNKNOWN:
                return self._resolve_unknown(client_order_id, failure)
            log.info(
                "alpaca_order_refused",
                client_order_id=client_order_id,
                outcome=outcome.value,
                error=str(failure),
            )
            raise to_broker_error(failure, outcome, client_order_id) from exc
        order = parse_order(raw)
        log.info(
            "alpaca_order_submitted",
            client_order_id=client_order_id,
            broker_order_id=order.broker_order_id,
            status=order.status.value,
        )
        return order

    def get_order(self, broker_order_id: str) -> BrokerOrder:
        """Raises OrderNotFound."""
        path = f"/orders/{_segment(broker_order_id)}"
        return parse_order(self._read(lambda: self._trading.get(path), broker_order_id))

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client_order_id, or None (Alpaca's 404)."""
        find = self._find_by_client_id
        return self._call(Operation.READ, lambda: find(client_order_id), client_order_id)

    def cancel_order(self, broker_order_id: str) -> None:
        """Ask for a cancel. An order that is no longer cancelable (422) is not an error: the
        caller reads its final state. Raises OrderNotFound."""
        path = f"/orders/{_segment(broker_order_id)}"
        self._call(Operation.CANCEL, lambda: self._trading.delete(path), broker_order_id)

    def list_orders(self, client_order_id_prefix: str = "") -> list[BrokerOrder]:
        """Every order whose client_order_id starts with the prefix, oldest first.

        Pages newest first through GET /v2/orders?status=all, 500 a page, each page ``until``
        just past the oldest order seen so that ties on submitted_at are not lost.
        """
        params = {"status": "all", "limit": str(ORDERS_PAGE_LIMIT), "direction": "desc"}
        seen: dict[str, BrokerOrder] = {}
        while True:
            page = parse_orders(self._read(lambda: self._trading.get("/orders", params), "orders"))
            fresh = [order for order in page if order.broker_order_id not in seen]
            seen.update((order.broker_order_id, order) for order in fresh)
            if len(page) < ORDERS_PAGE_LIMIT:
                break
            if not fresh:
                raise BrokerUnavailable("cannot page orders: over 500 share one submitted_at")
            oldest = min(order.submitted_at for order in page)
            params["until"] = format_timestamp(oldest + _TIE_MARGIN)
        matching = [
            o for o in seen.values() if o.client_order_id.startswith(client_order_id_prefix)
        ]
        return sorted(matching, key=lambda order: order.submitted_at)

    # -- internals ---------------------------------------------------------------------------

    @property
    def _trading(self) -> TradingClient:
        return self._started()[0]

    def _started(self) -> tuple[TradingClient, StockHistoricalDataClient]:
        if self._clients is None:
            raise RuntimeError("AlpacaBroker is not started; call start() first")
        return self._clients

    def _data_get(self, path: str, params: dict[str, str]) -> Any:
        """A data API read, retried; 404 raises OrderNotFound."""
        data = self._started()[1]
        return self._read(lambda: data.get(path, params), params["symbols"])

    def _read(self, call: Callable[[], T], subject: str) -> T:
        """Run a read, retried; 404 raises OrderNotFound(subject) for the caller to translate."""
        result = self._call(Operation.READ, call, subject)
        if result is None:
            raise BrokerUnavailable(f"{subject}: empty response from Alpaca")
        return result

    def _call(self, operation: Operation, call: Callable[[], T], subject: str) -> T | None:
        """Run ``call`` with the read retry policy; map the final failure onto the protocol."""
        try:
            return self._retrying(self._config.read_attempts)(call)
        except VENUE_FAILURES as exc:
            failure = describe(exc)
            outcome = classify(failure, operation)
            if outcome is Outcome.ALREADY_DONE:
                log.info("alpaca_cancel_too_late", order=subject, error=str(failure))
                return None
            raise to_broker_error(failure, outcome, subject) from exc

    def _find_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """One lookup by client_order_id: the order, or None on Alpaca's 404."""
        params = {"client_order_id": client_order_id}
        try:
            raw = self._trading.get("/orders:by_client_order_id", params)
        except VENUE_FAILURES as exc:
            if classify(describe(exc), Operation.READ) is Outcome.NOT_FOUND:
                return None
            raise
        return parse_order(raw)

    def _resolve_unknown(self, client_order_id: str, failure: ApiFailure) -> BrokerOrder:
        """Find the order a submit of unknown outcome may have placed; never send it again."""
        self.stats.add_unknown_outcome()
        log.warning(
            "alpaca_submit_outcome_unknown", client_order_id=client_order_id, error=str(failure)
        )
        attempts = self._config.resolve_attempts
        retrying = self._retrying(attempts, retry_none=True)
        try:
            found = retrying(self._find_by_client_id, client_order_id)
        except VENUE_FAILURES as exc:
            raise BrokerUnavailable(
                f"submit of {client_order_id} failed with {failure}, and looking it up failed "
                f"with {describe(exc)}; it was not sent again"
            ) from exc
        if found is None:
            raise BrokerUnavailable(
                f"submit of {client_order_id} failed with {failure}; no such order found in "
                f"{attempts} lookups; it was not sent again, so look it up before resubmitting"
            )
        log.info(
            "alpaca_submit_outcome_resolved",
            client_order_id=client_order_id,
            broker_order_id=found.broker_order_id,
            status=found.status.value,
        )
        return found

    def _retrying(
        self,
        attempts: int,
        *,
        retry_on: Callable[[BaseException], bool] = is_retryable_read,
        retry_none: bool = False,
    ) -> Retrying:
        """The backoff (see ``alpaca_retry``) for ``attempts`` calls, counted in ``stats``."""
        return backoff(
            self._config,
            self.stats,
            self._sleep,
            attempts,
            retry_on=retry_on,
            retry_none=retry_none,
        )


def _segment(value: str) -> str:
    """One URL path segment: an id or a symbol can never add a path or a query."""
    return quote(value, safe="")
