"""skip_published_inputs: an input whose exact bytes were executed and published is a duplicate,
settled before it is decoded, as dedupe would decide it (SPEC 3.9); every other input goes
through the operators given for the rest."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import reactivex
import structlog
from plan_factory import Trade, planned
from reactivex import Observable
from reactivex import operators as ops
from reactivex.scheduler import ImmediateScheduler
from reactivex.subject import Subject
from reactivex.testing import TestScheduler
from support import T0, FixedClock, record

from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.ledger.protocol import PlanOutcome, PublishedInput
from rebalance_stream.operators.decode import decode
from rebalance_stream.operators.dedupe import dedupe
from rebalance_stream.operators.flow import Disposition, InputRecord, Skipped
from rebalance_stream.operators.output_events import to_output_events
from rebalance_stream.operators.skip_published import (
    log_settled_duplicates,
    published_among,
    skip_published_inputs,
    skipped_envelope,
)
from rebalance_stream.operators.validate import validate

DOCUMENT = planned("p1", [Trade("SPY", "BUY", "1500.00")], event_id="evt-p1")
INPUT = record(DOCUMENT, offset=0)
CLOCK = FixedClock()


class FullPath:
    """The operators for the other inputs: decode, validate, dedupe, to_output_events; it
    counts what it is given."""

    def __init__(self, ledger: InMemoryLedger) -> None:
        self.ledger = ledger
        self.seen: list[int] = []

    def __call__(self, records: Observable[InputRecord]) -> Observable[Disposition]:
        return records.pipe(
            ops.do_action(lambda r: self.seen.append(r.position.offset)),
            decode(),
            validate(),
            dedupe(self.ledger),
            to_output_events(CLOCK),
        )


def through(ledger: Any, full: FullPath, records: list[InputRecord]) -> list[Disposition]:
    op = skip_published_inputs(ledger, CLOCK, full)
    result: list[Disposition] = reactivex.from_iterable(records).pipe(op, ops.to_list()).run()
    return result


def claimed(ledger: InMemoryLedger, *, acknowledged: bool) -> None:
    """The first run: INPUT claimed by dedupe, decided, and (maybe) published."""
    [first] = through(ledger, FullPath(ledger), [INPUT])
    assert first.owns_outcome
    ledger.record_outcomes([PlanOutcome("p1", (), T0)])
    if acknowledged:
        ledger.mark_acknowledged(["p1"])


def test_the_same_bytes_after_publishing_are_settled_undecoded_as_dedupe_decides() -> None:
    ledger = InMemoryLedger()
    claimed(ledger, acknowledged=True)
    again = record(DOCUMENT, offset=7)
    full = FullPath(ledger)

    with structlog.testing.capture_logs() as logs:
        [skipped] = through(ledger, full, [again])
    [by_dedupe] = FullPath(ledger)(reactivex.of(again)).pipe(ops.to_list()).run()

    reason = "plan_id p1 already decided (first event_id evt-p1)"
    assert skipped == Disposition(again, (), T0, Skipped("DUPLICATE_EVENT", reason))
    assert (skipped.skipped, skipped.outputs) == (by_dedupe.skipped, by_dedupe.outputs)
    assert full.seen == []
    ids = ("evt-p1", "corr-p1", "evt-p1", 7)
    fields = ("event", "event_id", "correlation_id", "causation_id", "offset")
    assert [tuple(line[f] for f in fields) for line in logs] == [
        ("plan_duplicate_skipped", *ids),
        ("input_decided", *ids),
    ]


def test_an_input_not_yet_published_takes_the_full_path() -> None:
    """Decided but not acknowledged: dedupe republishes its outputs, so it must get there."""
    ledger = InMemoryLedger()
    claimed(ledger, acknowledged=False)
    full = FullPath(ledger)

    with structlog.testing.capture_logs() as logs:
        [passed] = through(ledger, full, [record(DOCUMENT, offset=3)])

    assert full.seen == [3]
    assert (passed.skipped, passed.plan_id) == (None, "p1")
    assert [line["event"] for line in logs] == ["plan_outputs_republished", "input_decided"]


def test_other_bytes_of_the_same_event_take_the_full_path() -> None:
    """Other bytes may hold other items (a conflict): only dedupe can tell."""
    ledger = InMemoryLedger()
    claimed(ledger, acknowledged=True)
    reformatted = record(json.dumps(DOCUMENT, indent=2).encode(), key=INPUT.key, offset=4)
    full = FullPath(ledger)

    [passed] = through(ledger, full, [reformatted])

    assert full.seen == [4]
    assert passed.skipped == Skipped(
        "DUPLICATE_EVENT", "plan_id p1 already decided (first event_id evt-p1)"
    )


def test_every_input_gets_one_disposition_and_the_stream_completes_after_both_paths() -> None:
    ledger = InMemoryLedger()
    claimed(ledger, acknowledged=True)
    other = planned("p2", [Trade("QQQ", "BUY", "10")], event_id="evt-p2")
    records = [record(DOCUMENT, offset=1), record(b"{not json", offset=2), record(other, offset=3)]
    full = FullPath(ledger)
    subject: Subject[InputRecord] = Subject()
    got: list[Disposition] = []
    completed: list[bool] = []

    subject.pipe(skip_published_inputs(ledger, CLOCK, full)).subscribe(
        got.append, on_completed=lambda: completed.append(True)
    )
    for r in records:
        subject.on_next(r)
    before_completion = list(completed)
    subject.on_completed()

    assert sorted(d.position.offset for d in got) == [1, 2, 3]
    assert full.seen == [2, 3]
    assert (before_completion, completed) == ([], [True])


def test_both_paths_are_subscribed_before_the_source_starts_on_any_scheduler() -> None:
    """A subscriber's scheduler that runs nothing yet (here a TestScheduler never started)
    must not delay subscribing the two paths: the source below emits at once when connected."""
    ledger = InMemoryLedger()
    claimed(ledger, acknowledged=True)
    other = planned("p2", [Trade("QQQ", "BUY", "10")], event_id="evt-p2")
    records = [record(DOCUMENT, offset=1), record(other, offset=2)]
    source = reactivex.from_iterable(records, ImmediateScheduler.singleton())
    got: list[Disposition] = []
    completed: list[bool] = []

    source.pipe(skip_published_inputs(ledger, CLOCK, FullPath(ledger))).subscribe(
        got.append, on_completed=lambda: completed.append(True), scheduler=TestScheduler()
    )

    assert [d.position.offset for d in got] == [1, 2]
    assert completed == [True]


class ExplodingStore:
    def __init__(self) -> None:
        self.asked = 0

    def published_inputs(self, input_digests: Collection[str]) -> dict[str, PublishedInput]:
        self.asked += 1
        raise OSError("ledger unavailable")


def test_a_failed_lookup_leaves_the_input_to_the_full_path() -> None:
    store = ExplodingStore()
    ledger = InMemoryLedger()
    full = FullPath(ledger)

    with structlog.testing.capture_logs() as logs:
        [decided] = through(store, full, [INPUT])

    assert (store.asked, full.seen) == (1, [0])
    assert decided.owns_outcome
    [warning] = [line for line in logs if line["event"] == "published_input_lookup_failed"]
    assert warning["error"] == "OSError('ledger unavailable')"


def test_skipped_envelope_is_a_plain_function() -> None:
    published = PublishedInput("p9", "evt-p9", "corr-p9")

    envelope = skipped_envelope(INPUT, published)

    assert envelope.payload == Skipped(
        "DUPLICATE_EVENT", "plan_id p9 already decided (first event_id evt-p9)"
    )
    assert envelope.log_fields() == {
        "event_id": "evt-p9",
        "correlation_id": "corr-p9",
        "causation_id": "evt-p9",
        "topic": INPUT.position.topic,
        "partition": 0,
        "offset": 0,
    }
    assert (envelope.owns_outcome, envelope.mis_keyed, envelope.event) == (False, False, None)


def test_published_among_reads_the_ledger_once_for_a_batch() -> None:
    ledger = InMemoryLedger()
    claimed(ledger, acknowledged=True)
    other = record(planned("p2", [Trade("QQQ", "BUY", "10")], event_id="evt-p2"), offset=4)
    batch = [record(DOCUMENT, offset=3), other, record(DOCUMENT, offset=5)]
    reads: list[int] = []

    class CountingStore:
        def published_inputs(self, digests: Collection[str]) -> dict[str, PublishedInput]:
            reads.append(len(digests))
            return ledger.published_inputs(digests)

    found = published_among(CountingStore(), batch)

    first = PublishedInput("p1", "evt-p1", "corr-p1")
    assert found == {batch[0].position: first, batch[2].position: first}
    assert reads == [2]  # two distinct byte strings among three records


def test_published_among_a_failed_read_leaves_every_record_to_the_full_path() -> None:
    with structlog.testing.capture_logs() as logs:
        found = published_among(ExplodingStore(), [record(DOCUMENT, offset=9)])

    assert found == {}
    [warning] = logs
    assert (warning["event"], warning["records"], warning["offset"]) == (
        "published_input_lookup_failed",
        1,
        9,
    )


def test_settled_duplicates_are_logged_once_per_partition() -> None:
    records = [
        record(DOCUMENT, offset=3),
        record(DOCUMENT, offset=8),
        record(DOCUMENT, offset=2, partition=1),
    ]

    with structlog.testing.capture_logs() as logs:
        log_settled_duplicates(records)

    summary = [(e["partition"], e["count"], e["first_offset"], e["last_offset"]) for e in logs]
    assert summary == [(0, 2, 3, 8), (1, 1, 2, 2)]
    assert {e["event"] for e in logs} == {"published_inputs_skipped"}
    assert {e["status"] for e in logs} == {"duplicate_event"}
