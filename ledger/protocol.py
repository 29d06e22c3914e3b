"""The ledger's contract: value types, the claim decision, and the protocols operators use.

A plan_id is claimed once (SPEC 3.9). The ledger remembers its first event_id and receive time,
the hash of its items, each order's intent before the order is sent, the decided outputs, and
whether those outputs reached Kafka. What a redelivered event means follows from that record,
in ``decide_claim``; both the in-memory and the SQLite ledger use it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from rebalance_stream.contracts.execution import OrderSide
from rebalance_stream.contracts.outcomes import (
    OutputEvent,
    TradeExecuted,
    WorkflowCompleted,
    WorkflowFailed,
)
from rebalance_stream.contracts.wire import canonical_json

TRADING_ZONE = ZoneInfo("America/New_York")
_OUTPUT_TYPES: dict[str, type[OutputEvent]] = {
    model.EVENT_TYPE: model for model in (TradeExecuted, WorkflowCompleted, WorkflowFailed)
}


class ClaimStatus(StrEnum):
    NEW = "new"
    RESUME = "resume"
    REPUBLISH = "republish"
    DUPLICATE_EVENT = "duplicate_event"
    DUPLICATE_PLAN = "duplicate_plan"
    CONFLICT = "conflict"
    EVENT_ID_REUSED = "event_id_reused"


@dataclass(frozen=True, slots=True)
class PlanClaim:
    """What dedupe asks the ledger to record for one input event."""

    plan_id: str
    event_id: str
    items_fingerprint: str
    received_at: datetime
    account_id: str = "default"
    partition: int | None = None
    """The input partition the event was read from; a partitioned ledger stores the plan there."""
    input_digest: str | None = None
    """``input_digest`` of the input record's value: a ledger that keeps it with a NEW plan can
    tell later that these exact bytes were executed and published (``PublishedInputs``)."""
    correlation_id: str | None = None
    """The event's correlation_id, kept with ``input_digest`` for the skipped input's log."""


@dataclass(frozen=True, slots=True)
class KnownPlan:
    """What the ledger remembers of a claimed plan. ``outputs`` is None while it is undecided;
    for a claim, a ledger may leave an acknowledged plan's outputs out (``()``)."""

    plan_id: str
    first_event_id: str
    items_fingerprint: str
    first_received_at: datetime
    outputs: tuple[OutputEvent, ...] | None = None
    acknowledged: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """The ledger's answer to a PlanClaim.

    ``first_received_at`` is when the plan was first received (a resumed plan keeps it);
    ``outputs`` are the recorded outputs, set for REPUBLISH.
    """

    status: ClaimStatus
    first_event_id: str
    first_received_at: datetime
    outputs: tuple[OutputEvent, ...] = ()


def decide_claim(
    request: PlanClaim,
    known: KnownPlan | None,
    event_plan_id: str | None,
    *,
    in_flight_here: bool,
) -> Claim:
    """What an input event means, given the plan's record and the plan its event_id names.

    ``event_plan_id`` is the plan_id recorded for ``request.event_id``, or None when the
    event_id is new; a later event seen before (a duplicate or a conflict) is a duplicate
    event, so a redelivery never repeats an output. ``in_flight_here`` is True when this
    process claimed the plan and has not decided it yet: a second copy of its event is then a
    duplicate, not a crash to resume.
    Pure: the caller records the claim when the status is NEW or RESUME.
    """
    if event_plan_id is not None and event_plan_id != request.plan_id:
        first_event_id = known.first_event_id if known else request.event_id
        first_received_at = known.first_received_at if known else request.received_at
        return Claim(ClaimStatus.EVENT_ID_REUSED, first_event_id, first_received_at)
    if known is None:
        return Claim(ClaimStatus.NEW, request.event_id, request.received_at)
    first = (known.first_event_id, known.first_received_at)
    if request.event_id != known.first_event_id:
        if event_plan_id is not None:
            return Claim(ClaimStatus.DUPLICATE_EVENT, *first)
        if known.items_fingerprint != request.items_fingerprint:
            return Claim(ClaimStatus.CONFLICT, *first)
        return Claim(ClaimStatus.DUPLICATE_PLAN, *first)
    if known.items_fingerprint != request.items_fingerprint:
        return Claim(ClaimStatus.CONFLICT, *first)
    if known.outputs is None:
        status = ClaimStatus.DUPLICATE_EVENT if in_flight_here else ClaimStatus.RESUME
        return Claim(status, *first)
    if not known.acknowledged:
        return Claim(ClaimStatus.REPUBLISH, *first, outputs=known.outputs)
    return Claim(ClaimStatus.DUPLICATE_EVENT, *first)


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order about to be sent, recorded before it is sent."""

    plan_id: str
    account_id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    expected_price: Decimal | None
    recorded_at: datetime

    @property
    def expected_notional(self) -> Decimal:
        return self.qty * self.expected_price if self.expected_price is not None else Decimal(0)


@dataclass(frozen=True, slots=True)
class OrderTerminal:
    """An order's final state at the broker."""

    client_order_id: str
    status: str
    filled_qty: Decimal
    filled_avg_price: Decimal | None

    @property
    def filled_notional(self) -> Decimal:
        price = self.filled_avg_price
        return self.filled_qty * price if price is not None else Decimal(0)


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    """A plan's decided outputs, in producing order."""

    plan_id: str
    outputs: tuple[OutputEvent, ...]
    decided_at: datetime


def trading_day(at: datetime) -> date:
    """The America/New_York date of an instant: the day that daily limits count in."""
    return at.astimezone(TRADING_ZONE).date()


def encode_outputs(outputs: Sequence[OutputEvent]) -> bytes:
    """The outputs as stored: a JSON array of each event's canonical JSON, in order."""
    return b"[" + b",".join(canonical_json(event) for event in outputs) + b"]"


def decode_outputs(stored: bytes) -> tuple[OutputEvent, ...]:
    """Inverse of ``encode_outputs``; re-encoding a decoded event gives the stored bytes."""
    documents = json.loads(stored)
    return tuple(_OUTPUT_TYPES[doc["event_type"]].model_validate(doc) for doc in documents)


class ClaimStore(Protocol):
    """Claims plan_ids. ``claim`` is atomic per plan_id; it records a NEW claim, and marks a
    NEW or RESUME claim as in flight in this process until its outcome is recorded or it is
    released."""

    def claim(self, request: PlanClaim) -> Claim: ...

    def release(self, plan_ids: Sequence[str]) -> None:
        """These claimed plans will not be decided here now (held back by a stop or a
        revocation): their redelivered first event resumes them."""
        ...


class OrderJournal(Protocol):
    """Records orders: intents are durable when ``record_intents`` returns. An order's first
    intent is kept; its last terminal state wins."""

    def record_intents(self, intents: Sequence[OrderIntent]) -> None: ...

    def record_terminals(self, terminals: Sequence[OrderTerminal]) -> None: ...

    def open_intents(self) -> list[OrderIntent]:
        """Intents with no terminal state on record, oldest first (for reconciliation)."""
        ...


class NotionalLedger(Protocol):
    """The notional an account traded on a trading day: filled, plus intents still open."""

    def notional_used(self, account_id: str, day: date) -> Decimal: ...


class OutcomeStore(Protocol):
    """Records decided outputs, first writer wins, and which of them reached Kafka."""

    def record_outcomes(self, outcomes: Sequence[PlanOutcome]) -> list[tuple[OutputEvent, ...]]:
        """Record each plan's outputs in one write; return the outputs now on record for each
        (a plan decided before keeps its first outputs). Durable when it returns."""
        ...

    def mark_acknowledged(self, plan_ids: Sequence[str]) -> None:
        """Every output of these plans is in Kafka. May be buffered: losing it only means
        that the recorded outputs are published again, byte for byte."""
        ...


@runtime_checkable
class PublishedInputs(Protocol):
    """Knows the inputs whose plans are done: claimed NEW from exactly these bytes, decided,
    and every output in Kafka. Such an input again can only be a duplicate, whatever it
    holds, so a replay may skip it before validating it."""

    def published_inputs(self, input_digests: Collection[str]) -> dict[str, PublishedInput]:
        """For each of these digests whose input first claimed its plan, once the plan's
        outputs are acknowledged: that input's ids. Any other digest is left out (unknown,
        undecided, claimed without a correlation_id, or not yet known to be acknowledged:
        each only costs the full path). One read for the whole collection."""
        ...


@dataclass(frozen=True, slots=True)
class PublishedInput:
    """The ids that a published plan's first input carried; equal bytes carry the same."""

    plan_id: str
    event_id: str
    correlation_id: str


def input_digest(value: bytes) -> str:
    """The sha256 of an input record's value, hex: equal bytes, equal digest."""
    return hashlib.sha256(value).hexdigest()


@runtime_checkable
class PartitionedLedger(Protocol):
    """A ledger whose state is split like the input topic's partitions (the Kafka ledger):
    a partition's state is restored when it is assigned and dropped when it is revoked."""

    def restore(self, partitions: Sequence[int]) -> list[int]:
        """Own ``partitions``; returns those whose state had to be read (not held already)."""
        ...

    def forget(self, partitions: Sequence[int]) -> None: ...


class Ledger(ClaimStore, OrderJournal, NotionalLedger, OutcomeStore, Protocol):
    """Everything the job needs from its ledger."""

    def expire(self, before: datetime) -> int:
        """Forget plans first received before ``before``; return how many."""
        ...

    def close(self) -> None: ...
