"""record_outcomes: each plan's outputs go on record before they are published; first wins."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest
import reactivex
from plan_factory import Trade
from reactivex import operators as ops
from reactivex.scheduler import ImmediateScheduler, ThreadPoolScheduler
from reactivex.testing import ReactiveTest, TestScheduler
from support import T0, decided_disposition

from rebalance_stream.contracts.outcomes import OutputEvent
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.ledger.protocol import PlanClaim
from rebalance_stream.operators.flow import Disposition
from rebalance_stream.operators.record_outcomes import record_outcomes, settle_outcomes

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed

ITEMS = [Trade("SPY", "BUY", "1500.00")]


def decided(plan_id: str, offset: int = 0, reason: str = "risk says no") -> Disposition:
    return decided_disposition(plan_id, offset, reason)


def claimed(ledger: InMemoryLedger, *plan_ids: str) -> InMemoryLedger:
    for plan_id in plan_ids:
        ledger.claim(PlanClaim(plan_id, f"e-{plan_id}", "f", T0))
    return ledger


class CountingStore:
    """An OutcomeStore over InMemoryLedger that counts its writes."""

    def __init__(self, *plan_ids: str, fail: bool = False) -> None:
        self.ledger = claimed(InMemoryLedger(), *plan_ids)
        self.writes: list[int] = []
        self.fail = fail
        self.lock = threading.Lock()

    def record_outcomes(self, outcomes: Any) -> list[tuple[OutputEvent, ...]]:
        if self.fail:
            raise OSError("disk full")
        with self.lock:
            self.writes.append(len(outcomes))
        return self.ledger.record_outcomes(outcomes)

    def mark_acknowledged(self, plan_ids: Any) -> None:
        self.ledger.mark_acknowledged(plan_ids)


def test_settle_outcomes_records_owned_outcomes_and_passes_the_rest() -> None:
    store = CountingStore("p1")
    owned = decided("p1", 1)
    duplicate = replace(decided("p1", 2), owns_outcome=False, outputs=())

    settled = settle_outcomes(store, [owned, duplicate])

    assert settled == [owned, duplicate]
    assert store.writes == [1]


def test_settle_outcomes_a_second_decision_gets_the_first_outputs_on_record() -> None:
    store = CountingStore("p1")
    first = decided("p1", 1, reason="first decision")
    settle_outcomes(store, [first])

    [second] = settle_outcomes(store, [decided("p1", 1, reason="second decision")])

    assert second.outputs == first.outputs
    assert second.position == first.position


def test_settle_outcomes_without_owned_outcomes_writes_nothing() -> None:
    store = CountingStore()
    skipped = replace(decided("p1"), owns_outcome=False, outputs=())

    assert settle_outcomes(store, [skipped]) == [skipped]
    assert store.writes == []


def test_record_outcomes_without_a_window_writes_once_per_disposition() -> None:
    store = CountingStore("p1", "p2")

    out = (
        reactivex.of(decided("p1", 1), decided("p2", 2))
        .pipe(record_outcomes(store), ops.to_list())
        .run()
    )

    assert [d.plan_id for d in out] == ["p1", "p2"]
    assert store.writes == [1, 1]


def test_record_outcomes_window_groups_what_arrives_within_it() -> None:
    scheduler = TestScheduler()
    store = CountingStore("p1", "p2", "p3")
    source = scheduler.create_hot_observable(
        on_next(210, decided("p1", 1)),
        on_next(215, decided("p2", 2)),
        on_next(240, decided("p3", 3)),
        on_completed(300),
    )

    results = scheduler.start(
        lambda: source.pipe(record_outcomes(store, 10.0, scheduler=scheduler))
    )

    times = [
        (m.time, m.value.value.plan_id if m.value.kind == "N" else "C") for m in results.messages
    ]
    assert times == [(220, "p1"), (220, "p2"), (250, "p3"), (300, "C")]
    assert store.writes == [2, 1]


def test_record_outcomes_full_batch_and_completion_flush_at_once() -> None:
    scheduler = TestScheduler()
    store = CountingStore("p1", "p2", "p3")
    source = scheduler.create_hot_observable(
        on_next(210, decided("p1", 1)),
        on_next(211, decided("p2", 2)),
        on_next(212, decided("p3", 3)),
        on_completed(213),
    )

    results = scheduler.start(
        lambda: source.pipe(record_outcomes(store, 50.0, max_batch=2, scheduler=scheduler))
    )

    times = [
        (m.time, m.value.value.plan_id if m.value.kind == "N" else "C") for m in results.messages
    ]
    assert times == [(211, "p1"), (211, "p2"), (213, "p3"), (213, "C")]
    assert store.writes == [2, 1]


def test_record_outcomes_ledger_failure_errors_the_stream_and_publishes_nothing() -> None:
    store = CountingStore("p1", fail=True)
    seen: list[Disposition] = []

    with pytest.raises(OSError, match="disk full"):
        reactivex.of(decided("p1")).pipe(record_outcomes(store, 0.01)).pipe(
            ops.do_action(seen.append)
        ).run()

    assert seen == []


def test_record_outcomes_concurrent_producers_lose_nothing_and_share_writes() -> None:
    plan_ids = [f"p{i}" for i in range(400)]
    store = CountingStore(*plan_ids)
    inputs = [decided(plan_id, i) for i, plan_id in enumerate(plan_ids)]
    lanes = ThreadPoolScheduler(8)
    source = reactivex.from_iterable(inputs).pipe(
        ops.group_by(lambda d: d.position.offset % 8),
        ops.flat_map(lambda lane: lane.pipe(ops.observe_on(lanes))),
    )

    out = source.pipe(record_outcomes(store, 0.005, scheduler=lanes), ops.to_list()).run()

    assert sorted(d.plan_id or "" for d in out) == sorted(plan_ids)
    assert sum(store.writes) == len(plan_ids)
    assert len(store.writes) < len(plan_ids)


class BlockingStore(CountingStore):
    """Its first write waits until ``release`` is set; ``writing`` says it has started."""

    def __init__(self, *plan_ids: str) -> None:
        super().__init__(*plan_ids)
        self.writing = threading.Event()
        self.release = threading.Event()

    def record_outcomes(self, outcomes: Any) -> list[tuple[OutputEvent, ...]]:
        if not self.writing.is_set():
            self.writing.set()
            assert self.release.wait(10.0)
        return super().record_outcomes(outcomes)


def test_record_outcomes_without_a_window_what_arrives_during_a_write_shares_the_next() -> None:
    """Natural group commit: a lone outcome is written at once, and the outcomes decided
    while that write runs go into the next write together, in arrival order."""
    store = BlockingStore("p1", "p2", "p3", "p4")
    source: reactivex.subject.Subject[Disposition] = reactivex.subject.Subject()
    out: list[str] = []
    done = threading.Event()
    source.pipe(record_outcomes(store, scheduler=ThreadPoolScheduler(2))).subscribe(
        lambda d: out.append(d.plan_id or ""), on_completed=done.set
    )

    source.on_next(decided("p1", 1))
    assert store.writing.wait(10.0)
    for offset, plan_id in enumerate(["p2", "p3", "p4"], start=2):
        source.on_next(decided(plan_id, offset))
    store.release.set()
    source.on_completed()

    assert done.wait(10.0)
    assert out == ["p1", "p2", "p3", "p4"]
    assert store.writes == [1, 3]


def test_record_outcomes_a_duplicate_passes_at_once_when_idle_and_never_overtakes() -> None:
    store = BlockingStore("p1")
    source: reactivex.subject.Subject[Disposition] = reactivex.subject.Subject()
    out: list[tuple[int, str]] = []
    done = threading.Event()
    source.pipe(record_outcomes(store, scheduler=ThreadPoolScheduler(2))).subscribe(
        lambda d: out.append((d.position.offset, d.plan_id or "")), on_completed=done.set
    )

    def duplicate(offset: int) -> Disposition:
        return replace(decided("p1", offset), owns_outcome=False, outputs=())

    source.on_next(duplicate(1))
    assert out == [(1, "p1")]  # written nowhere, emitted in this thread before on_next returned
    source.on_next(decided("p1", 2))
    assert store.writing.wait(10.0)
    source.on_next(duplicate(3))  # the write of offset 2 runs: offset 3 waits behind it
    store.release.set()
    source.on_completed()

    assert done.wait(10.0)
    assert out == [(1, "p1"), (2, "p1"), (3, "p1")]
    assert store.writes == [1]


def test_record_outcomes_on_a_scheduler_that_runs_the_write_at_once() -> None:
    """A scheduler that runs the write inside on_next, in the caller's thread: each outcome
    is written and emitted before on_next returns, in order."""
    store = CountingStore("p1", "p2", "p3")
    out: list[str] = []
    source: reactivex.subject.Subject[Disposition] = reactivex.subject.Subject()
    source.pipe(record_outcomes(store, scheduler=ImmediateScheduler())).subscribe(
        lambda d: out.append(d.plan_id or "")
    )

    for offset, plan_id in enumerate(["p1", "p2", "p3"], start=1):
        source.on_next(decided(plan_id, offset))
        assert out[-1] == plan_id

    assert out == ["p1", "p2", "p3"]
    assert store.writes == [1, 1, 1]
