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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from rebalance_stream.contracts.outcomes import OutputEvent
from rebalance_stream.ledger.protocol import (
    Claim,
    ClaimStatus,
    KnownPlan,
    OrderIntent,
    OrderTerminal,
    PlanClaim,
    PlanOutcome,
    decide_claim,
    decode_outputs,
    encode_outputs,
    trading_day,
)

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 5.0
DEFAULT_MAX_PENDING = 10_000
"""Buffered rows (claims, event_ids, acknowledgements) that force a flush."""

_T = TypeVar("_T")
_CLAIMED = frozenset({ClaimStatus.NEW, ClaimStatus.RESUME})
_SYNCHRONOUS = {"FULL": "PRAGMA synchronous=FULL", "NORMAL": "PRAGMA synchronous=NORMAL"}
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS plans (
        plan_id TEXT PRIMARY KEY, first_event_id TEXT NOT NULL, items_fingerprint TEXT NOT NULL,
        account_id TEXT NOT NULL, first_received_at TEXT NOT NULL, outputs BLOB,
        decided_at TEXT, acknowledged INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS plans_by_received_at ON plans (first_received_at)",
    "CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, plan_id TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS events_by_plan ON events (plan_id)",
    """CREATE TABLE IF NOT EXISTS intents (
        client_order_id TEXT PRIMARY KEY, plan_id TEXT NOT NULL, account_id TEXT NOT NULL,
        trading_day TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL, qty TEXT NOT NULL,
        expected_price TEXT, recorded_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS intents_by_account_day ON intents (account_id, trading_day)",
    "CREATE INDEX IF NOT EXISTS intents_by_plan ON intents (plan_id)",
    """CREATE TABLE IF NOT EXISTS terminals (
        client_order_id TEXT PRIMARY KEY, status TEXT NOT NULL, filled_qty TEXT NOT NULL,
        filled_avg_price TEXT)""",
)
_SET_VERSION = f"PRAGMA user_version={SCHEMA_VERSION}"

_SELECT_PLAN = (
    "SELECT first_event_id, items_fingerprint, first_received_at, outputs, acknowledged"
    " FROM plans WHERE plan_id = ?"
)
_INSERT_PLAN = (
    "INSERT INTO plans (plan_id, first_event_id, items_fingerprint, account_id,"
    " first_received_at, acknowledged) VALUES (?, ?, ?, ?, ?, 0)"
)
_INSERT_EVENT = "INSERT INTO events (event_id, plan_id) VALUES (?, ?)"
_ACKNOWLEDGE = "UPDATE plans SET acknowledged = 1 WHERE plan_id = ? AND outputs IS NOT NULL"
# First intent wins and the last terminal wins, as in memory.
_INSERT_INTENT = (
    "INSERT OR IGNORE INTO intents (client_order_id, plan_id, account_id, trading_day, symbol,"
    " side, qty, expected_price, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_TERMINAL = (
    "INSERT INTO terminals (client_order_id, status, filled_qty, filled_avg_price)"
    " VALUES (?, ?, ?, ?) ON CONFLICT (client_order_id) DO UPDATE SET status = excluded.status,"
    " filled_qty = excluded.filled_qty, filled_avg_price = excluded.filled_avg_price"
)
_RECORD_OUTPUTS = (
    "UPDATE plans SET outputs = ?, decided_at = ? WHERE plan_id = ? AND outputs IS NULL"
)
_SELECT_NOTIONAL = (
    "SELECT i.qty, i.expected_price, t.client_order_id, t.filled_qty, t.filled_avg_price"
    " FROM intents AS i LEFT JOIN terminals AS t ON t.client_order_id = i.client_order_id"
    " WHERE i.account_id = ? AND i.trading_day = ?"
)
_EXPIRE = (
    "DELETE FROM terminals WHERE client_order_id IN (SELECT client_order_id FROM intents"
    " WHERE plan_id IN (SELECT plan_id FROM plans WHERE first_received_at < ?))",
    "DELETE FROM intents WHERE plan_id IN (SELECT plan_id FROM plans WHERE first_received_at < ?)",
    "DELETE FROM events WHERE plan_id IN (SELECT plan_id FROM plans WHERE first_received_at < ?)",
)
_EXPIRE_PLANS = "DELETE FROM plans WHERE first_received_at < ? RETURNING plan_id"


class LedgerError(Exception):
    """The ledger file cannot be used."""


class LedgerSchemaError(LedgerError):
    """The ledger file has a schema version this code does not know."""


def _timestamp(at: datetime) -> str:
    """Fixed-width ISO-8601 in UTC, so that text order is time order. Naive is refused."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"ledger timestamps must be timezone-aware, got {at!r}")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _notional(qty: str, price: str | None) -> Decimal:
    return Decimal(qty) * Decimal(price) if price is not None else Decimal(0)


def _row_notional(row: tuple[Any, ...]) -> Decimal:
    """A terminal's filled notional when the order is terminal, else the intent's expected."""
    qty, expected_price, terminal_id, filled_qty, filled_avg_price = row
    if terminal_id is not None:
        return _notional(filled_qty, filled_avg_price)
    return _notional(qty, expected_price)


def _intent_row(intent: OrderIntent) -> tuple[str | None, ...]:
    return (
        intent.client_order_id,
        intent.plan_id,
        intent.account_id,
        trading_day(intent.recorded_at).isoformat(),
        intent.symbol,
        str(intent.side),
        _text(intent.qty),
        _text(intent.expected_price),
        _timestamp(intent.recorded_at),
    )


def _terminal_row(terminal: OrderTerminal) -> tuple[str | None, ...]:
    t = terminal
    return (t.client_order_id, t.status, _text(t.filled_qty), _text(t.filled_avg_price))


def _known_plan(plan_id: str, row: tuple[Any, ...]) -> KnownPlan:
    first_event_id, fingerprint, received_at, stored, acknowledged = row
    outputs = decode_outputs(stored) if stored is not None else None
    received = datetime.fromisoformat(received_at).astimezone(UTC)
    return KnownPlan(plan_id, first_event_id, fingerprint, received, outputs, bool(acknowledged))


def _record_outcome(
    connection: sqlite3.Connection, outcome: PlanOutcome
) -> tuple[OutputEvent, ...]:
    """Record one plan's outputs unless some are on record; return those on record."""
    row = connection.execute("SELECT outputs FROM plans WHERE plan_id = ?", (outcome.plan_id,))
    found = row.fetchone()
    if found is None:
        return outcome.outputs
    if found[0] is not None:
        return decode_outputs(found[0])
    values = (encode_outputs(outcome.outputs), _timestamp(outcome.decided_at), outcome.plan_id)
    connection.execute(_RECORD_OUTPUTS, values)
    return outcome.outputs


def _expire(connection: sqlite3.Connection, cutoff: str) -> list[str]:
    for statement in _EXPIRE:
        connection.execute(statement, (cutoff,))
    return [str(row[0]) for row in connection.execute(_EXPIRE_PLANS, (cutoff,)).fetchall()]


def _configure(connection: sqlite3.Connection, synchronous: str) -> None:
    mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise LedgerError(f"journal_mode is {mode!r}, the ledger needs a file in WAL mode")
    connection.execute(synchronous)


def _migrate(connection: sqlite3.Connection) -> None:
    """Create the tables of schema version 1; refuse a file written by a newer version."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise LedgerSchemaError(f"ledger schema {version} is newer than {SCHEMA_VERSION}")
        for statement in _SCHEMA:
            connection.execute(statement)
        connection.execute(_SET_VERSION)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


@dataclass
class _Pending:
    """Rows claimed but not yet written; each plan with its insert row."""

    plans: dict[str, tuple[KnownPlan, tuple[str, ...]]] = field(default_factory=dict)
    events: dict[str, str] = field(default_factory=dict)
    acks: dict[str, None] = field(default_factory=dict)

    def add_claim(self, request: PlanClaim, received_at: str) -> None:
        """Buffer a NEW claim: the plan that later claims read, and the row to insert."""
        r = request
        known = KnownPlan(r.plan_id, r.event_id, r.items_fingerprint, r.received_at)
        self.plans[r.plan_id] = (
            known,
            (r.plan_id, r.event_id, r.items_fingerprint, r.account_id, received_at),
        )

    def __len__(self) -> int:
        return len(self.plans) + len(self.events) + len(self.acks)

    def write(self, connection: sqlite3.Connection) -> None:
        """Plans, then event_ids, then acknowledgements: an ack needs recorded outputs."""
        connection.executemany(_INSERT_PLAN, [row for _, row in self.plans.values()])
        connection.executemany(_INSERT_EVENT, self.events.items())
        connection.executemany(_ACKNOWLEDGE, [(plan_id,) for plan_id in self.acks])


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
        pragma = _SYNCHRONOUS.get(synchronous.upper())
        if pragma is None:
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._pending = _Pending()
        self._in_flight: set[str] = set()
        self._transactions = 0
        self._closed = False
        self._connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            _configure(self._connection, pragma)
            _migrate(self._connection)
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
        received_at = _timestamp(request.received_at)
        with self._lock:
            known = self._known(request.plan_id)
            event_plan_id = self._event_plan_id(request.event_id)
            in_flight = request.plan_id in self._in_flight
            answer = decide_claim(request, known, event_plan_id, in_flight_here=in_flight)
            if answer.status in _CLAIMED:
                self._in_flight.add(request.plan_id)
            if answer.status is ClaimStatus.NEW:
                self._pending.add_claim(request, received_at)
            if answer.status is not ClaimStatus.EVENT_ID_REUSED and event_plan_id is None:
                self._pending.events[request.event_id] = request.plan_id
            self._flush_when_full()
            return answer

    def record_intents(self, intents: Sequence[OrderIntent]) -> None:
        """Write the buffered claims and the intents in one transaction; durable on return."""
        rows = [_intent_row(intent) for intent in intents]
        with self._lock:
            if rows or self._pending:
                self._transaction(lambda connection: connection.executemany(_INSERT_INTENT, rows))

    def record_terminals(self, terminals: Sequence[OrderTerminal]) -> None:
        """Write the buffered rows and the terminals in one transaction; the last one wins."""
        rows = [_terminal_row(terminal) for terminal in terminals]
        with self._lock:
            if rows or self._pending:
                self._transaction(lambda connection: connection.executemany(_UPSERT_TERMINAL, rows))

    def notional_used(self, account_id: str, day: date) -> Decimal:
        """Summed exactly in Decimal: filled notional of terminal orders, else expected."""
        with self._lock:
            rows = self._connection.execute(_SELECT_NOTIONAL, (account_id, day.isoformat()))
            return sum((_row_notional(row) for row in rows.fetchall()), Decimal(0))

    def record_outcomes(self, outcomes: Sequence[PlanOutcome]) -> list[tuple[OutputEvent, ...]]:
        """Write the buffered rows and the outcomes in one transaction, first writer wins."""
        with self._lock:
            if not outcomes and not self._pending:
                return []
            on_record = self._transaction(
                lambda connection: [_record_outcome(connection, o) for o in outcomes]
            )
            self._in_flight.difference_update(outcome.plan_id for outcome in outcomes)
            return on_record

    def mark_acknowledged(self, plan_ids: Sequence[str]) -> None:
        """Buffered: written with the next write transaction, for plans with outputs."""
        with self._lock:
            self._pending.acks.update(dict.fromkeys(plan_ids))
            self._flush_when_full()

    def expire(self, before: datetime) -> int:
        """Flush, then forget plans first received before ``before`` with their rows."""
        cutoff = _timestamp(before)
        with self._lock:
            expired = self._transaction(lambda connection: _expire(connection, cutoff))
            self._in_flight.difference_update(expired)
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

    def _known(self, plan_id: str) -> KnownPlan | None:
        pending = self._pending.plans.get(plan_id)
        if pending is not None:
            return pending[0]
        row = self._connection.execute(_SELECT_PLAN, (plan_id,)).fetchone()
        if row is None:
            return None
        known = _known_plan(plan_id, row)
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
        if self._pending:
            self._transaction(lambda connection: None)

    def _transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Write the buffer, then ``work``, in one transaction; the lock is held by the caller.

        The buffer is cleared only after COMMIT: a failed write keeps it for the next one.
        """
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
