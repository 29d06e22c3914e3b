"""The fake Alpaca's market data endpoints: latest quotes, latest trades and snapshots.

Every symbol's quote is the venue's (``Engine.quote``); its latest trade is at the quote's mid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from rebalance_stream.brokers.fake_alpaca.api import Handler, Reply, Request, json_reply
from rebalance_stream.brokers.fake_alpaca.engine import Engine
from rebalance_stream.brokers.fake_alpaca.model import Quote
from rebalance_stream.contracts.wire import format_timestamp

DATA_FEEDS = frozenset({"iex", "sip", "delayed_sip", "otc", "boats", "overnight"})
_QUOTE_SIZE = 100
_TRADE_ID = 1


class MarketDataApi:
    """The ``/v2/stocks`` endpoints over one Engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/v2/stocks/quotes/latest", self.latest_quotes),
            ("GET", "/v2/stocks/trades/latest", self.latest_trades),
            ("GET", "/v2/stocks/snapshots", self.snapshots),
        ]

    def latest_quotes(self, request: Request, args: Mapping[str, str]) -> Reply:
        """``{"quotes": {symbol: {ap, as, ax, bp, bs, bx, c, t, z}}}``; unknown symbols left out."""
        return self._answer(request, lambda found, now: {"quotes": _each(_quote_json, found, now)})

    def latest_trades(self, request: Request, args: Mapping[str, str]) -> Reply:
        """``{"trades": {symbol: {c, i, p, s, t, x, z}}}`` at the quote's mid."""
        return self._answer(request, lambda found, now: {"trades": _each(_trade_json, found, now)})

    def snapshots(self, request: Request, args: Mapping[str, str]) -> Reply:
        """``{symbol: {latestTrade, latestQuote}}``, keyed at the top level as Alpaca's multi-
        symbol snapshots are (the fake has no bars); unknown symbols left out."""
        return self._answer(request, lambda found, now: _each(_snapshot_json, found, now))

    def _answer(
        self, request: Request, body: Callable[[dict[str, Quote], str], dict[str, object]]
    ) -> Reply:
        """``body`` of the quotes of the requested symbols that have one, at the venue's time;
        or the 400 answer to a request without symbols or with an unknown feed."""
        symbols = self._symbols(request)
        if isinstance(symbols, Reply):
            return symbols
        now = format_timestamp(self._engine.clock()[0])
        found = {s: q for s in symbols if (q := self._engine.quote(s)) is not None}
        return json_reply(200, body(found, now))

    @staticmethod
    def _symbols(request: Request) -> list[str] | Reply:
        """The ``symbols`` parameter, or the market data API's 400 answer."""
        feed = request.params.get("feed")
        if feed is not None and feed not in DATA_FEEDS:
            return json_reply(400, {"message": f"invalid feed: {feed}"})
        symbols = [s.strip().upper() for s in request.params.get("symbols", "").split(",")]
        if not any(symbols):
            return json_reply(400, {"message": "missing symbols"})
        return [s for s in symbols if s]


def _quote_json(quote: Quote, now: str) -> dict[str, object]:
    """A latest quote as the market data API writes it."""
    return {
        "ap": quote.ask,
        "as": _QUOTE_SIZE,
        "ax": "V",
        "bp": quote.bid,
        "bs": _QUOTE_SIZE,
        "bx": "V",
        "c": ["R"],
        "t": now,
        "z": "B",
    }


def _trade_json(quote: Quote, now: str) -> dict[str, object]:
    """A latest trade at the quote's mid, as the market data API writes it."""
    return {
        "c": ["@"],
        "i": _TRADE_ID,
        "p": quote.mid,
        "s": _QUOTE_SIZE,
        "t": now,
        "x": "V",
        "z": "B",
    }


def _snapshot_json(quote: Quote, now: str) -> dict[str, object]:
    return {"latestTrade": _trade_json(quote, now), "latestQuote": _quote_json(quote, now)}


def _each(
    render: Callable[[Quote, str], dict[str, object]], found: dict[str, Quote], now: str
) -> dict[str, object]:
    return {symbol: render(quote, now) for symbol, quote in found.items()}
