"""The SQLite ledger's schema, statements and row conversions (schema version 4).

Decimals are stored as exact text and timestamps as fixed-width UTC ISO text, so that text order
is time order. ``migrate`` creates the tables, brings an older file to version 4 (version 2
keeps each plan's first input digest, version 3 its correlation_id; older plans have neither;
version 4 looks published inputs up in a covering index of the published plans only), and
refuses a file from a newer version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rebalance_stream.contracts.execution import OrderSide
from rebalance_stream.contracts.outcomes import OutputEvent
from rebalance_stream.ledger.protocol import (
    ClaimStatus,
    KnownPlan,
    OrderIntent,
    OrderTerminal,
    PlanOutcome,
    decode_outputs,
    encode_outputs,
    trading_day,
)

SCHEMA_VERSION = 4
BUSY_TIMEOUT_S = 5.0
DEFAULT_MAX_PENDING = 10_000
"""Buffered rows (claims, event_ids, acknowledgements) that force a flush."""

CLAIMED = frozenset({ClaimStatus.NEW, ClaimStatus.RESUME})
SYNCHRONOUS = {"FULL": "PRAGMA synchronous=FULL", "NORMAL": "PRAGMA synchronous=NORMAL"}
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS plans (
        plan_id TEXT PRIMARY KEY, first_event_id TEXT NOT NULL, items_fingerprint TEXT NOT NULL,
        account_id TEXT NOT NULL, first_received_at TEXT NOT NULL, outputs BLOB,
        decided_at TEXT, acknowledged INTEGER NOT NULL DEFAULT 0, input_digest TEXT,
        correlation_id TEXT)""",
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
# From the version a file has to the next; a new file is created at SCHEMA_VERSION.
UPGRADES = {
    1: ("ALTER TABLE plans ADD COLUMN input_digest TEXT",),
    2: ("ALTER TABLE plans ADD COLUMN correlation_id TEXT",),
    3: ("DROP INDEX IF EXISTS plans_by_input_digest",),
}
INDEXES = (
    # Covering: a replay's lookup of a poll's digests reads the index alone, never the rows
    # (whose recorded outputs sit before their last columns).
    "CREATE INDEX IF NOT EXISTS published_inputs ON plans"
    " (input_digest, plan_id, first_event_id, correlation_id, acknowledged)"
    " WHERE input_digest IS NOT NULL AND acknowledged = 1 AND correlation_id IS NOT NULL",
)
SET_VERSION = f"PRAGMA user_version={SCHEMA_VERSION}"

SELECT_PLAN = (
    "SELECT first_event_id, items_fingerprint, first_received_at, outputs, acknowledged"
    " FROM plans WHERE plan_id = ?"
)
# What a claim needs: an acknowledged plan's outputs are never republished, so they stay unread.
SELECT_PLAN_TO_CLAIM = (
    "SELECT first_event_id, items_fingerprint, first_received_at,"
    " CASE WHEN acknowledged = 1 THEN NULL ELSE outputs END, outputs IS NOT NULL, acknowledged"
    " FROM plans WHERE plan_id = ?"
)
INSERT_PLAN = (
    "INSERT INTO plans (plan_id, first_event_id, items_fingerprint, account_id,"
    " first_received_at, input_digest, correlation_id, acknowledged)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, 0)"
)
SELECT_PUBLISHED_INPUTS = (
    "SELECT input_digest, plan_id, first_event_id, correlation_id FROM plans"
    " WHERE input_digest IN (SELECT value FROM json_each(?)) AND input_digest IS NOT NULL"
    " AND acknowledged = 1 AND correlation_id IS NOT NULL"
)
"""The published plans first claimed from any of the input digests in a JSON array."""
INSERT_EVENT = "INSERT INTO events (event_id, plan_id) VALUES (?, ?)"
SELECT_EVENT_PLAN = "SELECT plan_id FROM events WHERE event_id = ?"
ACKNOWLEDGE = "UPDATE plans SET acknowledged = 1 WHERE plan_id = ? AND outputs IS NOT NULL"
# First intent wins and the last terminal wins, as in memory.
INSERT_INTENT = (
    "INSERT OR IGNORE INTO intents (client_order_id, plan_id, account_id, trading_day, symbol,"
    " side, qty, expected_price, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
UPSERT_TERMINAL = (
    "INSERT INTO terminals (client_order_id, status, filled_qty, filled_avg_price)"
    " VALUES (?, ?, ?, ?) ON CONFLICT (client_order_id) DO UPDATE SET status = excluded.status,"
    " filled_qty = excluded.filled_qty, filled_avg_price = excluded.filled_avg_price"
)
RECORD_OUTPUTS = (
    "UPDATE plans SET outputs = ?, decided_at = ? WHERE plan_id = ? AND outputs IS NULL"
)
SELECT_NOTIONAL = (
    "SELECT i.client_order_id, i.qty, i.expected_price, t.client_order_id, t.filled_qty,"
    " t.filled_avg_price"
    " FROM intents AS i LEFT JOIN terminals AS t ON t.client_order_id = i.client_order_id"
    " WHERE i.account_id = ? AND i.trading_day = ?"
)
SELECT_OPEN_INTENTS = (
    "SELECT i.plan_id, i.account_id, i.client_order_id, i.symbol, i.side, i.qty,"
    " i.expected_price, i.recorded_at FROM intents AS i LEFT JOIN terminals AS t"
    " ON t.client_order_id = i.client_order_id WHERE t.client_order_id IS NULL"
    " ORDER BY i.recorded_at, i.client_order_id"
)
EXPIRE_ROWS = (
    "DELETE FROM terminals WHERE client_order_id IN (SELECT client_order_id FROM intents"
    " WHERE plan_id IN (SELECT plan_id FROM plans WHERE first_received_at < ?))",
    "DELETE FROM intents WHERE plan_id IN (SELECT plan_id FROM plans WHERE first_received_at < ?)",
    "DELETE FROM events WHERE plan_id IN (SELECT plan_id FROM plans WHERE first_received_at < ?)",
)
EXPIRE_PLANS = "DELETE FROM plans WHERE first_received_at < ? RETURNING plan_id"


class LedgerError(Exception):
    """The ledger file cannot be used."""


class LedgerSchemaError(LedgerError):
    """The ledger file has a schema version this code does not know."""


def timestamp_text(at: datetime) -> str:
    """Fixed-width ISO-8601 in UTC, so that text order is time order. Naive is refused."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"ledger timestamps must be timezone-aware, got {at!r}")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def decimal_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def has_terminal(connection: sqlite3.Connection, client_order_ids: Sequence[str]) -> bool:
    """Whether any of these orders has a terminal state on record."""
    if not client_order_ids:
        return False
    marks = ", ".join("?" * len(client_order_ids))
    query = f"SELECT 1 FROM terminals WHERE client_order_id IN ({marks}) LIMIT 1"  # noqa: S608
    return connection.execute(query, list(client_order_ids)).fetchone() is not None


def notional(qty: str, price: str | None) -> Decimal:
    return Decimal(qty) * Decimal(price) if price is not None else Decimal(0)


def row_notional(row: tuple[Any, ...]) -> Decimal:
    """A terminal's filled notional when the order is terminal, else the intent's expected."""
    qty, expected_price, terminal_id, filled_qty, filled_avg_price = row
    if terminal_id is not None:
        return notional(filled_qty, filled_avg_price)
    return notional(qty, expected_price)


def intent_row(intent: OrderIntent) -> tuple[str | None, ...]:
    return (
        intent.client_order_id,
        intent.plan_id,
        intent.account_id,
        trading_day(intent.recorded_at).isoformat(),
        intent.symbol,
        str(intent.side),
        decimal_text(intent.qty),
        decimal_text(intent.expected_price),
        timestamp_text(intent.recorded_at),
    )


def intent_of_row(row: tuple[Any, ...]) -> OrderIntent:
    plan_id, account_id, client_order_id, symbol, side, qty, price, recorded_at = row
    return OrderIntent(
        plan_id=plan_id,
        account_id=account_id,
        client_order_id=client_order_id,
        symbol=symbol,
        side=OrderSide(side),
        qty=Decimal(qty),
        expected_price=Decimal(price) if price is not None else None,
        recorded_at=datetime.fromisoformat(recorded_at).astimezone(UTC),
    )


def terminal_row(terminal: OrderTerminal) -> tuple[str | None, ...]:
    t = terminal
    return (
        t.client_order_id,
        t.status,
        decimal_text(t.filled_qty),
        decimal_text(t.filled_avg_price),
    )


def known_plan(plan_id: str, row: tuple[Any, ...]) -> KnownPlan:
    first_event_id, fingerprint, received_at, stored, acknowledged = row
    outputs = decode_outputs(stored) if stored is not None else None
    received = datetime.fromisoformat(received_at).astimezone(UTC)
    return KnownPlan(plan_id, first_event_id, fingerprint, received, outputs, bool(acknowledged))


def known_plan_to_claim(plan_id: str, row: tuple[Any, ...]) -> KnownPlan:
    """A row of SELECT_PLAN_TO_CLAIM: an acknowledged plan's outputs are () (decided, and
    not read: a claim never republishes them)."""
    *head, stored, decided, acknowledged = row
    known = known_plan(plan_id, (*head, stored, acknowledged))
    return replace(known, outputs=()) if stored is None and decided else known


def record_outcome(connection: sqlite3.Connection, outcome: PlanOutcome) -> tuple[OutputEvent, ...]:
    """Record one plan's outputs unless some are on record; return those on record."""
    row = connection.execute("SELECT outputs FROM plans WHERE plan_id = ?", (outcome.plan_id,))
    found = row.fetchone()
    if found is None:
        return outcome.outputs
    if found[0] is not None:
        return decode_outputs(found[0])
    values = (encode_outputs(outcome.outputs), timestamp_text(outcome.decided_at), outcome.plan_id)
    connection.execute(RECORD_OUTPUTS, values)
    return outcome.outputs


def expire_rows(connection: sqlite3.Connection, cutoff: str) -> list[str]:
    for statement in EXPIRE_ROWS:
        connection.execute(statement, (cutoff,))
    return [str(row[0]) for row in connection.execute(EXPIRE_PLANS, (cutoff,)).fetchall()]


def configure(connection: sqlite3.Connection, synchronous: str) -> None:
    mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise LedgerError(f"journal_mode is {mode!r}, the ledger needs a file in WAL mode")
    connection.execute(synchronous)


def migrate(connection: sqlite3.Connection) -> None:
    """Create the tables of the current schema, or upgrade an older file's, in one
    transaction; refuse a file written by a newer version."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise LedgerSchemaError(f"ledger schema {version} is newer than {SCHEMA_VERSION}")
        for statement in SCHEMA:
            connection.execute(statement)
        for step in range(version or SCHEMA_VERSION, SCHEMA_VERSION):  # 0: a new file
            for statement in UPGRADES[step]:
                connection.execute(statement)
        for statement in INDEXES:
            connection.execute(statement)
        connection.execute(SET_VERSION)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
