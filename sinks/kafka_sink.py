"""Publish each Disposition's records to Kafka; acknowledge its input once all are in Kafka.

An input is acknowledged only after every record it caused is acknowledged by the brokers
(acks=all, idempotent producer). A record that still fails after the producer's retries is
fatal: the input is never acknowledged, so its offset is never committed (SPEC 1).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from rebalance_stream.operators.decode import DEFAULT_MAX_INPUT_BYTES
from rebalance_stream.operators.flow import Disposition, SourcePosition
from rebalance_stream.sinks.records import ProducerRecord
from rebalance_stream.sinks.routing import OutputTopics, producer_records

log = structlog.get_logger(__name__)

Delivered = Callable[[BaseException | None], None]


class RecordSender(Protocol):
    """Sends one record; calls ``on_delivered(None)`` once it is in Kafka, or with the error."""

    def send(self, record: ProducerRecord, on_delivered: Delivered) -> None: ...


class KafkaRecordSender:
    """A RecordSender over a kafka-python ``KafkaProducer``."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer

    def send(self, record: ProducerRecord, on_delivered: Delivered) -> None:
        try:
            future = self._producer.send(
                record.topic, value=record.value, key=record.key, headers=list(record.headers)
            )
        except Exception as exc:  # e.g. no metadata within max_block_ms: not delivered
            on_delivered(exc)
            return
        future.add_callback(lambda _metadata: on_delivered(None))
        future.add_errback(on_delivered)


class _PendingInput:
    """Counts one input's records still in flight; reports once, success or failure."""

    def __init__(self, remaining: int) -> None:
        self._lock = threading.Lock()
        self._remaining = remaining
        self._settled = False

    def delivered(self, error: BaseException | None) -> bool | None:
        """True when the last record landed, False on the first error, None otherwise."""
        with self._lock:
            if self._settled:
                return None
            if error is not None:
                self._settled = True
                return False
            self._remaining -= 1
            if self._remaining == 0:
                self._settled = True
                return True
            return None


class OutcomePublisher:
    """Routes dispositions to topics and reports each input as acknowledged or failed."""

    def __init__(
        self,
        sender: RecordSender,
        topics: OutputTopics,
        on_acknowledged: Callable[[Disposition], None],
        on_fatal: Callable[[SourcePosition, BaseException], None],
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    ) -> None:
        self._sender = sender
        self._topics = topics
        self._on_acknowledged = on_acknowledged
        self._on_fatal = on_fatal
        self._max_input_bytes = max_input_bytes

    def publish(self, disposition: Disposition) -> None:
        """Send the disposition's records in order; an input with none is acknowledged now."""
        position = disposition.position
        records = producer_records(disposition, self._topics, self._max_input_bytes)
        if not records:
            self._on_acknowledged(disposition)
            return
        pending = _PendingInput(len(records))

        def delivered(error: BaseException | None) -> None:
            outcome = pending.delivered(error)
            if outcome is True:
                self._on_acknowledged(disposition)
            elif outcome is False and error is not None:
                log.error(
                    "output_not_delivered",
                    topic=position.topic,
                    partition=position.partition,
                    offset=position.offset,
                    error=repr(error),
                )
                self._on_fatal(position, error)

        for record in records:
            self._sender.send(record, delivered)
