"""reject_stale: a plan older than max_plan_age is never executed (SPEC 3.12).

Plans from plan_factory are stamped 14:30:00Z and support.T0 is 14:30:05Z: a default plan is 5 s
old at T0.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from plan_factory import Trade, planned
from reactivex.testing import ReactiveTest, TestScheduler
from support import T0, FixedClock, record, validated

from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.decode import decode_record
from rebalance_stream.operators.flow import Envelope, Failed, Skipped
from rebalance_stream.operators.staleness import reject_stale, staleness_failure

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed

ITEMS = [Trade("SPY", "BUY", "1500.00")]
ONE_HOUR = timedelta(hours=1)
NINETY_MINUTES_EARLIER = "2026-11-30T13:00:00Z"


def stale(plan_id: str, age_s: int, max_age_s: int) -> Failed:
    return Failed(
        stage=FailureStep.VALIDATION,
        reason_code="PLAN_STALE",
        reason=(
            f"plan {plan_id} is {age_s} s old, older than max_plan_age {max_age_s} s; not executed"
        ),
        error_type="StalePlan",
        step="reject_stale",
        dead_letter=False,
        notify=True,
    )


def run(envelopes: list[Envelope[Any]], max_plan_age: timedelta) -> list[Any]:
    """Each envelope at 210, 220, ...; the recorded messages."""
    scheduler = TestScheduler()
    times = range(210, 210 + 10 * len(envelopes), 10)
    source = scheduler.create_hot_observable(
        *[on_next(t, e) for t, e in zip(times, envelopes, strict=True)],
        on_completed(210 + 10 * len(envelopes)),
    )
    results = scheduler.start(lambda: source.pipe(reject_stale(max_plan_age, FixedClock())))
    return results.messages


def outcome(envelope: Envelope[Any]) -> tuple[str, str]:
    payload = envelope.payload
    if isinstance(payload, Failed | Skipped):
        return (type(payload).__name__, payload.reason_code)
    assert isinstance(payload, RebalancePlanned)
    return ("plan", payload.rebalance_plan.plan_id)


def timeline(messages: list[Any]) -> list[tuple[float, tuple[str, str] | str]]:
    return [
        (m.time, outcome(m.value.value) if m.value.kind == "N" else m.value.kind) for m in messages
    ]


def test_staleness_failure_reports_whole_seconds_of_age_and_limit() -> None:
    event = validated(planned("p1", ITEMS)).payload

    failure = staleness_failure(event, timedelta(seconds=5405.9), ONE_HOUR)

    assert failure == stale("p1", 5405, 3600)


def test_reject_stale_operator_old_plan_fails_and_later_plans_still_arrive() -> None:
    fresh = validated(planned("p1", ITEMS), 1)
    old = validated(planned("p2", ITEMS, timestamp=NINETY_MINUTES_EARLIER), 2)
    later = validated(planned("p3", ITEMS), 3)

    messages = run([fresh, old, later], ONE_HOUR)

    assert timeline(messages) == [
        (210, ("plan", "p1")),
        (220, ("Failed", "PLAN_STALE")),
        (230, ("plan", "p3")),
        (240, "C"),
    ]
    assert messages[0].value.value is fresh
    assert messages[1].value.value == old.failed(stale("p2", 5405, 3600))
    assert messages[2].value.value is later


def test_reject_stale_operator_age_exactly_at_limit_passes() -> None:
    five_seconds_old = validated(planned("p1", ITEMS), 1)

    messages = run([five_seconds_old], timedelta(seconds=5))

    assert timeline(messages) == [(210, ("plan", "p1")), (220, "C")]
    assert messages[0].value.value is five_seconds_old


def test_reject_stale_operator_age_just_over_limit_fails() -> None:
    five_seconds_old = validated(planned("p1", ITEMS), 1)

    messages = run([five_seconds_old], timedelta(seconds=4, milliseconds=999))

    assert timeline(messages) == [(210, ("Failed", "PLAN_STALE")), (220, "C")]
    assert messages[0].value.value.payload == stale("p1", 5, 4)


def test_reject_stale_operator_zero_max_age_disables_the_check() -> None:
    month_old = validated(planned("p1", ITEMS, timestamp="2026-10-30T14:30:00Z"), 1)

    messages = run([month_old], timedelta(0))

    assert timeline(messages) == [(210, ("plan", "p1")), (220, "C")]
    assert messages[0].value.value is month_old


def test_reject_stale_operator_plan_from_the_future_passes() -> None:
    ahead = validated(planned("p1", ITEMS, timestamp="2026-11-30T15:30:00Z"), 1)

    messages = run([ahead], ONE_HOUR)

    assert timeline(messages) == [(210, ("plan", "p1")), (220, "C")]


def test_reject_stale_operator_non_utc_offset_is_compared_in_utc() -> None:
    # 09:30 in New York (-05:00) is 14:30Z: 5 s old, not 5 h.
    same_instant = validated(planned("p1", ITEMS, timestamp="2026-11-30T09:30:00-05:00"), 1)

    messages = run([same_instant], timedelta(seconds=5))

    assert timeline(messages) == [(210, ("plan", "p1")), (220, "C")]


def test_reject_stale_operator_reads_the_clock_for_each_plan() -> None:
    clock = FixedClock()
    scheduler = TestScheduler()
    scheduler.schedule_absolute(215, lambda *_: clock.advance(3600))
    source = scheduler.create_hot_observable(
        on_next(210, validated(planned("p1", ITEMS), 1)),
        on_next(220, validated(planned("p2", ITEMS), 2)),
        on_next(230, validated(planned("p3", ITEMS, timestamp="2026-11-30T15:00:00Z"), 3)),
        on_completed(240),
    )

    results = scheduler.start(lambda: source.pipe(reject_stale(ONE_HOUR, clock)))

    assert clock() == T0 + ONE_HOUR
    assert timeline(results.messages) == [
        (210, ("plan", "p1")),
        (220, ("Failed", "PLAN_STALE")),
        (230, ("plan", "p3")),
        (240, "C"),
    ]
    assert results.messages[1].value.value.payload == stale("p2", 3605, 3600)


def test_reject_stale_operator_settled_inputs_pass_through_untouched() -> None:
    undecodable = decode_record(record(b"not json", 1))
    duplicate = validated(planned("p2", ITEMS, timestamp=NINETY_MINUTES_EARLIER), 2).with_payload(
        Skipped("DUPLICATE_EVENT", "seen")
    )
    old = validated(planned("p3", ITEMS, timestamp=NINETY_MINUTES_EARLIER), 3)

    messages = run([undecodable, duplicate, old], ONE_HOUR)

    assert timeline(messages) == [
        (210, ("Failed", "MALFORMED_JSON")),
        (220, ("Skipped", "DUPLICATE_EVENT")),
        (230, ("Failed", "PLAN_STALE")),
        (240, "C"),
    ]
    assert messages[0].value.value is undecodable
    assert messages[1].value.value is duplicate
