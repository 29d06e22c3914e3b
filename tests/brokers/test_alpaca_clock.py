"""A market clock reading is kept for a while, never past a minute before the next change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cachetools import cached

from rebalance_stream.brokers.alpaca_clock import ClockCache, clock_cache, clock_reuse_s
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
    """A reader of the clock through ``cache``, as the broker reads it (cachetools)."""

    def __init__(self, cache: ClockCache, *clocks: MarketClock) -> None:
        self.clocks = list(clocks)
        self.count = 0
        self.read = cached(cache, key=lambda: "clock")(self._read)

    def _read(self) -> MarketClock:
        self.count += 1
        return self.clocks.pop(0)


def test_clock_cache_reads_again_once_the_reading_expires() -> None:
    now = [100.0]
    reads = Reads(clock_cache(30.0, timer=lambda: now[0]), clock(60), clock(60, is_open=False))

    first = reads.read()
    now[0] += 29.9
    again = reads.read()
    now[0] += 0.2
    later = reads.read()

    assert (first, again) == (clock(60), clock(60))
    assert later == clock(60, is_open=False)
    assert reads.count == 2


def test_clock_cache_keeps_nothing_it_may_not_reuse() -> None:
    reads = Reads(clock_cache(30.0, timer=lambda: 0.0), clock(0.5), clock(0.5))

    reads.read()
    reads.read()

    assert reads.count == 2
