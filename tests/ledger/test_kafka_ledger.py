"""KafkaLedger over an in-memory changelog: what is written where, and what a second instance
restores from it (the same over real Kafka: tests/streams/test_kafka_ledger_on_kafka.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from changelog_double import MemoryChangelog
from ledger_builders import (
    ACCOUNT,
    TODAY,
    intent,
    outcome,
    plan_claim,
    terminal,
    wire,
)
from support import T0

from rebalance_stream.ledger.kafka_ledger import KafkaLedger
from rebalance_stream.ledger.protocol import ClaimStatus, PartitionedLedger, PlanClaim


def on(log: MemoryChangelog, *partitions: int) -> KafkaLedger:
    ledger = KafkaLedger(log.writer(), log.reader())
    ledger.restore(list(partitions))
    return ledger


def claim_in(partition: int, plan_id: str, **changes: object) -> PlanClaim:
    return replace(plan_claim(plan_id), partition=partition, **changes)  # type: ignore[arg-type]


def test_kafka_ledger_is_a_partitioned_ledger() -> None:
    assert isinstance(on(MemoryChangelog()), PartitionedLedger)


def test_each_plan_is_written_to_its_input_partition() -> None:
    log = MemoryChangelog()
    ledger = on(log, 0, 2)
    ledger.claim(claim_in(2, "p1"))
    order = intent("p1")

    ledger.record_intents([order])
    ledger.record_terminals([terminal(order, "40", "250.00")])
    ledger.record_outcomes([outcome("p1")])

    assert log.keys(2) == [
        "plan/p1",
        "event/evt-p1",
        f"intent/{order.client_order_id}",
        f"terminal/{order.client_order_id}",
        "plan/p1",
    ]
    assert log.keys(0) == []


def test_a_second_instance_restores_outputs_intents_and_notional() -> None:
    log = MemoryChangelog()
    first = on(log, 1)
    first.claim(claim_in(1, "p1"))
    order, other = intent("p1"), intent("p1", "BND", "2", "50.00")
    first.record_intents([order, other])
    first.record_terminals([terminal(order, "20", "250.00")])
    first.record_outcomes([outcome("p1")])
    first.close()

    second = on(log, 1)
    answer = second.claim(claim_in(1, "p1"))

    assert answer.status is ClaimStatus.REPUBLISH
    assert wire(answer.outputs) == wire(outcome("p1").outputs)
    assert second.notional_used(ACCOUNT, TODAY) == Decimal("5100.00")
    assert second.open_intents() == [other]


def test_an_acknowledged_plan_restores_as_a_duplicate_event() -> None:
    log = MemoryChangelog()
    first = on(log, 0)
    first.claim(claim_in(0, "p1"))
    first.record_outcomes([outcome("p1")])
    first.mark_acknowledged(["p1"])
    first.close()

    assert on(log, 0).claim(claim_in(0, "p1")).status is ClaimStatus.DUPLICATE_EVENT


def test_a_claim_without_intents_is_lost_in_a_crash_and_claimed_again() -> None:
    log = MemoryChangelog()
    crashed = on(log, 0)
    crashed.claim(claim_in(0, "p1"))  # sent, never flushed: the process dies here

    assert on(log, 0).claim(claim_in(0, "p1")).status is ClaimStatus.NEW


def test_a_plan_with_intents_resumes_in_the_next_instance() -> None:
    log = MemoryChangelog()
    crashed = on(log, 0)
    crashed.claim(claim_in(0, "p1"))
    crashed.record_intents([intent("p1")])

    resumed = on(log, 0).claim(claim_in(0, "p1", received_at=T0 + timedelta(minutes=5)))

    assert (resumed.status, resumed.first_received_at) == (ClaimStatus.RESUME, T0)


def test_only_the_restored_partitions_are_known() -> None:
    log = MemoryChangelog()
    writer = on(log, 0, 1)
    writer.claim(claim_in(0, "p0"))
    writer.claim(claim_in(1, "p1"))
    writer.record_outcomes([outcome("p0"), outcome("p1")])

    reader = on(log, 1)

    assert reader.partitions == frozenset({1})
    assert reader.claim(claim_in(1, "p1")).status is ClaimStatus.REPUBLISH
    assert reader.claim(claim_in(0, "p0")).status is ClaimStatus.NEW


def test_a_revoked_partition_not_assigned_again_is_dropped_the_others_kept() -> None:
    log = MemoryChangelog()
    ledger = on(log, 0, 1)
    ledger.claim(claim_in(0, "p0"))
    ledger.claim(claim_in(1, "p1"))
    ledger.record_intents([intent("p0"), intent("p1", account_id="acct-2")])

    ledger.forget([0, 1])
    read = ledger.restore([0])

    assert read == []
    assert ledger.partitions == frozenset({0})
    assert log.reads == [0, 1]  # the first restore only: partition 0 came straight back
    assert [i.plan_id for i in ledger.open_intents()] == ["p0"]
    assert ledger.notional_used("acct-2", TODAY) == Decimal(0)
    assert ledger.claim(claim_in(0, "p0")).status is ClaimStatus.DUPLICATE_EVENT


def test_forget_flushes_what_was_sent_before_the_partition_goes() -> None:
    log = MemoryChangelog()
    ledger = on(log, 0)
    ledger.claim(claim_in(0, "p0"))

    ledger.forget([0])

    assert (log.keys(0), log.unflushed, ledger.partitions) == (
        ["plan/p0", "event/evt-p0"],
        [],
        frozenset(),
    )


def test_a_partition_restored_after_another_owner_is_read_anew() -> None:
    log = MemoryChangelog()
    ledger = on(log, 0)
    ledger.claim(claim_in(0, "p0"))
    ledger.forget([0])
    ledger.restore([])  # partition 0 went to another instance
    elsewhere = on(log, 0)
    elsewhere.claim(claim_in(0, "p0"))
    elsewhere.record_outcomes([outcome("p0")])

    read = ledger.restore([0])

    assert read == [0]
    assert ledger.claim(claim_in(0, "p0")).status is ClaimStatus.REPUBLISH


def test_expire_writes_tombstones_so_a_restore_forgets_the_plan() -> None:
    log = MemoryChangelog()
    first = on(log, 0)
    first.claim(claim_in(0, "p1"))
    first.record_intents([intent("p1")])
    first.record_outcomes([outcome("p1")])

    expired = first.expire(T0 + timedelta(days=31))
    restored = on(log, 0)

    assert expired == 1
    assert restored.claim(claim_in(0, "p1")).status is ClaimStatus.NEW
    assert restored.open_intents() == []
    assert restored.notional_used(ACCOUNT, TODAY) == Decimal(0)


def test_intents_and_outcomes_are_durable_on_return_claims_ride_along() -> None:
    log = MemoryChangelog()
    ledger = on(log, 0)

    ledger.claim(claim_in(0, "p1"))
    after_claim = log.flushes
    ledger.record_intents([intent("p1")])
    after_intents = log.flushes
    ledger.record_outcomes([outcome("p1")])

    assert (after_claim, after_intents, log.flushes) == (0, 1, 2)
    assert log.unflushed == []
