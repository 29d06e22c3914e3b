"""kafka-python clients configured from Settings (SPEC 4); security is ``kafka_security``'s."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer  # type: ignore[import-untyped]
from kafka.admin import NewTopic  # type: ignore[import-untyped]
from kafka.errors import TopicAlreadyExistsError  # type: ignore[import-untyped]

from rebalance_stream.streams.kafka_security import client_config
from rebalance_stream.streams.settings import Settings

__all__ = [
    "client_config",
    "create_topics",
    "make_consumer",
    "make_producer",
    "make_transactional_producer",
    "transactional_id_of",
]


def make_consumer(settings: Settings) -> Any:
    """A group member with no auto-commit; static membership when an instance id is set."""
    extra: dict[str, Any] = {}
    if settings.group_instance_id:
        extra["group_instance_id"] = settings.group_instance_id
    return KafkaConsumer(
        **client_config(settings),
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(1000, settings.session_timeout_ms // 3),
        isolation_level="read_committed",
        **extra,
    )


def make_producer(settings: Settings) -> Any:
    """acks=all with idempotence: a retried send never duplicates a record."""
    return KafkaProducer(
        **client_config(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.producer_linger_ms,
        max_block_ms=settings.producer_max_block_ms,
    )


def transactional_id_of(settings: Settings) -> str:
    """Stable per instance, so a restarted instance fences its own zombie at once."""
    if settings.transactional_id:
        return settings.transactional_id
    instance = settings.group_instance_id or socket.gethostname()
    return f"{settings.group_id}.{instance}"


def make_transactional_producer(settings: Settings) -> Any:
    """A transactional producer, initialized: an open transaction of a previous instance with
    the same transactional.id is aborted now, so read_committed readers are not held back."""
    producer = KafkaProducer(
        **client_config(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.producer_linger_ms,
        max_block_ms=settings.producer_max_block_ms,
        transactional_id=transactional_id_of(settings),
        transaction_timeout_ms=settings.transaction_timeout_ms,
    )
    producer.init_transactions()
    return producer


def create_topics(settings: Settings, input_partitions: int = 3) -> list[str]:
    """Create the input and output topics that do not exist yet; return their names."""
    names = {
        settings.topic_input: input_partitions,
        settings.topic_trade_executed: 1,
        settings.topic_workflow_completed: 1,
        settings.topic_workflow_failed: 1,
        settings.topic_dead_letter: 1,
    }
    admin = KafkaAdminClient(**client_config(settings))
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, partitions, 1)
            for name, partitions in names.items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    finally:
        admin.close()
    return sorted(names)
