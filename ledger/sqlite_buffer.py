"""The SQLite ledger's write buffers: rows claimed but not written, and intents that wait for
a shared transaction. Plain data; the ledger guards them with its lock."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from rebalance_stream.ledger.protocol import KnownPlan, OrderIntent, PlanClaim
from rebalance_stream.ledger.sqlite_schema import (
    ACKNOWLEDGE,
    INSERT_EVENT,
    INSERT_INTENT,
    INSERT_PLAN,
    UPSERT_TERMINAL,
    has_terminal,
    intent_row,
)


@dataclass
class PendingRows:
    """Rows claimed but not yet written; each plan with its insert row."""

    plans: dict[str, tuple[KnownPlan, tuple[str | None, ...]]] = field(default_factory=dict)
    events: dict[str, str] = field(default_factory=dict)
    acks: dict[str, None] = field(default_factory=dict)
    terminals: dict[str, tuple[str | None, ...]] = field(default_factory=dict)

    def add_claim(self, request: PlanClaim, received_at: str) -> None:
        """Buffer a NEW claim: the plan that later claims read, and the row to insert."""
        r = request
        known = KnownPlan(r.plan_id, r.event_id, r.items_fingerprint, r.received_at)
        self.plans[r.plan_id] = (
            known,
            (
                r.plan_id,
                r.event_id,
                r.items_fingerprint,
                r.account_id,
                received_at,
                r.input_digest,
                r.correlation_id,
            ),
        )

    def __len__(self) -> int:
        return len(self.plans) + len(self.events) + len(self.acks) + len(self.terminals)

    def write(self, connection: sqlite3.Connection) -> None:
        """Plans, then event_ids, then acknowledgements: an ack needs recorded outputs."""
        connection.executemany(INSERT_PLAN, [row for _, row in self.plans.values()])
        connection.executemany(INSERT_EVENT, self.events.items())
        connection.executemany(ACKNOWLEDGE, [(plan_id,) for plan_id in self.acks])
        connection.executemany(UPSERT_TERMINAL, self.terminals.values())

    def then(self, newer: PendingRows) -> PendingRows:
        """This buffer with ``newer`` buffered after it (a failed write is buffered again)."""
        return PendingRows(
            {**self.plans, **newer.plans},
            {**self.events, **newer.events},
            {**self.acks, **newer.acks},
            {**self.terminals, **newer.terminals},
        )


NOTHING_PENDING = PendingRows()


@dataclass
class IntentWrite:
    """One ``record_intents`` call: its rows wait for a write transaction, which may be shared
    with other calls' (a group commit). ``done`` once a write took them, then ``all_new``
    (every intent was new, none had a terminal first) or ``error``."""

    intents: Sequence[OrderIntent]
    rows: list[tuple[str | None, ...]] = field(init=False)
    order_ids: list[str] = field(init=False)
    ended_early: bool = False
    done: bool = False
    all_new: bool = True
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.rows = [intent_row(intent) for intent in self.intents]
        self.order_ids = [intent.client_order_id for intent in self.intents]

    def insert(self, connection: sqlite3.Connection) -> tuple[int, bool]:
        """Insert the rows; how many were new, and whether any order has a terminal already."""
        inserted = connection.executemany(INSERT_INTENT, self.rows).rowcount
        return inserted, has_terminal(connection, self.order_ids)

    def written(self, inserted: int, ended_before: bool) -> None:
        self.all_new = inserted == len(self.rows) and not (self.ended_early or ended_before)
        self.done = True
