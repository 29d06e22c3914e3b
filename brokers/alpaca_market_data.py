"""Alpaca's market data reads: latest trades, latest quotes and snapshots, batched by symbol.

A snapshots answer (a plan's prices and quotes in one request) serves every read of the same
symbols for ``market_data_share_s``; reads made while it is out wait for it (cachetools'
``TTLCache`` with a condition) instead of sending their own. Plans of many accounts that
follow one model portfolio ask for the same symbols at once, and every request counts against
the key's 200 a minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Final

from cachetools import TTLCache, cachedmethod

from rebalance_stream.brokers.alpaca_config import AlpacaConfig
from rebalance_stream.brokers.alpaca_wire import (
    latest_params,
    parse_quotes,
    parse_snapshots,
    parse_trade_price,
)
from rebalance_stream.brokers.protocol import MarketData, OrderNotFound, Quote

MARKET_DATA_CACHE_SIZE: Final = 256

ReadLatest = Callable[[str, dict[str, str]], Any]
"""GET a data API path with these query parameters: the JSON answer, raising
OrderNotFound on 404."""


class AlpacaMarketData:
    """The market data reads of one AlpacaBroker; ``get`` sends a data API request."""

    def __init__(self, config: AlpacaConfig, get: ReadLatest) -> None:
        self._feed = config.data_feed
        self._get = get
        self._shared: TTLCache[tuple[str, ...], MarketData] | None = None
        if config.market_data_share_s > 0:
            self._shared = TTLCache(
                maxsize=MARKET_DATA_CACHE_SIZE, ttl=config.market_data_share_s, timer=time.monotonic
            )
        self._shared_condition = threading.Condition()

    def latest_prices(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """Latest trade prices in one GET /v2/stocks/trades/latest?symbols=A,B; a symbol
        without a trade gets its quote's midpoint from one more request."""
        params = latest_params(symbols, self._feed)
        if params is None:
            return {}
        wanted = params["symbols"].split(",")
        trades = self._latest("/stocks/trades/latest", params)
        prices = {s: p for s in wanted if (p := parse_trade_price(trades, s)) is not None}
        missing = [symbol for symbol in wanted if symbol not in prices]
        if missing:
            prices.update((s, q.mid) for s, q in self.quotes(missing).items())
        return prices

    def quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """The latest quotes, all in one GET /v2/stocks/quotes/latest?symbols=A,B (none for no
        symbols). A symbol without a quote, or with a one-sided, zero or crossed one, is
        absent."""
        params = latest_params(symbols, self._feed)
        if params is None:
            return {}
        return parse_quotes(self._latest("/stocks/quotes/latest", params), symbols)

    def snapshots(self, symbols: Sequence[str]) -> MarketData:
        """Latest prices and quotes together, from one GET /v2/stocks/snapshots?symbols=A,B
        (shared, as the module says): a symbol without a trade is priced at its quote's
        midpoint."""
        wanted = tuple(sorted({symbol.upper() for symbol in symbols}))
        if self._shared is None:
            return self._read_snapshots(wanted)
        return self._shared_snapshots(wanted)

    @cachedmethod(
        cache=lambda self: self._shared,
        key=lambda _self, symbols: symbols,
        condition=lambda self: self._shared_condition,
    )
    def _shared_snapshots(self, symbols: tuple[str, ...]) -> MarketData:
        return self._read_snapshots(symbols)

    def _read_snapshots(self, symbols: tuple[str, ...]) -> MarketData:
        params = latest_params(symbols, self._feed)
        if params is None:
            return MarketData({}, {})
        return parse_snapshots(self._latest("/stocks/snapshots", params), symbols)

    def _latest(self, path: str, params: dict[str, str]) -> Any:
        """The answer, or None when the data API has nothing for these symbols (404)."""
        try:
            return self._get(path, params)
        except OrderNotFound:
            return None
