"""The changelog encoding: every entity round-trips exactly, the latest value of a key wins,
and a tombstone deletes it, so replaying a compacted partition rebuilds the ledger state."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_ledger_contract import ACCOUNT, T0, intent, outputs_for, terminal

from rebalance_stream.contracts.wire import canonical_json
from rebalance_stream.ledger.changelog import (
    PLAN,
    ChangelogError,
    ChangelogRecord,
    LedgerSnapshot,
    event_record,
    intent_record,
    plan_record,
    terminal_record,
    tombstone,
)
from rebalance_stream.ledger.protocol import KnownPlan


def known(plan_id: str, decided: bool = False) -> KnownPlan:
    outputs = outputs_for(plan_id) if decided else None
    return KnownPlan(plan_id, f"evt-{plan_id}", "fp", T0, outputs, acknowledged=decided)


def replay(*records: ChangelogRecord) -> LedgerSnapshot:
    snapshot = LedgerSnapshot()
    for record in records:
        snapshot.apply(record)
    return snapshot


def test_every_entity_round_trips_exactly() -> None:
    order = intent("p1", "VTI", "0.123456789", "250.0100")
    done = terminal(order, "0.123456789", "250.0125")

    snapshot = replay(
        plan_record(known("p1", decided=True), ACCOUNT),
        event_record("evt-p1", "p1"),
        intent_record(order),
        terminal_record(done),
    )

    assert snapshot.plans == {"p1": known("p1", decided=True)}
    assert snapshot.accounts == {"p1": ACCOUNT}
    assert snapshot.events == {"evt-p1": "p1"}
    assert snapshot.intents == {order.client_order_id: order}
    assert snapshot.terminals == {order.client_order_id: done}


def test_recorded_outputs_come_back_as_the_same_bytes() -> None:
    snapshot = replay(plan_record(known("p1", decided=True), ACCOUNT))

    restored = snapshot.plans["p1"].outputs or ()
    assert [canonical_json(e) for e in restored] == [canonical_json(e) for e in outputs_for("p1")]


def test_the_latest_value_of_a_key_wins_and_a_tombstone_deletes() -> None:
    claimed, decided = known("p1"), known("p1", decided=True)

    snapshot = replay(
        plan_record(claimed, ACCOUNT),
        plan_record(decided, ACCOUNT),
        plan_record(known("p2"), "acct-2"),
        tombstone(PLAN, "p2"),
    )

    assert snapshot.plans == {"p1": decided}
    assert snapshot.accounts == {"p1": ACCOUNT}


def test_an_unknown_key_is_a_typed_error() -> None:
    with pytest.raises(ChangelogError, match="unknown changelog key"):
        replay(ChangelogRecord(b"order/x", b"{}"))


def test_a_plan_claimed_later_in_the_log_replaces_an_expired_one() -> None:
    later = replace(known("p1"), first_received_at=T0.replace(year=2027))

    snapshot = replay(
        plan_record(known("p1"), ACCOUNT), tombstone(PLAN, "p1"), plan_record(later, ACCOUNT)
    )

    assert snapshot.plans == {"p1": later}
