"""The fake Alpaca venue and the real alpaca-py adapter over it, for tests of execution."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rebalance_stream.brokers.alpaca import AlpacaBroker, AlpacaConfig
from rebalance_stream.brokers.alpaca_trade_updates import AlpacaTradeUpdates
from rebalance_stream.brokers.fake_alpaca import FakeAlpacaConfig, FakeAlpacaServer, VenueAccount
from rebalance_stream.brokers.rate_limit import TokenBucket

SECRET = "s3cr3t-never-printed-0123456789"
KEY_ID = "PKTESTKEY"
CONNECT_TIMEOUT_S = 10.0


def fake_venue_config(account: VenueAccount, **changes: Any) -> FakeAlpacaConfig:
    """The fake venue with the test key pair and a rate limit no test reaches."""
    defaults: dict[str, Any] = {
        "account": account,
        "api_key_id": KEY_ID,
        "secret_key": SECRET,
        "rate_limit_per_min": 100_000,
    }
    return FakeAlpacaConfig(**{**defaults, **changes})


def adapter_config(server: FakeAlpacaServer, **changes: Any) -> AlpacaConfig:
    """The adapter's settings for the fake: its REST, data and stream URLs, short backoff."""
    defaults: dict[str, Any] = {
        "key_id": KEY_ID,
        "secret_key": SECRET,
        "base_url": server.base_url,
        "data_url": server.base_url,
        "stream_url": server.stream_url,
        "connect_timeout_s": 2.0,
        "read_timeout_s": 3.0,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    return AlpacaConfig(**{**defaults, **changes})


@contextmanager
def started_adapter(
    server: FakeAlpacaServer,
    *,
    bucket: TokenBucket | None = None,
    sleep: Callable[[float], None] | None = None,
    **changes: Any,
) -> Iterator[AlpacaBroker]:
    """A started AlpacaBroker over the fake, with its own token bucket."""
    broker = AlpacaBroker(
        adapter_config(server, **changes),
        bucket=bucket or TokenBucket(100_000),
        **({"sleep": sleep} if sleep is not None else {}),
    )
    with broker:
        yield broker


@contextmanager
def streaming(
    server: FakeAlpacaServer, broker: AlpacaBroker, **changes: Any
) -> Iterator[AlpacaTradeUpdates]:
    """Trade updates from the fake, connected before this yields; reconnects are quick."""
    updates = AlpacaTradeUpdates(
        adapter_config(server),
        broker,
        poll_interval_s=0.05,
        reconnect_backoff_s=(0.05, 0.2),
        **changes,
    )
    with updates:
        connected = updates.wait_connected(CONNECT_TIMEOUT_S)
        if not connected or not server.wait_for_stream(lambda c: c.listening >= 1):
            raise RuntimeError("the fake's trade stream did not connect")
        yield updates


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Whether ``condition`` came true within ``timeout_s`` (checked every 10 ms)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True
