"""KafkaLedger: the ledger kept in a compacted Kafka topic, partitioned like the input.

Each plan lives in the changelog partition of the input partition its first event came from,
with its event ids, order intents and terminal states (``changelog`` has the record format).
An instance holds in memory only the partitions assigned to it:

    partitions assigned  -> restore(p): read changelog partition p from the start to its end
    partitions revoked   -> forget(p):  flush; drop their state unless the next assignment
                                        gives them back (their plans finished or stopped first)

so N instances in one group share no database, as Kafka Streams restores its state stores.
Decisions are those of the in-memory ledger (``decide_claim``); every change is also written
to the changelog. Intents, outcomes and expiry are flushed (acks=all) before the call returns;
claims, terminals and acknowledgements are flushed with the next such call, which is as safe
as the SQLite ledger's buffer: a lost claim sent no order, a lost terminal is found again by
the order lookup, a lost acknowledgement only republishes the same bytes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

import structlog

from rebalance_stream.contracts.outcomes import OutputEvent
from rebalance_stream.ledger.changelog import (
    EVENT,
    INTENT,
    PLAN,
    TERMINAL,
    ChangelogRecord,
    LedgerSnapshot,
    event_record,
    intent_record,
    plan_record,
    terminal_record,
    tombstone,
)
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.ledger.protocol import (
    Claim,
    ClaimStatus,
    OrderIntent,
    OrderTerminal,
    PlanClaim,
    PlanOutcome,
)

log = structlog.get_logger(__name__)

UNKNOWN_PARTITION = 0


class ChangelogWriter(Protocol):
    """Sends changelog records. Thread-safe: one thread may send while others wait.

    ``send`` returns a token; ``wait(tokens)`` returns once those records are durable, and
    ``flush`` once every record sent before it is; both raise LedgerError for a lost record.
    """

    def send(self, partition: int, record: ChangelogRecord) -> object: ...

    def wait(self, tokens: Sequence[object]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class ChangelogReader(Protocol):
    """Reads one changelog partition from its start to its end as of the call."""

    def read(self, partition: int) -> Iterable[ChangelogRecord]: ...

    def close(self) -> None: ...


class KafkaLedger(InMemoryLedger):
    """A Ledger over a changelog; thread-safe. Call ``restore`` before a partition's plans."""

    def __init__(self, writer: ChangelogWriter, reader: ChangelogReader) -> None:
        super().__init__()
        self._writer = writer
        self._reader = reader
        self._write_lock = threading.RLock()
        self._partition_of: dict[str, int] = {}
        self._account_of: dict[str, str] = {}
        self._acks: deque[str] = deque()
        self._restored: set[int] = set()
        self._revoked: set[int] = set()

    @property
    def partitions(self) -> frozenset[int]:
        """The partitions owned here: restored, and not revoked since."""
        return frozenset(self._restored - self._revoked)

    def restore(self, partitions: Sequence[int]) -> list[int]:
        """Take ownership of ``partitions``: read the changelog of each one not held already,
        and return those read.

        Partitions revoked by the rebalance that led here and assigned again keep their state:
        in one rebalance no other member can have owned them meanwhile. Revoked partitions not
        assigned again are dropped now.
        """
        wanted = set(partitions)
        with self._write_lock, self._lock:
            stale = self._revoked - wanted
            plans = {p for p, part in self._partition_of.items() if part in stale}
            self._drop(plans)
            self._restored -= stale
            self._revoked.clear()
        if stale:
            log.info("ledger_partitions_dropped", partitions=sorted(stale), plans=len(plans))
        read = sorted(wanted - self._restored)
        for partition in read:
            snapshot = LedgerSnapshot()
            for record in self._reader.read(partition):
                snapshot.apply(record)
            with self._write_lock, self._lock:
                self._take(partition, snapshot)
                self._restored.add(partition)
            log.info(
                "ledger_partition_restored",
                partition=partition,
                plans=len(snapshot.plans),
                intents=len(snapshot.intents),
            )
        return read

    def forget(self, partitions: Sequence[int]) -> None:
        """Give up ``partitions`` (revoked): everything written so far is flushed, and their
        state is kept only until the next ``restore`` says whether they came back."""
        self.flush()
        with self._write_lock:
            self._revoked |= set(partitions) & self._restored

    # -- Ledger ------------------------------------------------------------------------------

    def claim(self, request: PlanClaim) -> Claim:
        with self._write_lock:
            self._send_acks()
            event_is_new = request.event_id not in self._events
            answer = super().claim(request)
            partition = self._partition_of.get(request.plan_id)
            if answer.status is ClaimStatus.NEW:
                partition = UNKNOWN_PARTITION if request.partition is None else request.partition
                self._partition_of[request.plan_id] = partition
                self._account_of[request.plan_id] = request.account_id
                self._send_plan(request.plan_id)
            recorded = answer.status is not ClaimStatus.EVENT_ID_REUSED
            if recorded and event_is_new and partition is not None:
                self._writer.send(partition, event_record(request.event_id, request.plan_id))
            return answer

    def record_intents(self, intents: Sequence[OrderIntent]) -> None:
        with self._write_lock:
            fresh = [i for i in intents if i.client_order_id not in self._intents]
            super().record_intents(intents)
            sent = [
                self._writer.send(self._partition(intent.plan_id), intent_record(intent))
                for intent in fresh
            ]
        self._wait_durable(sent)

    def record_terminals(self, terminals: Sequence[OrderTerminal]) -> None:
        with self._write_lock:
            super().record_terminals(terminals)
            for terminal in terminals:
                intent = self._intents.get(terminal.client_order_id)
                if intent is not None:
                    partition = self._partition(intent.plan_id)
                    self._writer.send(partition, terminal_record(terminal))

    def record_outcomes(self, outcomes: Sequence[PlanOutcome]) -> list[tuple[OutputEvent, ...]]:
        with self._write_lock:
            self._send_acks()  # acknowledgements that came before these outputs mean nothing
            undecided = {
                o.plan_id
                for o in outcomes
                if (known := self._plans.get(o.plan_id)) is not None and known.outputs is None
            }
            on_record = super().record_outcomes(outcomes)
            tokens = [self._send_plan(plan_id) for plan_id in sorted(undecided)]
            sent = [token for token in tokens if token is not None]
        self._wait_durable(sent)
        return on_record

    def mark_acknowledged(self, plan_ids: Sequence[str]) -> None:
        """Buffered without any lock (the producer's network thread calls it): applied and
        written with the next claim, outcome, expiry or flush."""
        self._acks.extend(plan_ids)

    def expire(self, before: datetime) -> int:
        with self._write_lock:
            self._send_acks()
            with self._lock:
                old = [p for p, known in self._plans.items() if known.first_received_at < before]
                gone = set(old)
                events = [e for e, p in self._events.items() if p in gone]
                orders = [c for c, i in self._intents.items() if i.plan_id in gone]
                parts = {p: self._partition(p) for p in old}
                by_event = {e: self._partition(self._events[e]) for e in events}
                by_order = {c: self._partition(self._intents[c].plan_id) for c in orders}
            expired = super().expire(before)
            sent = []
            for plan_id, partition in parts.items():
                sent.append(self._writer.send(partition, tombstone(PLAN, plan_id)))
                self._partition_of.pop(plan_id, None)
                self._account_of.pop(plan_id, None)
            for event_id, partition in by_event.items():
                sent.append(self._writer.send(partition, tombstone(EVENT, event_id)))
            for order_id, partition in by_order.items():
                sent.append(self._writer.send(partition, tombstone(INTENT, order_id)))
                sent.append(self._writer.send(partition, tombstone(TERMINAL, order_id)))
        self._wait_durable(sent)
        return expired

    def flush(self) -> None:
        """Write the buffered acknowledgements and wait until every record sent is durable."""
        with self._write_lock:
            self._send_acks()
        self._writer.flush()

    def close(self) -> None:
        """Flush, then close the writer and the reader."""
        try:
            self.flush()
        finally:
            self._writer.close()
            self._reader.close()

    # -- internals ---------------------------------------------------------------------------

    def _partition(self, plan_id: str) -> int:
        return self._partition_of.get(plan_id, UNKNOWN_PARTITION)

    def _send_plan(self, plan_id: str) -> object:
        """Send the plan's record; its token (None when the plan is not known here)."""
        known = self._plans.get(plan_id)
        if known is None:
            return None
        account = self._account_of.get(plan_id, "default")
        return self._writer.send(self._partition(plan_id), plan_record(known, account))

    def _send_acks(self) -> None:
        if not self._acks:
            return
        plan_ids = []
        while self._acks:
            plan_ids.append(self._acks.popleft())
        acknowledged = [p for p in plan_ids if self._unacknowledged_with_outputs(p)]
        super().mark_acknowledged(acknowledged)
        for plan_id in acknowledged:
            self._send_plan(plan_id)

    def _unacknowledged_with_outputs(self, plan_id: str) -> bool:
        known = self._plans.get(plan_id)
        return known is not None and known.outputs is not None and not known.acknowledged

    def _wait_durable(self, sent: Sequence[object]) -> None:
        """Wait until the records this call sent are written, outside the write lock, so that
        other plans keep deciding and sending meanwhile. Kafka keeps each partition's order:
        the plan's claim, sent before into the same partition, is written first."""
        if sent:
            self._writer.wait(sent)

    def _take(self, partition: int, snapshot: LedgerSnapshot) -> None:
        """Merge a restored partition into memory; the lock is held."""
        for plan_id, known in snapshot.plans.items():
            self._plans[plan_id] = known
            self._partition_of[plan_id] = partition
            self._account_of[plan_id] = snapshot.accounts.get(plan_id, "default")
        self._events.update(snapshot.events)
        self._intents.update(snapshot.intents)
        self._terminals.update(snapshot.terminals)
        self._notional.forget()

    def _drop(self, plans: set[str]) -> None:
        """Remove these plans with their events, intents and terminals; the lock is held."""
        for plan_id in plans:
            self._plans.pop(plan_id, None)
            self._in_flight.discard(plan_id)
            self._partition_of.pop(plan_id, None)
            self._account_of.pop(plan_id, None)
        self._events = {e: p for e, p in self._events.items() if p not in plans}
        self._digests = {d: ids for d, ids in self._digests.items() if ids[0] not in plans}
        for order_id in [c for c, i in self._intents.items() if i.plan_id in plans]:
            del self._intents[order_id]
            self._terminals.pop(order_id, None)
        self._notional.forget()
