"""Format a dead letter (SPEC 2): the original bytes and key, original headers plus dlq.*."""

from __future__ import annotations

import hashlib

from rebalance_stream.operators.flow import DeadLetter
from rebalance_stream.sinks.records import ProducerRecord


def dead_letter_record(dead_letter: DeadLetter, topic: str, max_bytes: int) -> ProducerRecord:
    """The dead-letter record. A value above ``max_bytes`` is truncated to it, and the
    original's sha256 and size travel as headers."""
    record = dead_letter.record
    failure = dead_letter.failure
    position = record.position
    headers = [
        *record.headers,
        ("dlq.error.type", failure.error_type.encode()),
        ("dlq.error.message", failure.reason.encode()),
        ("dlq.error.reason_code", failure.reason_code.encode()),
        ("dlq.failure_step", failure.stage.value.encode()),
        ("dlq.source.topic", position.topic.encode()),
        ("dlq.source.partition", str(position.partition).encode()),
        ("dlq.source.offset", str(position.offset).encode()),
    ]
    value = record.value
    if len(value) > max_bytes:
        headers.append(("dlq.original.sha256", hashlib.sha256(value).hexdigest().encode()))
        headers.append(("dlq.original.size", str(len(value)).encode()))
        value = value[:max_bytes]
    return ProducerRecord(topic=topic, key=record.key, value=value, headers=tuple(headers))
