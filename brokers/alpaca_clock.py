"""Keeping a market clock reading for a while: the clock says when it will next change.

Every plan asks whether the market is open; at Alpaca that is a request per plan against the
key's 200 a minute. A reading stands in for the next ones for at most ``cache_s``, and never
past a minute before the next open or close that it announced.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Final

from rebalance_stream.brokers.protocol import MarketClock

CLOCK_CHANGE_MARGIN: Final = timedelta(minutes=1)


def clock_reuse_s(clock: MarketClock, cache_s: float) -> float:
    """How long ``clock`` may stand in for the next readings (0: not at all)."""
    if clock.next_change is None:
        return 0.0
    until_change = (clock.next_change - clock.timestamp - CLOCK_CHANGE_MARGIN).total_seconds()
    return max(0.0, min(cache_s, until_change))


class ClockCache:
    """The last reading and until when it holds (monotonic time). Thread-safe."""

    def __init__(self, cache_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._cache_s = cache_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._held: tuple[float, MarketClock] | None = None

    def get(self, read: Callable[[], MarketClock]) -> MarketClock:
        """The held reading while it holds, else ``read()`` (kept for next time)."""
        now = self._monotonic()
        with self._lock:
            if self._held is not None and now < self._held[0]:
                return self._held[1]
        clock = read()
        reuse_s = clock_reuse_s(clock, self._cache_s)
        with self._lock:
            self._held = (now + reuse_s, clock) if reuse_s > 0 else None
        return clock
