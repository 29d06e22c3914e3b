"""serialize_by_account: one account's plans one at a time and in order; accounts in parallel."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import reactivex
from plan_factory import Trade, planned
from reactivex import operators as ops
from reactivex.scheduler import ThreadPoolScheduler
from support import record

from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.flow import (
    DecodedDocument,
    Envelope,
    EventIdentity,
    Failed,
    Skipped,
)
from rebalance_stream.operators.per_account import (
    NO_ACCOUNT_LANE,
    SETTLED_LANE,
    account_lane,
    serialize_by_account,
)

TRADES = [Trade("VTI", "BUY", "1000.00")]


def plan_envelope(offset: int, account_id: str) -> Envelope[Any]:
    document = planned(f"plan-{offset}", TRADES, account_id=account_id)
    event = RebalancePlanned.model_validate(document)
    identity = EventIdentity(event.event_id, event.correlation_id, "RebalancePlanned", "1.0")
    return Envelope(record(document, offset), event, identity, event)


def settled_envelope(offset: int, payload: Failed | Skipped) -> Envelope[Any]:
    document = planned(f"plan-{offset}", TRADES, account_id="acct-a")
    return Envelope(record(document, offset), payload)


class Recorder:
    """An inner operator that logs when each envelope starts and ends, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, str, int]] = []

    def _log(self, kind: str, envelope: Envelope[Any]) -> None:
        with self._lock:
            self.events.append((kind, account_lane(envelope), envelope.position.offset))

    def run(self, envelope: Envelope[Any]) -> Envelope[Any]:
        self._log("start", envelope)
        time.sleep(0.05)
        self._log("end", envelope)
        return envelope

    def lane_events(self, lane: str) -> list[tuple[str, int]]:
        return [(kind, offset) for kind, seen, offset in self.events if seen == lane]

    def most_lanes_running_at_once(self) -> int:
        running: set[str] = set()
        most = 0
        for kind, lane, _ in self.events:
            if kind == "start":
                running.add(lane)
            else:
                running.discard(lane)
            most = max(most, len(running))
        return most


def run_serialized(envelopes: list[Envelope[Any]], recorder: Recorder) -> list[Envelope[Any]]:
    scheduler = ThreadPoolScheduler(4)
    op = serialize_by_account(ops.map(recorder.run), scheduler)
    result: list[Envelope[Any]] = reactivex.from_iterable(envelopes).pipe(op, ops.to_list()).run()
    scheduler.executor.shutdown()
    return result


def interleaved_plans() -> list[Envelope[Any]]:
    accounts = ["acct-a", "acct-b"] * 3
    return [plan_envelope(offset, account) for offset, account in enumerate(accounts)]


def test_serialize_by_account_one_account_runs_one_plan_at_a_time_in_arrival_order() -> None:
    recorder = Recorder()
    plans = [plan_envelope(offset, "acct-a") for offset in range(4)]

    run_serialized(plans, recorder)

    assert recorder.lane_events("account:acct-a") == [
        ("start", 0),
        ("end", 0),
        ("start", 1),
        ("end", 1),
        ("start", 2),
        ("end", 2),
        ("start", 3),
        ("end", 3),
    ]


def test_serialize_by_account_two_accounts_each_in_order_and_overlapping() -> None:
    recorder = Recorder()

    run_serialized(interleaved_plans(), recorder)

    assert recorder.lane_events("account:acct-a") == [
        ("start", 0),
        ("end", 0),
        ("start", 2),
        ("end", 2),
        ("start", 4),
        ("end", 4),
    ]
    assert recorder.lane_events("account:acct-b") == [
        ("start", 1),
        ("end", 1),
        ("start", 3),
        ("end", 3),
        ("start", 5),
        ("end", 5),
    ]
    assert recorder.most_lanes_running_at_once() == 2


def test_serialize_by_account_settled_envelopes_pass_through_unchanged_without_inner() -> None:
    recorder = Recorder()
    failed = settled_envelope(
        10, Failed(FailureStep.DECODE, "MALFORMED_JSON", "not JSON", "DecodeError", "decode")
    )
    skipped = settled_envelope(11, Skipped("DUPLICATE_EVENT", "seen before"))
    plans = interleaved_plans()

    result = run_serialized([plans[0], failed, plans[1], skipped], recorder)

    assert sorted(result, key=lambda e: e.position.offset) == [plans[0], plans[1], failed, skipped]
    assert [e for e in result if e.is_settled] == [failed, skipped]
    assert recorder.lane_events(SETTLED_LANE) == []
    assert len(recorder.events) == 2 * len(plans[:2])


def test_serialize_by_account_every_input_comes_out_exactly_once() -> None:
    recorder = Recorder()
    undecoded = Envelope(record(b"{}", 20), DecodedDocument({}))
    skipped = settled_envelope(21, Skipped("DUPLICATE_EVENT", "seen before"))
    inputs = [*interleaved_plans(), undecoded, skipped, plan_envelope(22, "acct-c")]

    result = run_serialized(inputs, recorder)

    assert Counter(e.position.offset for e in result) == Counter(e.position.offset for e in inputs)
    assert sorted(result, key=lambda e: e.position.offset) == inputs
    assert len(recorder.events) == 2 * (len(inputs) - 1)  # all but the settled one ran inner
    assert recorder.lane_events(NO_ACCOUNT_LANE) == [("start", 20), ("end", 20)]


def test_account_lane_settled_undecided_without_event_and_plan_lanes() -> None:
    undecoded = Envelope(record(b"{}", 0), DecodedDocument({}))
    skipped = settled_envelope(2, Skipped("DUPLICATE_EVENT", "seen before"))

    assert account_lane(undecoded) == NO_ACCOUNT_LANE
    assert account_lane(skipped) == SETTLED_LANE
    assert account_lane(plan_envelope(1, "acct-a")) == "account:acct-a"


def test_serialize_by_account_settled_envelopes_stay_on_the_callers_thread() -> None:
    """Nothing is left to block on for a settled envelope: no hop to the scheduler's threads."""
    threads: dict[int, int] = {}

    def note_thread(envelope: Envelope[Any]) -> None:
        threads[envelope.position.offset] = threading.get_ident()

    skipped = settled_envelope(11, Skipped("DUPLICATE_EVENT", "seen before"))
    scheduler = ThreadPoolScheduler(2)
    op = serialize_by_account(ops.do_action(note_thread), scheduler)
    done = threading.Event()
    reactivex.from_iterable([plan_envelope(0, "acct-a"), skipped]).pipe(
        op, ops.do_action(note_thread)
    ).subscribe(on_completed=done.set)
    assert done.wait(10.0)
    scheduler.executor.shutdown()

    assert threads[11] == threading.get_ident()
    assert threads[0] != threading.get_ident()
