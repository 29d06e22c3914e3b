"""A market clock reading is kept for a while, never past a minute before the next change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rebalance_stream.brokers.alpaca_clock import ClockCache, clock_reuse_s
from rebalance_stream.brokers.protocol import MarketClock

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)


def clock(minutes_to_change: float | None, is_open: bool = True) -> MarketClock:
    change = None if minutes_to_change is None else NOW + timedelta(minutes=minutes_to_change)
    return MarketClock(is_open, NOW, change)


@pytest.mark.parametrize(
    ("minutes_to_change", "cache_s", "expected"),
    [
        (60, 30.0, 30.0),  # far from the close: the cache's own limit
        (1.25, 30.0, 15.0),  # 75 s to the close: until a minute before it
        (0.5, 30.0, 0.0),  # inside the last minute: read every time
        (60, 0.0, 0.0),  # caching off
        (None, 30.0, 0.0),  # the venue did not say when it changes
    ],
)
def test_clock_reuse_stops_a_minute_before_the_next_change(
    minutes_to_change: float | None, cache_s: float, expected: float
) -> None:
    assert clock_reuse_s(clock(minutes_to_change), cache_s) == expected


class Reads:
    def __init__(self, *clocks: MarketClock) -> None:
        self.clocks = list(clocks)
        self.count = 0

    def __call__(self) -> MarketClock:
        self.count += 1
        return self.clocks.pop(0)


def test_clock_cache_reads_again_once_the_reading_expires() -> None:
    now = [100.0]
    cache = ClockCache(30.0, monotonic=lambda: now[0])
    reads = Reads(clock(60), clock(60, is_open=False))

    first = cache.get(reads)
    now[0] += 29.9
    again = cache.get(reads)
    now[0] += 0.2
    later = cache.get(reads)

    assert (first, again) == (clock(60), clock(60))
    assert later == clock(60, is_open=False)
    assert reads.count == 2


def test_clock_cache_keeps_nothing_it_may_not_reuse() -> None:
    cache = ClockCache(30.0, monotonic=lambda: 0.0)
    reads = Reads(clock(0.5), clock(0.5))

    cache.get(reads)
    cache.get(reads)

    assert reads.count == 2
