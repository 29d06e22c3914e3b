"""The Alpaca adapter's settings for a fake venue that a scenario started."""

from __future__ import annotations

from typing import Any


def fake_alpaca_adapter_config(server: Any, rate_limit_per_minute: int) -> Any:
    """The Alpaca adapter's settings for a started fake venue: its REST, data and stream URLs
    and key pair."""
    from rebalance_stream.brokers.alpaca import AlpacaConfig

    return AlpacaConfig(
        key_id=server.config.api_key_id,
        secret_key=server.config.secret_key,
        base_url=server.base_url,
        data_url=server.base_url,
        stream_url=server.stream_url,
        rate_limit_per_minute=rate_limit_per_minute,
    )
