"""The replay range: parsing the flags, resolving spans, and reading a range until its end."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pytest
from kafka import TopicPartition  # type: ignore[import-untyped]

from rebalance_stream.streams.replay import ReplayOptions
from rebalance_stream.streams.replay_range import (
    Offsets,
    PartitionOffsets,
    PartitionSpan,
    RangeReader,
    ReplayArgumentError,
    ReplayRange,
    ReplayStalled,
    parse_offsets,
    parse_range,
    parse_time,
    resolve_spans,
    to_ms,
)

TOPIC = "rebalance.planned"
T0 = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
KNOWN = PartitionOffsets(beginning={0: 0, 1: 3, 2: 0}, end={0: 10, 1: 8, 2: 0})


def test_parse_offsets_single_offset_applies_to_every_partition() -> None:
    offsets = parse_offsets("7")

    assert offsets == Offsets(every=7)
    assert (offsets.of(0), offsets.of(5)) == (7, 7)


def test_parse_offsets_per_partition_names_only_those_partitions() -> None:
    offsets = parse_offsets("0:5, 2:10")

    assert offsets.per_partition == {0: 5, 2: 10}
    assert (offsets.of(0), offsets.of(1), offsets.of(2)) == (5, None, 10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x", "not an offset"),
        ("-1", "never negative"),
        ("0:5,1", "PARTITION:OFFSET"),
        ("0:5,0:6", "given twice"),
        ("0:-3", "never negative"),
        ("a:1", "not an offset"),
    ],
)
def test_parse_offsets_malformed_text_is_a_bad_argument(text: str, message: str) -> None:
    with pytest.raises(ReplayArgumentError, match=message):
        parse_offsets(text)


def test_parse_time_z_and_offsets_become_utc() -> None:
    assert parse_time("2026-11-30T14:00:00Z") == T0
    assert parse_time("2026-11-30T15:00:00+01:00") == T0


@pytest.mark.parametrize(
    ("text", "message"),
    [("2026-11-30T14:00:00", "no timezone"), ("yesterday", "not an ISO-8601 time")],
)
def test_parse_time_naive_or_unreadable_is_a_bad_argument(text: str, message: str) -> None:
    with pytest.raises(ReplayArgumentError, match=message):
        parse_time(text)


def test_to_ms_is_exact_milliseconds_since_the_epoch() -> None:
    assert to_ms(datetime(1970, 1, 1, 0, 0, 1, 999_999, tzinfo=UTC)) == 1999
    assert to_ms(T0) == 1_796_047_200_000


def test_parse_range_defaults_the_end_to_the_end_at_start() -> None:
    replay_range = parse_range(from_time="2026-11-30T14:00:00Z")

    assert replay_range == ReplayRange(start=T0, end=None)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({}, "give --from-offset or --from-time"),
        ({"from_offset": "0", "from_time": "2026-11-30T14:00:00Z"}, "not both"),
        ({"from_offset": "0", "to_offset": "1", "to_time": "2026-11-30T14:00:00Z"}, "not both"),
        ({"from_offset": "0:5", "to_offset": "0:4"}, "before --from-offset 5"),
        ({"from_offset": "9", "to_offset": "3"}, "before --from-offset 9"),
        ({"from_offset": "0:5", "to_offset": "1:9"}, r"partitions \[1\] not replayed"),
        (
            {"from_time": "2026-11-30T14:00:00Z", "to_time": "2026-11-30T13:00:00Z"},
            "later than --from-time",
        ),
    ],
)
def test_parse_range_inconsistent_flags_are_a_bad_argument(
    flags: dict[str, str], message: str
) -> None:
    with pytest.raises(ReplayArgumentError, match=message):
        parse_range(**flags)


def test_resolve_spans_explicit_offsets_replay_only_the_named_partitions() -> None:
    replay_range = parse_range(from_offset="0:4,1:5", to_offset="0:6")

    spans = resolve_spans(TOPIC, replay_range, KNOWN)

    assert spans == [PartitionSpan(TOPIC, 0, 4, 6), PartitionSpan(TOPIC, 1, 5, 8)]


def test_resolve_spans_offsets_are_clamped_to_log_start_and_end_at_start() -> None:
    replay_range = parse_range(from_offset="0", to_offset="20")

    spans = resolve_spans(TOPIC, replay_range, KNOWN)

    assert [(s.partition, s.start, s.end, s.size) for s in spans] == [
        (0, 0, 10, 10),
        (1, 3, 8, 5),
        (2, 0, 0, 0),
    ]


def test_resolve_spans_times_use_the_offsets_found_and_none_means_nothing_after() -> None:
    replay_range = parse_range(from_time="2026-11-30T14:00:00Z", to_time="2026-11-30T15:00:00Z")
    known = PartitionOffsets(
        beginning=KNOWN.beginning,
        end=KNOWN.end,
        start_by_time={0: 2, 1: None, 2: None},
        end_by_time={0: 7, 1: None, 2: None},
    )

    spans = resolve_spans(TOPIC, replay_range, known)

    assert [(s.partition, s.start, s.end) for s in spans] == [(0, 2, 7), (1, 8, 8), (2, 0, 0)]


def test_resolve_spans_end_time_before_an_explicit_start_gives_an_empty_span() -> None:
    replay_range = ReplayRange(start=Offsets(every=6), end=T0)
    known = PartitionOffsets(beginning={0: 0}, end={0: 10}, end_by_time={0: 3})

    assert resolve_spans(TOPIC, replay_range, known) == [PartitionSpan(TOPIC, 0, 6, 6)]


def test_resolve_spans_missing_partition_is_a_bad_argument() -> None:
    replay_range = parse_range(from_offset="0:1,7:1")

    with pytest.raises(ReplayArgumentError, match=r"no partition \[7\]"):
        resolve_spans(TOPIC, replay_range, KNOWN)


def test_replay_options_two_modes_at_once_are_a_bad_argument() -> None:
    options = ReplayOptions(from_offset="0", audit=True, republish=True)

    with pytest.raises(ReplayArgumentError, match="give one of"):
        options.checked_range()


def test_replay_options_default_mode_is_the_dry_run() -> None:
    assert ReplayOptions(from_offset="0").mode() == "dry-run"
    assert ReplayOptions(from_offset="0", audit=True).mode() == "audit"


class _Record(NamedTuple):
    offset: int
    timestamp: int


class _FakeConsumer:
    """Serves scripted poll batches; the position follows the last record served."""

    def __init__(self, batches: list[dict[Any, list[_Record]]]) -> None:
        self._batches: Iterator[dict[Any, list[_Record]]] = iter(batches)
        self.positions: dict[Any, int] = {}
        self.paused: list[Any] = []

    def assign(self, partitions: list[Any]) -> None:
        self.assigned = partitions

    def seek(self, partition: Any, offset: int) -> None:
        self.positions[partition] = offset

    def poll(self, timeout_ms: int) -> dict[Any, list[_Record]]:
        batch = next(self._batches, {})
        for partition, records in batch.items():
            self.positions[partition] = records[-1].offset + 1
        return batch

    def position(self, partition: Any) -> int:
        return self.positions[partition]

    def pause(self, partition: Any) -> None:
        self.paused.append(partition)


def test_range_reader_stops_at_each_end_and_drops_records_past_it() -> None:
    p0, p1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    consumer = _FakeConsumer(
        [
            {p0: [_Record(2, 500), _Record(3, 400)]},
            {p0: [_Record(4, 900), _Record(5, 900)], p1: [_Record(0, 300)]},
        ]
    )
    spans = [
        PartitionSpan(TOPIC, 0, 2, 5),
        PartitionSpan(TOPIC, 1, 0, 1),
        PartitionSpan(TOPIC, 2, 4, 4),
    ]
    reader = RangeReader(consumer, idle_timeout_s=5)

    read = [(r.offset, r.timestamp) for r in reader.read(spans)]

    assert read == [(2, 500), (3, 400), (4, 900), (0, 300)]
    assert consumer.assigned == [p0, p1]
    assert consumer.paused == [p0, p1]
    assert reader.earliest_ms == 300


def test_range_reader_without_progress_raises_stalled() -> None:
    consumer = _FakeConsumer([])
    reader = RangeReader(consumer, idle_timeout_s=0.01)

    with pytest.raises(ReplayStalled, match="no progress"):
        list(reader.read([PartitionSpan(TOPIC, 0, 0, 3)]))
