"""SqliteLedger: the durable ledger, one SQLite file in WAL mode, owned by one process.

Claims, their event_ids and acknowledgements are buffered in memory, visible to later claims,
and written with the next write transaction or by ``flush``. The in-memory state has a lock
of its own that is never held while SQLite works: a thread that waits for the file (a write's
fsync, a claim's lookup) blocks no other thread's buffered work. Losing that buffer in a crash is
safe: a claim without recorded intents sent no order, and its redelivered event is claimed
again; a lost acknowledgement only republishes the recorded outputs, byte for byte. Intents and
outcomes are durable when their call returns. Decimals are exact text, timestamps UTC ISO text.
Which plans are in flight in this process is not stored: after a restart an undecided plan's
first event resumes it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from rebalance_stream.contracts.outcomes import OutputEvent
from rebalance_stream.ledger.notional import DailyNotional
from rebalance_stream.ledger.protocol import (
    Claim,
    ClaimStatus,
    KnownPlan,
    OrderIntent,
    OrderTerminal,
    PlanClaim,
    PlanOutcome,
    PublishedInput,
    decide_claim,
)
from rebalance_stream.ledger.sqlite_buffer import NOTHING_PENDING, IntentWrite, PendingRows
from rebalance_stream.ledger.sqlite_schema import (
    BUSY_TIMEOUT_S,
    CLAIMED,
    DEFAULT_MAX_PENDING,
    SCHEMA_VERSION,
    SELECT_EVENT_PLAN,
    SELECT_NOTIONAL,
    SELECT_OPEN_INTENTS,
    SELECT_PLAN_TO_CLAIM,
    SELECT_PUBLISHED_INPUTS,
    SYNCHRONOUS,
    LedgerError,
    LedgerSchemaError,
    configure,
    expire_rows,
    intent_of_row,
    known_plan_to_claim,
    migrate,
    notional,
    record_outcome,
    row_notional,
    terminal_row,
    timestamp_text,
)

__all__ = ["SCHEMA_VERSION", "LedgerError", "LedgerSchemaError", "SqliteLedger"]

_T = TypeVar("_T")


class SqliteLedger:
    """A Ledger in one SQLite file, safe across threads.

    Two connections: one writes, one transaction at a time, and one reads for claims. The
    in-memory state (buffered rows, plans in flight, running notional totals) has its own
    lock, never held while SQLite works. A buffer being written stays readable until it is
    committed; a claim that read the file while a write committed reads it again.
    ``transactions`` counts the write transactions committed since open (schema setup aside).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        pragma = SYNCHRONOUS.get(synchronous.upper())
        if pragma is None:
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._pending = PendingRows()
        self._writing = NOTHING_PENDING
        self._intents_waiting: list[IntentWrite] = []
        self._commits = 0
        self._in_flight: set[str] = set()
        self._ack_inbox: deque[str] = deque()
        self._notional = DailyNotional()
        self._closed = False
        self._connection = self._connect()
        try:
            configure(self._connection, pragma)
            migrate(self._connection)
            self._reader = self._connect()
        except BaseException:
            self._connection.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )

    @property
    def transactions(self) -> int:
        return self._commits

    def claim(self, request: PlanClaim) -> Claim:
        """Decide with ``decide_claim``; a NEW claim is buffered until the next write.

        A plan claimed NEW or RESUME here is in flight until its outcome is recorded: another
        copy of its first event is then a duplicate, while after a restart it resumes once.
        """
        received_at = timestamp_text(request.received_at)
        stored: tuple[int, KnownPlan | None, str | None] | None = None
        while True:
            with self._lock:
                self._take_acks()
                known = self._buffered_plan(request.plan_id)
                event_plan_id = self._buffered_event(request.event_id)
                looked_up = stored is not None and stored[0] == self._commits
                if stored is not None and looked_up:
                    known = known or self._with_buffered_ack(stored[1])
                    event_plan_id = event_plan_id or stored[2]
                if looked_up or (known is not None and event_plan_id is not None):
                    answer = self._decide(request, received_at, known, event_plan_id)
                    break
                commits = self._commits
            # Read outside the lock; if a write commits meanwhile, the loop reads again.
            stored = (commits, *self._stored(request.plan_id, request.event_id))
        self._flush_when_full()
        return answer

    def _decide(
        self, request: PlanClaim, received_at: str, known: KnownPlan | None, event_plan: str | None
    ) -> Claim:
        """Under the lock: the answer, and the buffered rows and in-flight mark it implies."""
        in_flight = request.plan_id in self._in_flight
        answer = decide_claim(request, known, event_plan, in_flight_here=in_flight)
        if answer.status in CLAIMED:
            self._in_flight.add(request.plan_id)
        if answer.status is ClaimStatus.NEW:
            self._pending.add_claim(request, received_at)
        if answer.status is not ClaimStatus.EVENT_ID_REUSED and event_plan is None:
            self._pending.events[request.event_id] = request.plan_id
        return answer

    def release(self, plan_ids: Sequence[str]) -> None:
        """Not decided here now: the plans' first events resume them (nothing is written)."""
        with self._lock:
            self._in_flight.difference_update(plan_ids)

    def record_intents(self, intents: Sequence[OrderIntent]) -> None:
        """Write the buffered claims and the intents in one transaction; durable on return.

        Group commit: calls that wait while another write runs share the next transaction."""
        request = IntentWrite(intents)
        with self._lock:
            self._take_acks()
            if not request.rows and not self._pending:
                return
            self._intents_waiting.append(request)
        with self._write_lock:
            if not request.done:
                self._write_intents()
        if request.error is not None:
            raise LedgerError("the shared write of these intents failed") from request.error

    def _write_intents(self) -> None:
        """Under the write lock: every waiting call's intents in one transaction."""
        with self._lock:
            batch, self._intents_waiting = self._intents_waiting, []
            for request in batch:
                # A terminal buffered ahead of its intent: the running total cannot follow.
                request.ended_early = any(o in self._pending.terminals for o in request.order_ids)
        try:
            results = self._transaction(lambda connection: [r.insert(connection) for r in batch])
        except BaseException as exc:
            for request in batch:
                request.error, request.done = exc, True
            raise
        with self._lock:
            for request, (inserted, ended_before) in zip(batch, results, strict=True):
                request.written(inserted, ended_before)
                self._notional.intents_recorded(request.intents, all_new=request.all_new)

    def record_terminals(self, terminals: Sequence[OrderTerminal]) -> None:
        """Buffered, the last one wins: written with the next write transaction (the outcome's
        group commit). Losing them in a crash only means the day's notional counts the
        intents' expected notional until startup reconciliation records them again."""
        with self._lock:
            for terminal in terminals:
                self._pending.terminals[terminal.client_order_id] = terminal_row(terminal)
            self._notional.terminals_recorded(terminals)
        self._flush_when_full()

    def notional_used(self, account_id: str, day: date) -> Decimal:
        """Exact, in Decimal: filled notional of terminal orders, else expected. Summed from the
        file once per account and day, then kept as a running total (``DailyNotional``)."""
        with self._lock:
            kept = self._notional.kept(account_id, day)
        if kept is not None:
            return kept
        # The sum is read with no write running, so that no total is kept without a write.
        with self._write_lock, self._lock:
            return self._notional.total(
                account_id, day, lambda: self._sum_notional(account_id, day)
            )

    def _sum_notional(self, account_id: str, day: date) -> Decimal:
        rows = self._connection.execute(SELECT_NOTIONAL, (account_id, day.isoformat()))
        pending = self._pending.terminals
        total = Decimal(0)
        for client_order_id, *row in rows.fetchall():
            buffered = pending.get(client_order_id)
            if buffered is not None:
                total += notional(str(buffered[2]), buffered[3])
            else:
                total += row_notional(tuple(row))
        return total

    def open_intents(self) -> list[OrderIntent]:
        """Intents with no terminal state on record, oldest first."""
        with self._write_lock:
            rows = self._connection.execute(SELECT_OPEN_INTENTS).fetchall()
            with self._lock:
                buffered = set(self._pending.terminals)
        intents = [intent_of_row(row) for row in rows]
        return [i for i in intents if i.client_order_id not in buffered]

    def record_outcomes(self, outcomes: Sequence[PlanOutcome]) -> list[tuple[OutputEvent, ...]]:
        """Write the buffered rows and the outcomes in one transaction, first writer wins."""
        with self._write_lock:
            with self._lock:
                self._take_acks()
                if not outcomes and not self._pending:
                    return []
            on_record = self._transaction(
                lambda connection: [record_outcome(connection, o) for o in outcomes]
            )
            with self._lock:
                self._in_flight.difference_update(outcome.plan_id for outcome in outcomes)
            return on_record

    def mark_acknowledged(self, plan_ids: Sequence[str]) -> None:
        """Buffered without taking the ledger's lock (it is called from the producer's network
        thread): written with the next write transaction, for plans with outputs."""
        self._ack_inbox.extend(plan_ids)

    def expire(self, before: datetime) -> int:
        """Flush, then forget plans first received before ``before`` with their rows."""
        cutoff = timestamp_text(before)
        with self._write_lock:
            expired = self._transaction(lambda connection: expire_rows(connection, cutoff))
            with self._lock:
                self._in_flight.difference_update(expired)
                self._notional.forget()
            return len(expired)

    def flush(self) -> None:
        """Write the buffered rows, if any, in one transaction."""
        with self._write_lock:
            self._flush()

    def close(self) -> None:
        """Flush, then close the file. Closing twice is harmless."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._flush()
            finally:
                with self._read_lock:
                    self._reader.close()
                self._connection.close()

    def _take_acks(self) -> None:
        """Under the lock: move the acknowledgements that arrived without it into the buffer."""
        inbox = self._ack_inbox
        while inbox:
            self._pending.acks[inbox.popleft()] = None

    def _buffered_plan(self, plan_id: str) -> KnownPlan | None:
        for buffer in (self._pending, self._writing):
            found = buffer.plans.get(plan_id)
            if found is not None:
                return found[0]
        return None

    def _buffered_event(self, event_id: str) -> str | None:
        return self._pending.events.get(event_id) or self._writing.events.get(event_id)

    def _with_buffered_ack(self, known: KnownPlan | None) -> KnownPlan | None:
        """A plan read from the file, acknowledged if its acknowledgement is still buffered
        (outputs change only in a transaction, which writes the buffered acks first)."""
        if known is None or known.outputs is None or known.acknowledged:
            return known
        if known.plan_id in self._pending.acks or known.plan_id in self._writing.acks:
            return replace(known, acknowledged=True)
        return known

    def published_inputs(self, input_digests: Collection[str]) -> dict[str, PublishedInput]:
        """One query, read from the file alone: a plan or an acknowledgement still buffered
        is not seen (the full path then decides, as it would anyway)."""
        digests = json.dumps(list(input_digests))
        with self._read_lock:
            rows = self._reader.execute(SELECT_PUBLISHED_INPUTS, (digests,)).fetchall()
        return {str(row[0]): PublishedInput(row[1], row[2], row[3]) for row in rows}

    def _stored(self, plan_id: str, event_id: str) -> tuple[KnownPlan | None, str | None]:
        """The plan and the event's plan_id as the file has them, on the reading connection."""
        with self._read_lock:
            row = self._reader.execute(SELECT_PLAN_TO_CLAIM, (plan_id,)).fetchall()
            event = self._reader.execute(SELECT_EVENT_PLAN, (event_id,)).fetchall()
        known = known_plan_to_claim(plan_id, row[0]) if row else None
        return known, str(event[0][0]) if event else None

    def _flush_when_full(self) -> None:
        if len(self._pending) >= self._max_pending:
            self.flush()

    def _flush(self) -> None:
        """Under the write lock."""
        with self._lock:
            self._take_acks()
            empty = not self._pending
        if not empty:
            self._transaction(lambda connection: None)

    def _transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Write the buffer, then ``work``, in one transaction; the write lock is held by the
        caller. The buffer stays readable until COMMIT; a failed write buffers it again."""
        with self._lock:
            self._take_acks()
            batch, self._pending = self._pending, PendingRows()
            self._writing = batch
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            batch.write(connection)
            result = work(connection)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            with self._lock:
                self._pending = batch.then(self._pending)
                self._writing = NOTHING_PENDING
            raise
        with self._lock:
            self._writing = NOTHING_PENDING
            self._commits += 1
        return result
