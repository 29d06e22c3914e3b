"""The commit position never passes an offset that is not acknowledged."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rebalance_stream.streams.offsets import OffsetTracker


def test_offsets_gap_in_acknowledgements_holds_the_commit_back() -> None:
    tracker: OffsetTracker[int] = OffsetTracker()
    for offset in (4, 5, 7, 8):
        tracker.receive(0, offset)

    for offset in (4, 7, 8):
        tracker.acknowledge(0, offset)
    first = tracker.committable()
    tracker.acknowledge(0, 5)
    second = tracker.committable()

    assert first == {0: 5}
    assert second == {0: 9}
    assert tracker.committable() == {}
    assert tracker.in_flight() == 0


def test_offsets_partitions_commit_independently() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.receive("a", 0)
    tracker.receive("b", 10)
    tracker.receive("b", 11)

    tracker.acknowledge("b", 11)
    tracker.acknowledge("a", 0)

    assert tracker.committable() == {"a": 1}
    assert tracker.in_flight("b") == 2


def test_offsets_forgotten_partition_ignores_late_acknowledgements() -> None:
    tracker: OffsetTracker[int] = OffsetTracker()
    tracker.receive(0, 1)
    tracker.forget([0])

    tracker.acknowledge(0, 1)

    assert tracker.committable() == {}
    assert tracker.in_flight() == 0


def test_offsets_offset_received_out_of_order_is_rejected() -> None:
    tracker: OffsetTracker[int] = OffsetTracker()
    tracker.receive(0, 5)

    with pytest.raises(ValueError, match="received after"):
        tracker.receive(0, 5)


@st.composite
def received_and_ack_order(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    gaps = draw(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=40))
    offsets = []
    current = draw(st.integers(min_value=0, max_value=1000))
    for gap in gaps:
        offsets.append(current)
        current += gap
    acked = draw(st.permutations(offsets))
    cut = draw(st.integers(min_value=0, max_value=len(acked)))
    return offsets, list(acked[:cut])


@given(received_and_ack_order())
def test_offsets_any_ack_order_never_commits_past_an_unacknowledged_offset(
    case: tuple[list[int], list[int]],
) -> None:
    offsets, acks = case
    tracker: OffsetTracker[int] = OffsetTracker()
    for offset in offsets:
        tracker.receive(0, offset)
    committed = None
    done: set[int] = set()

    for offset in acks:
        tracker.acknowledge(0, offset)
        done.add(offset)
        committed = tracker.committable().get(0, committed)
        if committed is not None:
            assert all(o in done for o in offsets if o < committed)

    leading_run = []
    for offset in offsets:
        if offset not in done:
            break
        leading_run.append(offset)
    assert committed == (leading_run[-1] + 1 if leading_run else None)


def test_offsets_unacknowledged_counts_only_what_is_not_done_yet() -> None:
    tracker: OffsetTracker[int] = OffsetTracker()
    for offset in (4, 5, 7, 8):
        tracker.receive(0, offset)
    tracker.receive(1, 0)

    tracker.acknowledge(0, 7)
    tracker.acknowledge(0, 8)
    tracker.committable()

    assert (tracker.in_flight(), tracker.unacknowledged()) == (5, 3)
