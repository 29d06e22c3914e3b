"""A fake Alpaca API server for tests and demos: the real alpaca-py clients talk to it over HTTP.

    with FakeAlpacaServer(FakeAlpacaConfig(account=VenueAccount(...))) as server:
        client = TradingClient("fake-key-id", "fake-secret-key", url_override=server.base_url)
        stream = TradingStream("fake-key-id", "fake-secret-key", url_override=server.stream_url)

``model`` holds the values, ``rules`` the order checks, ``engine`` the account and matching,
``events`` the order events it emits, ``wire`` Alpaca's JSON shapes, ``faults`` the fault
injection and rate limit, ``api`` the routes, ``http_server`` the HTTP layer, ``trade_stream``
the trading websocket, ``config`` the configuration, and ``server`` the whole server and the
``serve`` command line.
"""

from rebalance_stream.brokers.fake_alpaca.config import FakeAlpacaConfig
from rebalance_stream.brokers.fake_alpaca.engine import Engine
from rebalance_stream.brokers.fake_alpaca.events import Execution, OrderEvent
from rebalance_stream.brokers.fake_alpaca.faults import Fault, FaultKind
from rebalance_stream.brokers.fake_alpaca.model import (
    ApiError,
    Delayed,
    FillBehaviour,
    Immediate,
    Order,
    Partial,
    Quote,
    Reject,
    VenueAccount,
)
from rebalance_stream.brokers.fake_alpaca.server import FakeAlpacaServer, main, serve
from rebalance_stream.brokers.fake_alpaca.trade_stream import StreamCounters

__all__ = [
    "ApiError",
    "Delayed",
    "Engine",
    "Execution",
    "FakeAlpacaConfig",
    "FakeAlpacaServer",
    "Fault",
    "FaultKind",
    "FillBehaviour",
    "Immediate",
    "Order",
    "OrderEvent",
    "Partial",
    "Quote",
    "Reject",
    "StreamCounters",
    "VenueAccount",
    "main",
    "serve",
]
