"""Fixtures for tests marked ``kafka``: one broker per session, and fresh topics per test.

Set REBALANCE_STREAM_TEST_KAFKA=host:port to use a running broker instead of starting one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from uuid import uuid4

import pytest

from rebalance_stream.streams.local_kafka import LocalKafka, create_topics, fetch_jars

TEST_KAFKA_ENV = "REBALANCE_STREAM_TEST_KAFKA"

TopicFactory = Callable[..., str]


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bootstrap address of a broker that lives for the whole test session."""
    external = os.environ.get(TEST_KAFKA_ENV)
    if external:
        yield external
        return
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"), jars=fetch_jars())
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def topic_factory(kafka_broker: str) -> TopicFactory:
    """``make(prefix="t", partitions=1)`` creates a topic with a unique name and returns it."""

    def make(prefix: str = "t", partitions: int = 1) -> str:
        name = f"{prefix}-{uuid4().hex[:12]}"
        create_topics(kafka_broker, [name], partitions)
        return name

    return make
