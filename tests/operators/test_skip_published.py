"""skip_published_inputs: an input whose exact bytes were executed and published is a duplicate,
decided before validation, as dedupe would decide it (SPEC 3.9)."""

from __future__ import annotations

import json
from typing import Any

import reactivex
from plan_factory import Trade, planned
from reactivex import operators as ops
from support import T0, record

from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.ledger.protocol import PlanOutcome
from rebalance_stream.operators.decode import decode_record
from rebalance_stream.operators.dedupe import dedupe
from rebalance_stream.operators.flow import Envelope, Failed, InputRecord, Skipped
from rebalance_stream.operators.skip_published import skip_published_inputs
from rebalance_stream.operators.step import UNEXPECTED_ERROR
from rebalance_stream.operators.validate import validate

DOCUMENT = planned("p1", [Trade("SPY", "BUY", "1500.00")], event_id="evt-p1")
INPUT = record(DOCUMENT, offset=0)


def through(op: Any, records: list[InputRecord]) -> list[Envelope[Any]]:
    envelopes = [decode_record(r) for r in records]
    result: list[Envelope[Any]] = reactivex.from_iterable(envelopes).pipe(op, ops.to_list()).run()
    return result


def claimed(ledger: InMemoryLedger, *, acknowledged: bool) -> None:
    """The first run: INPUT claimed by dedupe, decided, and (maybe) published."""
    [first] = through(reactivex.compose(validate(), dedupe(ledger)), [INPUT])
    assert first.owns_outcome
    ledger.record_outcomes([PlanOutcome("p1", (), T0)])
    if acknowledged:
        ledger.mark_acknowledged(["p1"])


def test_skip_published_inputs_the_same_bytes_after_publishing_are_what_dedupe_decides() -> None:
    ledger = InMemoryLedger()
    claimed(ledger, acknowledged=True)
    again = record(DOCUMENT, offset=7)

    [skipped] = through(skip_published_inputs(ledger), [again])
    [by_dedupe] = through(reactivex.compose(validate(), dedupe(ledger)), [again])

    assert skipped.payload == Skipped(
        "DUPLICATE_EVENT", "plan_id p1 already decided (first event_id evt-p1)"
    )
    assert skipped.payload == by_dedupe.payload
    assert skipped.position.offset == 7
    assert not skipped.owns_outcome


def test_skip_published_inputs_passes_an_input_not_yet_published() -> None:
    """Decided but not acknowledged: dedupe republishes its outputs, so it must get there."""
    ledger = InMemoryLedger()
    claimed(ledger, acknowledged=False)

    [passed] = through(skip_published_inputs(ledger), [INPUT])

    assert passed == decode_record(INPUT)


def test_skip_published_inputs_passes_other_bytes_of_the_same_event() -> None:
    """Other bytes may hold other items (a conflict): only dedupe can tell."""
    ledger = InMemoryLedger()
    claimed(ledger, acknowledged=True)
    reformatted = record(json.dumps(DOCUMENT, indent=2).encode(), key=INPUT.key)

    [passed] = through(skip_published_inputs(ledger), [reformatted])

    assert passed == decode_record(reformatted)


class ExplodingStore:
    def __init__(self) -> None:
        self.asked = 0

    def published_input(self, input_digest: str) -> str | None:
        self.asked += 1
        raise OSError("ledger unavailable")


def test_skip_published_inputs_leaves_settled_envelopes_and_fails_on_a_ledger_error() -> None:
    store = ExplodingStore()
    not_json = record(b"{not json", offset=1)

    failed_decode, failed_lookup = through(skip_published_inputs(store), [not_json, INPUT])

    assert failed_decode == decode_record(not_json)
    assert store.asked == 1
    assert isinstance(failed_lookup.payload, Failed)
    assert failed_lookup.payload.stage is FailureStep.EXECUTION
    assert failed_lookup.payload.reason_code == UNEXPECTED_ERROR
    assert not failed_lookup.payload.dead_letter
