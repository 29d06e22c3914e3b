"""``rebalance-stream run`` on Alpaca follows orders on the trade-updates stream, which keeps
the account book unless REBALANCE_STREAM_ALPACA_ACCOUNT_BOOK_S is 0."""

from __future__ import annotations

from contextlib import nullcontext
from typing import cast

import pytest

from rebalance_stream.brokers.account_book import StreamAccountBook
from rebalance_stream.brokers.alpaca_trade_updates import AlpacaTradeUpdates
from rebalance_stream.brokers.protocol import Broker
from rebalance_stream.streams.cli import open_order_watch
from rebalance_stream.streams.settings import load_settings

NOT_CALLED = cast(Broker, object())


@pytest.fixture(autouse=True)
def alpaca_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "PKTESTKEY")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "not-a-real-secret")


def test_the_stream_keeps_an_account_book_for_30_seconds_by_default() -> None:
    watch = open_order_watch(load_settings(broker="alpaca"), NOT_CALLED)

    assert isinstance(watch, AlpacaTradeUpdates)
    assert isinstance(watch.account_book, StreamAccountBook)
    assert repr(watch.account_book) == "StreamAccountBook(max_age_s=30.0)"


def test_an_account_book_age_of_zero_reads_the_venue_for_every_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REBALANCE_STREAM_ALPACA_ACCOUNT_BOOK_S", "0")

    watch = open_order_watch(load_settings(broker="alpaca"), NOT_CALLED)

    assert isinstance(watch, AlpacaTradeUpdates)
    assert watch.account_book is None


def test_polling_or_the_paper_broker_has_neither_stream_nor_book() -> None:
    polling = open_order_watch(
        load_settings(broker="alpaca", alpaca_trade_updates=False), NOT_CALLED
    )
    paper = open_order_watch(load_settings(broker="paper"), NOT_CALLED)

    assert isinstance(polling, nullcontext)
    assert isinstance(paper, nullcontext)
