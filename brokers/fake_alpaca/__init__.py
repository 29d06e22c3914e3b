"""A fake Alpaca API server for tests and demos: the real alpaca-py clients talk to it over HTTP.

    with FakeAlpacaServer(FakeAlpacaConfig(account=VenueAccount(...))) as server:
        client = TradingClient("fake-key-id", "fake-secret-key", url_override=server.base_url)

``model`` holds the values, ``engine`` the account and matching rules, ``wire`` Alpaca's JSON
shapes, ``faults`` the fault injection and rate limit, ``api`` the routes, and ``server`` the
HTTP layer and the ``serve`` command line.
"""

from rebalance_stream.brokers.fake_alpaca.engine import Engine
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
from rebalance_stream.brokers.fake_alpaca.server import (
    FakeAlpacaConfig,
    FakeAlpacaServer,
    main,
    serve,
)

__all__ = [
    "ApiError",
    "Delayed",
    "Engine",
    "FakeAlpacaConfig",
    "FakeAlpacaServer",
    "Fault",
    "FaultKind",
    "FillBehaviour",
    "Immediate",
    "Order",
    "Partial",
    "Quote",
    "Reject",
    "VenueAccount",
    "main",
    "serve",
]
