"""SqliteLedger: the durable ledger, one SQLite file in WAL mode, owned by one process.

Claims, their event_ids and acknowledgements are buffered in memory, visible to later claims,
and written with the next write transaction or by ``flush``. Losing that buffer in a crash is
safe: a claim without recorded intents sent no order, and its redelivered event is claimed
again; a lost acknowledgement only republishes the recorded outputs, byte for byte. Intents and
outcomes are durable when their call returns. Decimals are exact text, timestamps UTC ISO text.
Which plans are in flight in this process is not stored: after a restart an undecided plan's
first event resumes it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
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
    decide_claim,
)
from rebalance_stream.ledger.sqlite_schema import (
    ACKNOWLEDGE,
    BUSY_TIMEOUT_S,
    CLAIMED,
    DEFAULT_MAX_PENDING,
    INSERT_EVENT,
    INSERT_INTENT,
    INSERT_PLAN,
    SCHEMA_VERSION,
    SELECT_NOTIONAL,
    SELECT_OPEN_INTENTS,
    SELECT_PLAN_TO_CLAIM,
    SYNCHRONOUS,
    UPSERT_TERMINAL,
    LedgerError,
    LedgerSchemaError,
    configure,
    expire_rows,
    has_terminal,
    intent_of_row,
    intent_row,
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


@dataclass
class _Pending:
    """Rows claimed but not yet written; each plan with its insert row."""

    plans: dict[str, tuple[KnownPlan, tuple[str, ...]]] = field(default_factory=dict)
    events: dict[str, str] = field(default_factory=dict)
    acks: dict[str, None] = field(default_factory=dict)
    terminals: dict[str, tuple[str | None, ...]] = field(default_factory=dict)

    def add_claim(self, request: PlanClaim, received_at: str) -> None:
        """Buffer a NEW claim: the plan that later claims read, and the row to insert."""
        r = request
        known = KnownPlan(r.plan_id, r.event_id, r.items_fingerprint, r.received_at)
        self.plans[r.plan_id] = (
            known,
            (r.plan_id, r.event_id, r.items_fingerprint, r.account_id, received_at),
        )

    def __len__(self) -> int:
        return len(self.plans) + len(self.events) + len(self.acks) + len(self.terminals)

    def write(self, connection: sqlite3.Connection) -> None:
        """Plans, then event_ids, then acknowledgements: an ack needs recorded outputs."""
        connection.executemany(INSERT_PLAN, [row for _, row in self.plans.values()])
        connection.executemany(INSERT_EVENT, self.events.items())
        connection.executemany(ACKNOWLEDGE, [(plan_id,) for plan_id in self.acks])
        connection.executemany(UPSERT_TERMINAL, self.terminals.values())


class SqliteLedger:
    """A Ledger in one SQLite file; one connection behind one lock, safe across threads.

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
        self._pending = _Pending()
        self._in_flight: set[str] = set()
        self._ack_inbox: deque[str] = deque()
        self._notional = DailyNotional()
        self._transactions = 0
        self._closed = False
        self._connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            configure(self._connection, pragma)
            migrate(self._connection)
        except BaseException:
            self._connection.close()
            raise

    @property
    def transactions(self) -> int:
        return self._transactions

    def claim(self, request: PlanClaim) -> Claim:
        """Decide with ``decide_claim``; a NEW claim is buffered until the next write.

        A plan claimed NEW or RESUME here is in flight until its outcome is recorded: another
        copy of its first event is then a duplicate, while after a restart it resumes once.
        """
        received_at = timestamp_text(request.received_at)
        with self._lock:
            known = self._known(request.plan_id)
            event_plan_id = self._event_plan_id(request.event_id)
            in_flight = request.plan_id in self._in_flight
            answer = decide_claim(request, known, event_plan_id, in_flight_here=in_flight)
            if answer.status in CLAIMED:
                self._in_flight.add(request.plan_id)
            if answer.status is ClaimStatus.NEW:
                self._pending.add_claim(request, received_at)
            if answer.status is not ClaimStatus.EVENT_ID_REUSED and event_plan_id is None:
                self._pending.events[request.event_id] = request.plan_id
            self._flush_when_full()
            return answer

    def release(self, plan_ids: Sequence[str]) -> None:
        """Not decided here now: the plans' first events resume them (nothing is written)."""
        with self._lock:
            self._in_flight.difference_update(plan_ids)

    def record_intents(self, intents: Sequence[OrderIntent]) -> None:
        """Write the buffered claims and the intents in one transaction; durable on return."""
        rows = [intent_row(intent) for intent in intents]
        order_ids = [intent.client_order_id for intent in intents]
        with self._lock:
            if rows or self._pending:
                ended = any(order_id in self._pending.terminals for order_id in order_ids)
                inserted, ended_before = self._transaction(
                    lambda connection: (
                        connection.executemany(INSERT_INTENT, rows).rowcount,
                        has_terminal(connection, order_ids),
                    )
                )
                # A row kept from before, or a terminal recorded ahead of its intent: the
                # running total cannot follow, so it is read again.
                all_new = inserted == len(rows) and not (ended or ended_before)
                self._notional.intents_recorded(intents, all_new=all_new)

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
        with self._lock:
            rows = self._connection.execute(SELECT_OPEN_INTENTS).fetchall()
            intents = [intent_of_row(row) for row in rows]
            return [i for i in intents if i.client_order_id not in self._pending.terminals]

    def record_outcomes(self, outcomes: Sequence[PlanOutcome]) -> list[tuple[OutputEvent, ...]]:
        """Write the buffered rows and the outcomes in one transaction, first writer wins."""
        with self._lock:
            if not outcomes and not self._pending:
                return []
            on_record = self._transaction(
                lambda connection: [record_outcome(connection, o) for o in outcomes]
            )
            self._in_flight.difference_update(outcome.plan_id for outcome in outcomes)
            return on_record

    def mark_acknowledged(self, plan_ids: Sequence[str]) -> None:
        """Buffered without taking the ledger's lock (it is called from the producer's network
        thread): written with the next write transaction, for plans with outputs."""
        self._ack_inbox.extend(plan_ids)

    def expire(self, before: datetime) -> int:
        """Flush, then forget plans first received before ``before`` with their rows."""
        cutoff = timestamp_text(before)
        with self._lock:
            expired = self._transaction(lambda connection: expire_rows(connection, cutoff))
            self._in_flight.difference_update(expired)
            self._notional.forget()
            return len(expired)

    def flush(self) -> None:
        """Write the buffered rows, if any, in one transaction."""
        with self._lock:
            self._flush()

    def close(self) -> None:
        """Flush, then close the file. Closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._flush()
            finally:
                self._connection.close()

    def _take_acks(self) -> None:
        """Move the acknowledgements that arrived without the lock into the buffer."""
        inbox = self._ack_inbox
        while inbox:
            self._pending.acks[inbox.popleft()] = None

    def _known(self, plan_id: str) -> KnownPlan | None:
        self._take_acks()
        pending = self._pending.plans.get(plan_id)
        if pending is not None:
            return pending[0]
        row = self._connection.execute(SELECT_PLAN_TO_CLAIM, (plan_id,)).fetchone()
        if row is None:
            return None
        known = known_plan_to_claim(plan_id, row)
        # Outputs change only in a transaction, which also writes the buffered acks first.
        if known.outputs is not None and plan_id in self._pending.acks:
            return replace(known, acknowledged=True)
        return known

    def _event_plan_id(self, event_id: str) -> str | None:
        pending = self._pending.events.get(event_id)
        if pending is not None:
            return pending
        row = self._connection.execute("SELECT plan_id FROM events WHERE event_id = ?", (event_id,))
        found = row.fetchone()
        return None if found is None else str(found[0])

    def _flush_when_full(self) -> None:
        if len(self._pending) >= self._max_pending:
            self._flush()

    def _flush(self) -> None:
        self._take_acks()
        if self._pending:
            self._transaction(lambda connection: None)

    def _transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Write the buffer, then ``work``, in one transaction; the lock is held by the caller.

        The buffer is cleared only after COMMIT: a failed write keeps it for the next one.
        """
        self._take_acks()
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            self._pending.write(connection)
            result = work(connection)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        self._pending = _Pending()
        self._transactions += 1
        return result
