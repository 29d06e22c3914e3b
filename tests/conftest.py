"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka_support import kafka_broker, topic_factory  # noqa: F401
from support import FixedClock, started_broker

from rebalance_stream.brokers.paper import PaperBroker


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def paper(clock: FixedClock) -> Iterator[PaperBroker]:
    broker = started_broker(clock=clock)
    yield broker
    broker.close()
