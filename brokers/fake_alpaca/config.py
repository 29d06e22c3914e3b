"""The fake Alpaca server's configuration: the venue's account, its key pair, its limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from rebalance_stream.brokers.fake_alpaca.model import FillBehaviour, Quote, VenueAccount
from rebalance_stream.brokers.fake_alpaca.wire import parse_behaviour
from rebalance_stream.brokers.paper_account import DEFAULT_FILL_KEY, PaperAccount


@dataclass(frozen=True)
class FakeAlpacaConfig:
    """The venue's account, the key pair it accepts, its rate limit and base latency."""

    account: VenueAccount = field(default_factory=VenueAccount)
    api_key_id: str = "fake-key-id"
    secret_key: str = field(default="fake-secret-key", repr=False)
    rate_limit_per_min: int = 200
    latency_ms: int = 0
    clock: Callable[[], datetime] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_paper_account(cls, paper: PaperAccount, **changes: Any) -> FakeAlpacaConfig:
        """A config over a paper account file: each price is both bid and ask."""
        fills: dict[str, FillBehaviour] = {
            symbol: parse_behaviour(_json_of(model))
            for symbol, model in paper.fill.items()
            if symbol != DEFAULT_FILL_KEY
        }
        account = VenueAccount(
            cash=paper.cash,
            positions=dict(paper.positions),
            quotes={symbol: Quote(price, price) for symbol, price in paper.prices.items()},
            fractionable=paper.fractionable,
            market_open=paper.market == "open",
            fills=fills,
            default_fill=parse_behaviour(_json_of(paper.fill.get(DEFAULT_FILL_KEY, "immediate"))),
        )
        return cls(account=account, latency_ms=paper.latency_ms, **changes)


def _json_of(model: object) -> object:
    return model.model_dump(mode="json") if isinstance(model, BaseModel) else model
