"""The SQLite ledger's file: a new one at schema version 4, an older one upgraded in place
(its plans kept), a newer one refused."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from support import T0
from test_ledger_contract import decided, plan_claim
from test_sqlite_ledger import query

from rebalance_stream.ledger.protocol import ClaimStatus, PublishedInput
from rebalance_stream.ledger.sqlite import LedgerSchemaError, SqliteLedger
from rebalance_stream.ledger.sqlite_schema import SCHEMA_VERSION, SELECT_PUBLISHED_INPUTS


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


def test_sqlite_ledger_creates_schema_version_4_and_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledgers" / "ledger.sqlite"

    SqliteLedger(path).close()

    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)] == [(4,)]
    tables = query(path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    assert tables == [("events",), ("intents",), ("plans",), ("terminals",)]


def test_sqlite_ledger_newer_schema_version_raises_and_leaves_the_file(path: Path) -> None:
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA user_version = 5")

    with pytest.raises(LedgerSchemaError, match="ledger schema 5 is newer than 4"):
        SqliteLedger(path)

    assert query(path, "PRAGMA user_version") == [(5,)]
    assert query(path, "SELECT name FROM sqlite_master") == []


# The plans table as schema version 1 created it, before plans kept their input's digest.
PLANS_V1 = """CREATE TABLE plans (
    plan_id TEXT PRIMARY KEY, first_event_id TEXT NOT NULL, items_fingerprint TEXT NOT NULL,
    account_id TEXT NOT NULL, first_received_at TEXT NOT NULL, outputs BLOB,
    decided_at TEXT, acknowledged INTEGER NOT NULL DEFAULT 0)"""


def test_sqlite_ledger_upgrades_a_version_1_file_and_keeps_its_plans(path: Path) -> None:
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(PLANS_V1)
        connection.execute(
            "INSERT INTO plans VALUES ('p1', 'evt-p1', ?, 'acct', ?, NULL, NULL, 0)",
            (plan_claim("p1").items_fingerprint, T0.isoformat(timespec="microseconds")),
        )
        connection.execute("PRAGMA user_version = 1")

    ledger = SqliteLedger(path)
    old = ledger.claim(plan_claim("p1"))
    new = ledger.claim(plan_claim("p2", input_digest="d2"))
    ledger.close()

    assert query(path, "PRAGMA user_version") == [(4,)]
    assert (old.status, new.status) == (ClaimStatus.RESUME, ClaimStatus.NEW)
    ids = query(path, "SELECT plan_id, input_digest, correlation_id FROM plans ORDER BY plan_id")
    assert ids == [("p1", None, None), ("p2", "d2", "corr-p2")]
    assert digest_indexes(path) == [("published_inputs",)]


def test_sqlite_ledger_upgrades_a_version_2_file_whose_published_inputs_take_the_full_path(
    path: Path,
) -> None:
    """A version 2 plan kept its input's digest but not its correlation_id."""
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(PLANS_V1)
        connection.execute("ALTER TABLE plans ADD COLUMN input_digest TEXT")
        connection.execute(
            "INSERT INTO plans VALUES ('p1', 'evt-p1', ?, 'acct', ?, x'00', ?2, 1, 'd1')",
            (plan_claim("p1").items_fingerprint, T0.isoformat(timespec="microseconds")),
        )
        connection.execute("PRAGMA user_version = 2")

    ledger = SqliteLedger(path)
    old = ledger.published_inputs(["d1"]).get("d1")
    decided(ledger, "p2", digest="d2")
    ledger.mark_acknowledged(["p2"])
    ledger.flush()
    new = ledger.published_inputs(["d2"]).get("d2")
    ledger.close()

    assert query(path, "PRAGMA user_version") == [(4,)]
    assert (old, new) == (None, PublishedInput("p2", "evt-p2", "corr-p2"))


def digest_indexes(path: Path) -> list[tuple[Any, ...]]:
    return query(
        path,
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '%input_digest%'",
    )


def test_sqlite_ledger_upgrades_a_version_3_file_to_a_covering_index_of_published_inputs(
    path: Path,
) -> None:
    ledger = SqliteLedger(path)
    decided(ledger, "p1", digest="d1")
    ledger.mark_acknowledged(["p1"])
    ledger.close()
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("DROP INDEX published_inputs")
        connection.execute(
            "CREATE INDEX plans_by_input_digest ON plans (input_digest)"
            " WHERE input_digest IS NOT NULL"
        )
        connection.execute("PRAGMA user_version = 3")

    reopened = SqliteLedger(path)
    found = reopened.published_inputs(["d1"])
    reopened.close()

    assert query(path, "PRAGMA user_version") == [(4,)]
    assert found == {"d1": PublishedInput("p1", "evt-p1", "corr-p1")}
    assert digest_indexes(path) == [("published_inputs",)]
    plan = query(path, "EXPLAIN QUERY PLAN " + SELECT_PUBLISHED_INPUTS, ("[]",))
    assert any("COVERING INDEX published_inputs" in str(row[-1]) for row in plan)
