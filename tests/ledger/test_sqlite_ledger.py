"""SqliteLedger only: durability across restarts and crashes, write batching, the file's
settings and schema version, exact decimals and UTC timestamps, and many threads at once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import T0
from test_ledger_contract import (
    ACCOUNT,
    ITEMS,
    TODAY,
    decided,
    intent,
    outcome,
    outputs_for,
    plan_claim,
    terminal,
    wire,
)

from rebalance_stream.ledger.protocol import Claim, ClaimStatus, PlanOutcome, PublishedInput
from rebalance_stream.ledger.sqlite import (
    LedgerError,
    SqliteLedger,
)

NEW_YORK = ZoneInfo("America/New_York")
LATER = T0 + timedelta(minutes=5)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


def query(path: Path, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the file through a connection of its own, as another process would."""
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql, parameters).fetchall()


def claims_of(ledger: SqliteLedger, count: int, prefix: str = "p") -> list[Claim]:
    return [ledger.claim(plan_claim(f"{prefix}{n}")) for n in range(count)]


# -- durability ------------------------------------------------------------------------------


def test_sqlite_ledger_reopened_keeps_claims_intents_outcomes_and_acknowledgements(
    path: Path,
) -> None:
    ledger = SqliteLedger(path)
    for plan_id in ("acked", "decided", "open"):
        ledger.claim(plan_claim(plan_id))
    ledger.record_intents([intent("open")])
    ledger.record_outcomes([outcome("acked"), outcome("decided", variant=1)])
    ledger.mark_acknowledged(["acked"])
    ledger.close()

    reopened = SqliteLedger(path)

    assert reopened.claim(plan_claim("acked")) == Claim(
        ClaimStatus.DUPLICATE_EVENT, "evt-acked", T0
    )
    republished = reopened.claim(plan_claim("decided"))
    assert republished.status is ClaimStatus.REPUBLISH
    assert wire(republished.outputs) == wire(outputs_for("decided", 1))
    assert reopened.claim(plan_claim("open", received_at=LATER)).status is ClaimStatus.RESUME
    assert reopened.notional_used(ACCOUNT, TODAY) == Decimal("10000.00")
    reopened.close()


def test_sqlite_ledger_claims_never_read_an_acknowledged_plans_outputs(path: Path) -> None:
    """A replay of acknowledged plans reads no outputs: bytes that cannot be decoded do not
    matter there, while an unacknowledged plan's are decoded to be republished."""
    ledger = SqliteLedger(path)
    for plan_id in ("acked", "decided"):
        ledger.claim(plan_claim(plan_id))
    ledger.record_outcomes([outcome("acked"), outcome("decided")])
    ledger.mark_acknowledged(["acked"])
    ledger.close()
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("UPDATE plans SET outputs = X'00' WHERE plan_id = 'acked'")
        connection.commit()

    reopened = SqliteLedger(path)

    acked = reopened.claim(plan_claim("acked"))
    assert acked == Claim(ClaimStatus.DUPLICATE_EVENT, "evt-acked", T0)
    republished = reopened.claim(plan_claim("decided"))
    assert wire(republished.outputs) == wire(outputs_for("decided"))
    reopened.close()


def test_sqlite_ledger_after_restart_resumes_an_undecided_plan_once(path: Path) -> None:
    ledger = SqliteLedger(path)
    ledger.claim(plan_claim("p1", received_at=T0.astimezone(NEW_YORK)))
    ledger.close()
    reopened = SqliteLedger(path)

    resumed = reopened.claim(plan_claim("p1", received_at=LATER))
    again = reopened.claim(plan_claim("p1", received_at=LATER))

    assert resumed == Claim(ClaimStatus.RESUME, "evt-p1", T0)
    assert resumed.first_received_at.utcoffset() == timedelta(0)
    assert again == Claim(ClaimStatus.DUPLICATE_EVENT, "evt-p1", T0)
    reopened.record_outcomes([outcome("p1")])
    assert reopened.claim(plan_claim("p1")).status is ClaimStatus.REPUBLISH
    reopened.close()


def test_sqlite_ledger_buffered_claims_are_invisible_to_other_connections_until_flush(
    path: Path,
) -> None:
    ledger = SqliteLedger(path)
    ledger.claim(plan_claim("p1"))

    before = query(path, "SELECT count(*) FROM plans UNION ALL SELECT count(*) FROM events")
    ledger.flush()
    after = query(path, "SELECT plan_id, first_event_id, account_id, acknowledged FROM plans")

    assert before == [(0,), (0,)]
    assert after == [("p1", "evt-p1", ACCOUNT, 0)]
    ledger.close()


# A real crash: a child process records, then ends with os._exit, so nothing flushes or closes.
CRASH = """
import os, sys
from datetime import datetime
from decimal import Decimal
from rebalance_stream.contracts.execution import OrderSide
from rebalance_stream.ledger.protocol import OrderIntent, PlanClaim
from rebalance_stream.ledger.sqlite import SqliteLedger

path, received_at, items = sys.argv[1], datetime.fromisoformat(sys.argv[2]), sys.argv[3]
ledger = SqliteLedger(path)
ledger.claim(PlanClaim("sent", "evt-sent", items, received_at, "acct-1"))
ledger.record_intents([OrderIntent(
    "sent", "acct-1", "cid-sent", "VTI", OrderSide.BUY, Decimal("40"), Decimal("250.00"),
    received_at,
)])
ledger.claim(PlanClaim("unsent", "evt-unsent", items, received_at, "acct-1"))
os._exit(0)
"""


def test_sqlite_ledger_crash_loses_only_claims_that_sent_no_order(path: Path) -> None:
    command = [sys.executable, "-c", CRASH, str(path), T0.isoformat(), ITEMS]
    subprocess.run(command, check=True, timeout=60)  # noqa: S603 - our own interpreter and script

    ledger = SqliteLedger(path)

    assert ledger.claim(plan_claim("sent")) == Claim(ClaimStatus.RESUME, "evt-sent", T0)
    assert ledger.claim(plan_claim("unsent", received_at=LATER)).status is ClaimStatus.NEW
    assert ledger.notional_used(ACCOUNT, TODAY) == Decimal("10000.00")
    ledger.close()


def test_sqlite_ledger_failed_write_keeps_the_buffer_for_the_next_one(path: Path) -> None:
    ledger = SqliteLedger(path)
    ledger.claim(plan_claim("p1"))
    naive = PlanOutcome("p1", outputs_for("p1"), datetime(2026, 11, 30, 14, 30))  # noqa: DTZ001

    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.record_outcomes([naive])

    assert ledger.transactions == 0
    assert query(path, "SELECT count(*) FROM plans") == [(0,)]
    ledger.flush()
    assert query(path, "SELECT plan_id, outputs FROM plans") == [("p1", None)]
    ledger.close()


# -- batching --------------------------------------------------------------------------------


def test_sqlite_ledger_claims_alone_write_nothing_until_flush(path: Path) -> None:
    ledger = SqliteLedger(path)

    claims = claims_of(ledger, 100)

    assert {answer.status for answer in claims} == {ClaimStatus.NEW}
    assert ledger.transactions == 0
    ledger.flush()
    ledger.flush()
    assert ledger.transactions == 1
    assert query(path, "SELECT count(*) FROM plans") == [(100,)]
    ledger.close()


def test_sqlite_ledger_claims_acks_and_outcomes_share_one_transaction(path: Path) -> None:
    ledger = SqliteLedger(path)
    claims_of(ledger, 100)
    ledger.mark_acknowledged([f"p{n}" for n in range(100)])  # before outputs: ignored

    ledger.record_outcomes([outcome(f"p{n}") for n in range(100)])
    first_batch = ledger.transactions
    ledger.mark_acknowledged([f"p{n}" for n in range(100)])
    claims_of(ledger, 100, prefix="q")
    ledger.record_outcomes([outcome(f"q{n}") for n in range(100)])

    assert first_batch == 1
    assert ledger.transactions == 2
    ledger.close()
    reopened = SqliteLedger(path)
    assert reopened.claim(plan_claim("p7")).status is ClaimStatus.DUPLICATE_EVENT
    assert reopened.claim(plan_claim("q7")).status is ClaimStatus.REPUBLISH
    reopened.close()


def test_sqlite_ledger_buffered_acknowledgement_is_read_back_before_it_is_written(
    path: Path,
) -> None:
    ledger = SqliteLedger(path)
    ledger.claim(plan_claim("p1"))
    ledger.record_outcomes([outcome("p1")])

    ledger.mark_acknowledged(["p1"])

    assert ledger.claim(plan_claim("p1")).status is ClaimStatus.DUPLICATE_EVENT
    assert query(path, "SELECT acknowledged FROM plans") == [(0,)]
    assert ledger.transactions == 1
    ledger.close()


@pytest.mark.parametrize("count", [1, 10, 250])
def test_sqlite_ledger_record_intents_is_one_transaction_per_call_terminals_none(
    path: Path, count: int
) -> None:
    ledger = SqliteLedger(path)
    claims_of(ledger, 3)
    orders = [intent("p0", f"S{n}", "1", "10.00") for n in range(count)]

    ledger.record_intents(orders)
    ledger.record_intents(orders)
    ledger.record_terminals([terminal(order, "1", "10.00") for order in orders])
    buffered_terminals = ledger.transactions
    ledger.flush()

    # Terminal states wait for the next write (the outcome's group commit); flush writes them.
    assert (buffered_terminals, ledger.transactions) == (2, 3)
    assert query(path, "SELECT count(*) FROM terminals") == [(count,)]
    assert query(path, "SELECT count(*) FROM plans UNION ALL SELECT count(*) FROM intents") == [
        (3,),
        (count,),
    ]
    ledger.close()


def test_sqlite_ledger_empty_writes_with_nothing_buffered_are_skipped(path: Path) -> None:
    ledger = SqliteLedger(path)

    ledger.record_intents([])
    ledger.record_terminals([])
    ledger.flush()

    assert ledger.record_outcomes([]) == []
    assert ledger.transactions == 0
    ledger.close()


def test_sqlite_ledger_flushes_when_the_buffer_is_full(path: Path) -> None:
    ledger = SqliteLedger(path, max_pending=10)

    claims_of(ledger, 5)  # a plan and its event_id each: 10 buffered rows
    ledger.mark_acknowledged(["p0"] * 9)

    assert ledger.transactions == 1
    assert query(path, "SELECT count(*) FROM plans") == [(5,)]
    ledger.close()


# -- the file --------------------------------------------------------------------------------


@pytest.mark.parametrize(("synchronous", "level"), [("FULL", 2), ("normal", 1)])
def test_sqlite_ledger_opens_in_wal_mode_with_the_chosen_synchronous(
    path: Path, synchronous: str, level: int
) -> None:
    ledger = SqliteLedger(path, synchronous=synchronous)

    own = ledger._connection  # the settings that count are the ledger's connection's

    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    assert own.execute("PRAGMA synchronous").fetchone() == (level,)
    assert own.execute("PRAGMA busy_timeout").fetchone() == (5000,)
    ledger.close()


def test_sqlite_ledger_rejects_an_unknown_synchronous(path: Path) -> None:
    with pytest.raises(ValueError, match="FULL or NORMAL"):
        SqliteLedger(path, synchronous="OFF")


def test_sqlite_ledger_published_input_survives_a_restart(path: Path) -> None:
    ledger = SqliteLedger(path)
    decided(ledger, "p1", digest="d1")
    ledger.mark_acknowledged(["p1"])
    ledger.close()

    reopened = SqliteLedger(path)
    found = reopened.published_inputs(["d1", "d2"])
    reopened.close()

    assert found == {"d1": PublishedInput("p1", "evt-p1", "corr-p1")}


def test_sqlite_ledger_published_input_sees_the_file_not_the_buffer(path: Path) -> None:
    """An acknowledgement still buffered is not seen: the full path decides then."""
    ledger = SqliteLedger(path)
    decided(ledger, "p1", digest="d1")
    ledger.mark_acknowledged(["p1"])

    buffered = ledger.published_inputs(["d1"]).get("d1")
    ledger.flush()
    written = ledger.published_inputs(["d1"]).get("d1")
    ledger.close()

    assert (buffered, written) == (None, PublishedInput("p1", "evt-p1", "corr-p1"))


def test_sqlite_ledger_refuses_a_database_without_wal() -> None:
    with pytest.raises(LedgerError, match="WAL"):
        SqliteLedger(":memory:")


# -- values ----------------------------------------------------------------------------------


def test_sqlite_ledger_decimals_round_trip_exactly_as_text(path: Path) -> None:
    ledger = SqliteLedger(path)
    tiny = intent("p1", "VTI", "0.000000001", "123456789.123456789")
    dust = intent("p1", "GLD", "0.000000001", "0.1")
    ledger.record_intents([tiny, dust])
    ledger.record_terminals([terminal(dust, "0.000000001", "0.10")])
    ledger.close()

    reopened = SqliteLedger(path)
    used = reopened.notional_used(ACCOUNT, TODAY)

    assert used == Decimal("0.123456789123456789") + Decimal("0.0000000001")
    stored = "SELECT qty, typeof(qty), expected_price FROM intents ORDER BY symbol"
    assert query(path, stored) == [
        ("0.000000001", "text", "0.1"),
        ("0.000000001", "text", "123456789.123456789"),
    ]
    assert query(path, "SELECT filled_qty, filled_avg_price FROM terminals") == [
        ("0.000000001", "0.10")
    ]
    reopened.close()


@settings(max_examples=40, deadline=None)
@given(
    qty=st.decimals(min_value=Decimal("0.000000001"), max_value=10**6, places=9),
    price=st.decimals(min_value=Decimal("0.0001"), max_value=10**5, places=4),
)
def test_sqlite_ledger_notional_is_the_exact_decimal_product(qty: Decimal, price: Decimal) -> None:
    with tempfile.TemporaryDirectory() as directory:
        ledger = SqliteLedger(Path(directory) / "ledger.sqlite", synchronous="NORMAL")
        ledger.record_intents([intent("p1", qty=format(qty, "f"), price=format(price, "f"))])

        assert ledger.notional_used(ACCOUNT, TODAY) == qty * price
        ledger.close()


def test_sqlite_ledger_stores_utc_timestamps_and_new_york_trading_days(path: Path) -> None:
    late_evening = T0.replace(hour=4).astimezone(NEW_YORK)  # 23:30 on the 29th in New York
    ledger = SqliteLedger(path)
    ledger.claim(plan_claim("p1", received_at=late_evening))
    ledger.record_intents([intent("p1", recorded_at=late_evening)])
    ledger.record_outcomes([PlanOutcome("p1", outputs_for("p1"), late_evening)])
    ledger.close()

    plans = query(path, "SELECT first_received_at, decided_at FROM plans")
    intents = query(path, "SELECT trading_day, recorded_at FROM intents")

    at = "2026-11-30T04:30:05.000000+00:00"
    assert plans == [(at, at)]
    assert intents == [("2026-11-29", at)]


def test_sqlite_ledger_refuses_naive_timestamps_before_buffering(path: Path) -> None:
    ledger = SqliteLedger(path)
    naive = datetime(2026, 11, 30, 14, 30)  # noqa: DTZ001

    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.claim(plan_claim("p1", received_at=naive))
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.record_intents([intent("p1", recorded_at=naive)])
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.expire(naive)

    assert ledger.claim(plan_claim("p1")).status is ClaimStatus.NEW
    ledger.close()


# -- threads ---------------------------------------------------------------------------------


class ClaimRacedByAWrite(SqliteLedger):
    """Right after a claim has read the file, another claim of the same plan is buffered and
    written: the first claim's reading is then stale, and its buffer check saw nothing."""

    raced = False

    def _stored(self, plan_id: str, event_id: str) -> tuple[Any, str | None]:
        found = super()._stored(plan_id, event_id)
        if not self.raced:
            self.raced = True
            self.other = self.claim(plan_claim(plan_id, event_id="evt-other"))
            self.flush()
        return found


def test_sqlite_ledger_claim_reads_again_when_a_write_commits_during_its_read(
    path: Path,
) -> None:
    """Claims read the file outside the ledger's lock; a write that commits meanwhile makes
    the claim read again, so a plan is never claimed NEW twice."""
    ledger = ClaimRacedByAWrite(path)

    first = ledger.claim(plan_claim("p1"))

    assert ledger.other.status is ClaimStatus.NEW
    assert first == Claim(ClaimStatus.DUPLICATE_PLAN, "evt-other", T0)
    assert query(path, "SELECT plan_id, first_event_id FROM plans") == [("p1", "evt-other")]
    ledger.close()


class FirstWriteWaits(SqliteLedger):
    """Its first write transaction waits for ``release``; ``writing`` says it started."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writing = threading.Event()
        self.release = threading.Event()

    def _transaction(self, work: Any) -> Any:
        if not self.writing.is_set():
            self.writing.set()
            assert self.release.wait(10.0)
        return super()._transaction(work)


def test_sqlite_ledger_intents_that_wait_for_a_write_share_the_next_one(path: Path) -> None:
    ledger = FirstWriteWaits(path)
    first = threading.Thread(target=ledger.record_intents, args=([intent("p0")],))
    first.start()
    assert ledger.writing.wait(10.0)
    waiting = [
        threading.Thread(target=ledger.record_intents, args=([intent(f"p{n}", price="1.00")],))
        for n in (1, 2, 3)
    ]
    for thread in waiting:
        thread.start()
    deadline = time.monotonic() + 10.0
    while len(ledger._intents_waiting) < len(waiting) and time.monotonic() < deadline:
        time.sleep(0.001)  # until all three wait behind the first write
    ledger.release.set()
    for thread in [first, *waiting]:
        thread.join(10.0)

    assert ledger.transactions == 2
    assert query(path, "SELECT plan_id FROM intents ORDER BY plan_id") == [
        ("p0",),
        ("p1",),
        ("p2",),
        ("p3",),
    ]
    assert ledger.notional_used(ACCOUNT, TODAY) == Decimal("10000.00") + 3 * Decimal("40.00")
    ledger.close()


def test_sqlite_ledger_threads_claiming_and_recording_lose_nothing(path: Path) -> None:
    ledger = SqliteLedger(path)
    statuses: list[ClaimStatus] = []
    start = threading.Barrier(8)

    def work(thread: int) -> None:
        start.wait()
        for n in range(25):
            plan_id = f"t{thread}-p{n}"
            statuses.append(ledger.claim(plan_claim(plan_id)).status)
            if n % 5 == 0:
                ledger.record_intents([intent(plan_id, qty="1", price="2.50")])

    threads = [threading.Thread(target=work, args=(thread,)) for thread in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ledger.close()

    reopened = SqliteLedger(path)
    assert statuses == [ClaimStatus.NEW] * 200
    assert query(path, "SELECT count(*) FROM plans UNION ALL SELECT count(*) FROM events") == [
        (200,),
        (200,),
    ]
    assert reopened.notional_used(ACCOUNT, TODAY) == Decimal("100.00")
    resumed = {reopened.claim(plan_claim(f"t{t}-p{n}")).status for t in range(8) for n in range(25)}
    assert resumed == {ClaimStatus.RESUME}
    reopened.close()
