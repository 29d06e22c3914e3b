"""How outcomes reach Kafka under each processing guarantee (SPEC 4).

``at_least_once``: an idempotent producer; an input is acknowledged once all its records are in
Kafka, and the source commits its offset. ``exactly_once``: a transactional producer; an input's
records and its offset commit share one transaction, and the source commits nothing itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from rebalance_stream.operators.flow import Disposition, SourcePosition
from rebalance_stream.sinks.kafka_sink import KafkaRecordSender, OutcomePublisher
from rebalance_stream.sinks.routing import OutputTopics
from rebalance_stream.sinks.transactional_sink import (
    TransactionalOutcomePublisher,
    TransactionHooks,
)
from rebalance_stream.streams.kafka_clients import make_producer, make_transactional_producer
from rebalance_stream.streams.kafka_source import KafkaPlanSource
from rebalance_stream.streams.settings import Settings


class Publishing(Protocol):
    """Publishes decided inputs; ``received`` is told every input the source emits, in order."""

    def received(self, position: SourcePosition) -> None: ...

    def publish(self, disposition: Disposition) -> None: ...

    def revoked(self, partitions: list[Any]) -> None: ...

    def close(self) -> None: ...


class AtLeastOncePublishing:
    """An idempotent producer; the source commits acknowledged offsets."""

    def __init__(
        self,
        settings: Settings,
        topics: OutputTopics,
        source: KafkaPlanSource,
        acknowledged: Callable[[Disposition], None],
    ) -> None:
        self._producer: Any = make_producer(settings)
        self._publisher = OutcomePublisher(
            KafkaRecordSender(self._producer),
            topics,
            acknowledged,
            source.fail,
            settings.max_input_bytes,
        )

    def received(self, position: SourcePosition) -> None:
        """Nothing to do: the source tracks its own offsets."""

    def publish(self, disposition: Disposition) -> None:
        self._publisher.publish(disposition)

    def revoked(self, partitions: list[Any]) -> None:
        """Nothing to do: the source commits what is done."""

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()


class ExactlyOncePublishing:
    """A transactional producer; offsets are committed inside its transactions."""

    def __init__(
        self,
        settings: Settings,
        topics: OutputTopics,
        source: KafkaPlanSource,
        acknowledged: Callable[[Disposition], None],
        before_commit: Callable[[], None],
    ) -> None:
        self._producer: Any = make_transactional_producer(settings)

        def committed(dispositions: list[Disposition]) -> None:
            for disposition in dispositions:
                acknowledged(disposition)

        hooks = TransactionHooks(committed, source.fail, source.group_metadata, before_commit)
        self._publisher = TransactionalOutcomePublisher(
            self._producer,
            topics,
            hooks,
            settings.transaction_interval_ms / 1000,
            settings.max_input_bytes,
        )
        self._publisher.start()

    def received(self, position: SourcePosition) -> None:
        self._publisher.received(position)

    def publish(self, disposition: Disposition) -> None:
        self._publisher.publish(disposition)

    def revoked(self, partitions: list[Any]) -> None:
        self._publisher.release_partitions(partitions)

    def close(self) -> None:
        self._publisher.stop()
        self._producer.close()
