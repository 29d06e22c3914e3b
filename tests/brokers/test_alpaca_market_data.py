"""Plans trading the same symbols share one snapshots read: calls made while it is out wait
for it, and its answer serves for ``market_data_share_s``; 0 gives each call its own."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

from rebalance_stream.brokers.alpaca_config import AlpacaConfig
from rebalance_stream.brokers.alpaca_market_data import AlpacaMarketData
from rebalance_stream.brokers.protocol import MarketData

SNAPSHOTS = {
    "SPY": {"latestTrade": {"p": "500.00"}, "latestQuote": {"bp": "499.99", "ap": "500.01"}},
    "QQQ": {"latestTrade": {"p": "400.00"}, "latestQuote": {"bp": "399.99", "ap": "400.01"}},
}


class DataApi:
    """Answers every snapshots read with SNAPSHOTS, after ``gate`` opens; records each read."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, dict[str, str]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.reading = threading.Event()

    def get(self, path: str, params: dict[str, str]) -> Any:
        self.reads.append((path, dict(params)))
        self.reading.set()
        self.gate.wait(10)
        return SNAPSHOTS


def market_data(api: DataApi, share_s: float) -> AlpacaMarketData:
    config = AlpacaConfig(key_id="PKTEST", secret_key="not-a-secret", market_data_share_s=share_s)
    return AlpacaMarketData(config, api.get)


def test_a_read_made_while_another_for_the_same_symbols_is_out_waits_for_its_answer() -> None:
    api = DataApi()
    market = market_data(api, share_s=60.0)
    api.gate.clear()
    answers: list[MarketData] = []
    first = threading.Thread(target=lambda: answers.append(market.snapshots(["spy", "QQQ"])))
    first.start()
    assert api.reading.wait(10)
    second = threading.Thread(target=lambda: answers.append(market.snapshots(["QQQ", "SPY"])))
    second.start()
    api.gate.set()
    first.join(10)
    second.join(10)

    assert api.reads == [("/stocks/snapshots", {"symbols": "QQQ,SPY"})]
    assert len(answers) == 2
    assert answers[0] is answers[1]
    assert answers[0].prices == {"SPY": Decimal("500.00"), "QQQ": Decimal("400.00")}


def test_other_symbols_and_an_answer_older_than_share_s_are_read_again() -> None:
    api = DataApi()
    market = market_data(api, share_s=0.05)

    market.snapshots(["SPY", "QQQ"])
    market.snapshots(["SPY"])
    time.sleep(0.1)
    market.snapshots(["QQQ", "SPY"])

    assert [params["symbols"] for _, params in api.reads] == ["QQQ,SPY", "SPY", "QQQ,SPY"]


def test_share_s_zero_reads_for_every_call() -> None:
    api = DataApi()
    market = market_data(api, share_s=0)

    market.snapshots(["SPY"])
    market.snapshots(["SPY"])

    assert len(api.reads) == 2
