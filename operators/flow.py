"""The value that flows through the pipeline: one Envelope per input record.

An Envelope keeps the input's source position, key, headers, bytes and receive time, and a
payload that each step replaces: the decoded document, the validated event, the execution, and
at the end the Disposition. A fault is a value, ``Failed``; a duplicate is ``Skipped``. Steps
pass both through untouched, so every input reaches the end and gets exactly one disposition.
A redelivered plan whose outputs are on record is ``Recorded``, and is published again as is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, TypeVar

from reactivex import Observable

from rebalance_stream.contracts.execution import ExecutionResult, OrderResult, Scenario
from rebalance_stream.contracts.outcomes import FailureStep, OutputEvent
from rebalance_stream.contracts.rebalance import RebalancePlanned

In = TypeVar("In")
Out = TypeVar("Out")
T = TypeVar("T")

Op = Callable[[Observable[In]], Observable[Out]]
"""An operator: composes with ``Observable.pipe`` like reactivex's own."""

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware UTC."""


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where an input came from; the unit that offsets are committed for."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One record as the source received it."""

    position: SourcePosition
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    received_at: datetime


@dataclass(frozen=True, slots=True)
class EventIdentity:
    """The envelope fields that could be read from the input, each possibly missing."""

    event_id: str | None = None
    correlation_id: str | None = None
    event_type: str | None = None
    schema_version: str | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """A fault of one record, carried to its disposition.

    ``dead_letter`` sends the original bytes to the dead-letter topic; ``notify`` emits a
    WorkflowFailed when a correlation_id is known.
    """

    stage: FailureStep
    reason_code: str
    reason: str
    error_type: str
    step: str
    dead_letter: bool = False
    notify: bool = True


@dataclass(frozen=True, slots=True)
class Skipped:
    """An input that needs no outputs (a duplicate); its offset is still acknowledged."""

    reason_code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Recorded:
    """A plan decided before: its recorded outputs are published again, byte for byte."""

    outputs: tuple[OutputEvent, ...]


@dataclass(frozen=True, slots=True)
class NotStarted:
    """A plan not yet started when the job began to stop. It has no outputs and its offset is
    never acknowledged, so Kafka delivers it again after the restart."""

    reason: str


Settled = Failed | Skipped | Recorded | NotStarted
"""Payloads that later steps pass through untouched."""


@dataclass(frozen=True, slots=True)
class Envelope(Generic[T]):
    """An input record and the payload that the steps so far made of it."""

    record: InputRecord
    payload: T | Failed | Skipped | Recorded
    identity: EventIdentity = field(default_factory=EventIdentity)
    event: RebalancePlanned | None = None
    timings_ms: Mapping[str, int] = field(default_factory=dict)
    mis_keyed: bool = False
    owns_outcome: bool = False
    """True when this input's outcome is its plan's outcome of record (dedupe claimed it)."""
    resumed: bool = False
    """True when dedupe resumed a plan whose first attempt was cut off (SPEC 3.9)."""

    @property
    def position(self) -> SourcePosition:
        return self.record.position

    @property
    def is_settled(self) -> bool:
        """True when the payload is Failed, Skipped or Recorded: later steps leave it alone."""
        return isinstance(self.payload, Settled)

    def with_payload(self, payload: Out | Settled, **changes: Any) -> Envelope[Out]:
        """A copy with a new payload and, optionally, other fields changed."""
        return replace(self, payload=payload, **changes)  # type: ignore[arg-type,return-value]

    def failed(self, failure: Failed) -> Envelope[Any]:
        return replace(self, payload=failure)

    def timed(self, phase: str, elapsed_ms: int) -> Envelope[T]:
        return replace(self, timings_ms={**self.timings_ms, phase: elapsed_ms})

    def log_fields(self) -> dict[str, Any]:
        """The ids that every log line about this input binds."""
        event_id = self.event.event_id if self.event else self.identity.event_id
        correlation_id = self.event.correlation_id if self.event else self.identity.correlation_id
        return {
            "event_id": event_id,
            "correlation_id": correlation_id,
            "causation_id": event_id,
            "topic": self.position.topic,
            "partition": self.position.partition,
            "offset": self.position.offset,
        }


@dataclass(frozen=True, slots=True)
class DecodedDocument:
    """A JSON object read from the input; decimals are already Decimal."""

    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PlanExecution:
    """What happened to a plan's orders, before classification.

    ``decided_by`` names the step: ``skip_when_no_trades``, ``gate_on_market_clock`` or
    ``execute_orders``.
    """

    scenario: Scenario
    orders: tuple[OrderResult, ...]
    started_at: datetime
    completed_at: datetime
    decided_by: str


@dataclass(frozen=True, slots=True)
class Classified:
    """A classified execution (SPEC 3.6): the ExecutionResult and the workflow's verdict."""

    result: ExecutionResult
    workflow_success: bool
    failure_reason: str | None
    reason_code: str | None
    failed_symbols: tuple[str, ...]
    decided_by: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The original record and why it was dead-lettered; the sink formats it (SPEC 2)."""

    record: InputRecord
    failure: Failed


@dataclass(frozen=True, slots=True)
class Disposition:
    """Every output record that one input causes, in producing order; possibly none.

    ``owns_outcome`` marks the input whose outputs are its plan's outcome of record, which the
    ledger keeps; ``plan_id`` is the plan the input named, when it could be read.
    ``not_started`` marks a plan held back by a shutdown: it must not be acknowledged.
    """

    record: InputRecord
    outputs: tuple[OutputEvent | DeadLetter, ...]
    decided_at: datetime
    skipped: Skipped | None = None
    mis_keyed: bool = False
    plan_id: str | None = None
    owns_outcome: bool = False
    not_started: bool = False

    @property
    def position(self) -> SourcePosition:
        return self.record.position


def elapsed_ms(start: datetime, end: datetime) -> int:
    """Whole milliseconds from start to end, never negative."""
    return max(0, int((end - start).total_seconds() * 1000))
