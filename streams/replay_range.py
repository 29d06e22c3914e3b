"""Where a replay starts and ends on each partition (``rebalance-stream replay``).

Start: explicit offsets (``P:O,P:O``, or one offset ``O`` for every partition), or a time (the
first offset whose timestamp is at or after it, from ``offsets_for_times``). End, exclusive:
explicit offsets, a time (the first offset at or after it), or by default the end offsets as
they were when the replay started. Spans are clamped to [log start, end at start], so a replay
always stops by itself. Explicit start offsets name the partitions replayed; a single offset or
a time replays every partition.

    --from-offset 0:5,2:10 --to-offset 0:8   ->   partition 0: [5, 8), partition 2: [10, end)
    --from-time 2026-11-30T14:00:00Z --to-time 2026-11-30T15:00:00Z   ->   [14:00, 15:00)

Parsing and ``resolve_spans`` are pure; ``resolve_on_kafka`` asks the cluster, then resolves;
``RangeReader`` reads the spans with a consumer that has no group.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import KafkaConsumer, TopicPartition  # type: ignore[import-untyped]

from rebalance_stream.streams.kafka_clients import client_config
from rebalance_stream.streams.settings import Settings

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOOKUP_TIMEOUT_MS = 30_000
POLL_TIMEOUT_MS = 200


class ReplayArgumentError(ValueError):
    """A replay flag cannot be used as given (the CLI exits 2)."""


class ReplayStalled(RuntimeError):
    """No partition advanced for the idle timeout (an open transaction, a lost broker)."""


@dataclass(frozen=True, slots=True)
class Offsets:
    """Explicit offsets: one per named partition, or ``every`` partition the same one."""

    per_partition: Mapping[int, int] = field(default_factory=dict)
    every: int | None = None

    def of(self, partition: int) -> int | None:
        return self.every if self.every is not None else self.per_partition.get(partition)


Bound = Offsets | datetime
"""Explicit offsets, or a timezone-aware time."""


@dataclass(frozen=True, slots=True)
class ReplayRange:
    """A start bound and an end bound; ``end`` None is the end offsets at the start."""

    start: Bound
    end: Bound | None = None

    def partitions(self, available: Iterable[int]) -> list[int]:
        """The partitions replayed, sorted; raises when a flag names a missing partition."""
        existing = sorted(available)
        for bound in (self.start, self.end):
            if isinstance(bound, Offsets):
                unknown = sorted(set(bound.per_partition) - set(existing))
                if unknown:
                    raise ReplayArgumentError(f"no partition {unknown} (the topic has {existing})")
        if isinstance(self.start, Offsets) and self.start.every is None:
            return sorted(self.start.per_partition)
        return existing


@dataclass(frozen=True, slots=True)
class PartitionSpan:
    """Offsets ``[start, end)`` of one partition of one topic."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """What the cluster said per partition: log start, end, and the offsets found for the
    range's times (None: no record at or after that time)."""

    beginning: Mapping[int, int]
    end: Mapping[int, int]
    start_by_time: Mapping[int, int | None] = field(default_factory=dict)
    end_by_time: Mapping[int, int | None] = field(default_factory=dict)


def _offset(text: str, flag: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ReplayArgumentError(f"{flag}: {text.strip()!r} is not an offset") from None
    if value < 0:
        raise ReplayArgumentError(f"{flag}: offsets are never negative, got {value}")
    return value


def parse_offsets(text: str, flag: str = "--from-offset") -> Offsets:
    """``"7"`` (every partition) or ``"0:5,2:10"`` (per partition) to Offsets.

    >>> parse_offsets("0:5,2:10").per_partition
    {0: 5, 2: 10}
    """
    if ":" not in text:
        return Offsets(every=_offset(text, flag))
    offsets: dict[int, int] = {}
    for part in text.split(","):
        partition_text, sep, offset_text = part.partition(":")
        if not sep:
            raise ReplayArgumentError(f"{flag}: expected PARTITION:OFFSET, got {part.strip()!r}")
        partition = _offset(partition_text, flag)
        if partition in offsets:
            raise ReplayArgumentError(f"{flag}: partition {partition} is given twice")
        offsets[partition] = _offset(offset_text, flag)
    return Offsets(per_partition=offsets)


def parse_time(text: str, flag: str = "--from-time") -> datetime:
    """ISO-8601 with a timezone (a trailing ``Z`` is accepted) to an aware UTC datetime."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ReplayArgumentError(f"{flag}: {text.strip()!r} is not an ISO-8601 time") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise ReplayArgumentError(f"{flag}: {text.strip()!r} has no timezone (add Z or +00:00)")
    return at.astimezone(UTC)


def to_ms(at: datetime) -> int:
    """Milliseconds since the epoch, exactly (Kafka's timestamps)."""
    return (at - EPOCH) // timedelta(milliseconds=1)


def _bound(offsets: str | None, at: str | None, flags: tuple[str, str]) -> Bound | None:
    if offsets is not None and at is not None:
        raise ReplayArgumentError(f"give {flags[0]} or {flags[1]}, not both")
    if offsets is not None:
        return parse_offsets(offsets, flags[0])
    return parse_time(at, flags[1]) if at is not None else None


def _check_order(start: Bound, end: Bound | None) -> None:
    if isinstance(start, datetime) and isinstance(end, datetime) and end <= start:
        raise ReplayArgumentError("--to-time must be later than --from-time")
    if isinstance(start, Offsets) and isinstance(end, Offsets):
        if start.every is None and set(end.per_partition) - set(start.per_partition):
            extra = sorted(set(end.per_partition) - set(start.per_partition))
            raise ReplayArgumentError(f"--to-offset names partitions {extra} not replayed")
        partitions = set(start.per_partition) | set(end.per_partition) or {0}
        for partition in sorted(partitions):
            first, last = start.of(partition), end.of(partition)
            if first is not None and last is not None and last < first:
                raise ReplayArgumentError(
                    f"partition {partition}: --to-offset {last} is before --from-offset {first}"
                )


def parse_range(
    from_offset: str | None = None,
    from_time: str | None = None,
    to_offset: str | None = None,
    to_time: str | None = None,
) -> ReplayRange:
    """The range the flags describe; exactly one start flag is required."""
    start = _bound(from_offset, from_time, ("--from-offset", "--from-time"))
    if start is None:
        raise ReplayArgumentError("give --from-offset or --from-time (--from-offset 0: all)")
    end = _bound(to_offset, to_time, ("--to-offset", "--to-time"))
    _check_order(start, end)
    return ReplayRange(start, end)


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def _start_of(bound: Bound, partition: int, known: PartitionOffsets) -> int:
    beginning, end = known.beginning[partition], known.end[partition]
    if isinstance(bound, Offsets):
        offset = bound.of(partition)
        return beginning if offset is None else _clamp(offset, beginning, end)
    found = known.start_by_time.get(partition)
    return end if found is None else _clamp(found, beginning, end)


def _end_of(bound: Bound | None, partition: int, start: int, known: PartitionOffsets) -> int:
    end = known.end[partition]
    if bound is None:
        return end
    found = bound.of(partition) if isinstance(bound, Offsets) else known.end_by_time.get(partition)
    return end if found is None else _clamp(found, start, end)


def resolve_spans(
    topic: str, replay_range: ReplayRange, known: PartitionOffsets
) -> list[PartitionSpan]:
    """One span per replayed partition, in partition order; an empty span has size 0.

    known: beginning {0: 0}, end {0: 10}; --from-offset 4 --to-offset 20   ->   [4, 10)
    """
    spans = []
    for partition in replay_range.partitions(known.end):
        start = _start_of(replay_range.start, partition, known)
        end = _end_of(replay_range.end, partition, start, known)
        spans.append(PartitionSpan(topic, partition, start, max(start, end)))
    return spans


def _by_time(consumer: Any, partitions: list[Any], at: datetime) -> dict[int, int | None]:
    found = consumer.offsets_for_times(
        {tp: to_ms(at) for tp in partitions}, timeout_ms=LOOKUP_TIMEOUT_MS
    )
    return {tp.partition: (hit.offset if hit is not None else None) for tp, hit in found.items()}


def resolve_on_kafka(consumer: Any, topic: str, replay_range: ReplayRange) -> list[PartitionSpan]:
    """Ask the cluster for the topic's partitions, log starts, ends and times; resolve.

    With ``isolation_level=read_committed`` the ends are the last stable offsets.
    """
    available = consumer.partitions_for_topic(topic)
    if not available:
        raise ReplayArgumentError(f"topic {topic!r} does not exist")
    partitions = [TopicPartition(topic, p) for p in replay_range.partitions(available)]
    beginning = consumer.beginning_offsets(partitions, timeout_ms=LOOKUP_TIMEOUT_MS)
    end = consumer.end_offsets(partitions, timeout_ms=LOOKUP_TIMEOUT_MS)
    start_bound, end_bound = replay_range.start, replay_range.end
    known = PartitionOffsets(
        beginning={tp.partition: offset for tp, offset in beginning.items()},
        end={tp.partition: offset for tp, offset in end.items()},
        start_by_time=(
            _by_time(consumer, partitions, start_bound) if isinstance(start_bound, datetime) else {}
        ),
        end_by_time=(
            _by_time(consumer, partitions, end_bound) if isinstance(end_bound, datetime) else {}
        ),
    )
    return resolve_spans(topic, replay_range, known)


def make_replay_consumer(settings: Settings) -> Any:
    """No group (it can neither join nor commit), no auto-commit, read_committed."""
    return KafkaConsumer(
        **client_config(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )


class RangeReader:
    """Reads spans with a group-less consumer; stops when every partition reaches its end."""

    def __init__(self, consumer: Any, idle_timeout_s: float) -> None:
        self.consumer = consumer
        self._idle_timeout_s = idle_timeout_s
        self.earliest_ms: int | None = None
        """The smallest record timestamp read so far."""

    def read(self, spans: Sequence[PartitionSpan]) -> Iterator[Any]:
        """Every record of ``spans`` below its span's end, in offset order within each
        partition; returns when every partition is at its end. Raises ReplayStalled when no
        partition advances for the idle timeout."""
        ends = {TopicPartition(s.topic, s.partition): s.end for s in spans if s.size}
        if not ends:
            return
        self.consumer.assign(list(ends))
        for span in spans:
            if span.size:
                self.consumer.seek(TopicPartition(span.topic, span.partition), span.start)
        last_progress = time.monotonic()
        while ends:
            batch = self.consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
            for partition, records in batch.items():
                end = ends.get(partition, -1)
                for record in records:
                    if record.offset < end:
                        self._note(record.timestamp)
                        yield record
            done = self._finished(ends)
            if batch or done:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > self._idle_timeout_s:
                raise ReplayStalled(f"no progress for {self._idle_timeout_s} s on {sorted(ends)}")

    def _note(self, timestamp_ms: int) -> None:
        if timestamp_ms >= 0 and (self.earliest_ms is None or timestamp_ms < self.earliest_ms):
            self.earliest_ms = timestamp_ms

    def _finished(self, ends: dict[Any, int]) -> list[Any]:
        """Pause and forget the partitions whose position reached their end; return them."""
        done = [tp for tp, end in ends.items() if self.consumer.position(tp) >= end]
        for partition in done:
            self.consumer.pause(partition)
            del ends[partition]
        return done
