"""Route a Disposition's outputs to producer records: topic per event type, key, headers (SPEC 1).

Pure: the Kafka sink only sends what this returns, in this order.
"""

from __future__ import annotations

from dataclasses import dataclass

from rebalance_stream.contracts.outcomes import (
    OutputEvent,
    TradeExecuted,
    WorkflowCompleted,
    WorkflowFailed,
)
from rebalance_stream.contracts.wire import canonical_json
from rebalance_stream.operators.decode import DEFAULT_MAX_INPUT_BYTES
from rebalance_stream.operators.flow import DeadLetter, Disposition
from rebalance_stream.sinks.dead_letter import dead_letter_record
from rebalance_stream.sinks.records import ProducerRecord

DEFAULT_TRADE_EXECUTED_TOPIC = "trade.executed"
DEFAULT_WORKFLOW_COMPLETED_TOPIC = "workflow.completed"
DEFAULT_WORKFLOW_FAILED_TOPIC = "workflow.failed"
DEFAULT_DEAD_LETTER_TOPIC = "rebalance.dead-letter"


@dataclass(frozen=True, slots=True)
class OutputTopics:
    """Where each kind of output goes."""

    trade_executed: str = DEFAULT_TRADE_EXECUTED_TOPIC
    workflow_completed: str = DEFAULT_WORKFLOW_COMPLETED_TOPIC
    workflow_failed: str = DEFAULT_WORKFLOW_FAILED_TOPIC
    dead_letter: str = DEFAULT_DEAD_LETTER_TOPIC

    def for_event(self, event: OutputEvent) -> str:
        if isinstance(event, TradeExecuted):
            return self.trade_executed
        if isinstance(event, WorkflowCompleted):
            return self.workflow_completed
        if isinstance(event, WorkflowFailed):
            return self.workflow_failed
        raise TypeError(f"no topic for {type(event).__name__}")


def event_record(event: OutputEvent, topics: OutputTopics) -> ProducerRecord:
    """An output event keyed by correlation_id, with the SPEC 1 headers, canonical JSON value."""
    headers = (
        ("event_type", event.event_type.encode()),
        ("schema_version", event.schema_version.encode()),
        ("correlation_id", event.correlation_id.encode()),
        ("causation_id", event.causation_id.encode()),
        ("event_id", event.event_id.encode()),
    )
    return ProducerRecord(
        topic=topics.for_event(event),
        key=event.correlation_id.encode(),
        value=canonical_json(event),
        headers=headers,
    )


def producer_records(
    disposition: Disposition,
    topics: OutputTopics,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
) -> tuple[ProducerRecord, ...]:
    """Every record that one input's disposition produces, in producing order."""
    records = []
    for output in disposition.outputs:
        if isinstance(output, DeadLetter):
            records.append(dead_letter_record(output, topics.dead_letter, max_input_bytes))
        else:
            records.append(event_record(output, topics))
    return tuple(records)
