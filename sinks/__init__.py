"""Sinks: routing of outcomes to one topic per event type, and the dead-letter format."""

from rebalance_stream.sinks.dead_letter import dead_letter_record
from rebalance_stream.sinks.records import ProducerRecord
from rebalance_stream.sinks.routing import OutputTopics, event_record, producer_records

__all__ = [
    "OutputTopics",
    "ProducerRecord",
    "dead_letter_record",
    "event_record",
    "producer_records",
]
