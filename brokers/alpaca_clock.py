"""Keeping a market clock reading for a while: the clock says when it will next change.

Every plan asks whether the market is open; at Alpaca that is a request per plan against the
key's 200 a minute. A reading stands in for the next ones for at most ``cache_s``, and never
past a minute before the next open or close that it announced. The cache is cachetools'
``TLRUCache``, whose entries each expire when their reading says.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Final

from cachetools import TLRUCache

from rebalance_stream.brokers.protocol import MarketClock

CLOCK_CHANGE_MARGIN: Final = timedelta(minutes=1)
ClockCache = TLRUCache[object, MarketClock]


def clock_reuse_s(clock: MarketClock, cache_s: float) -> float:
    """How long ``clock`` may stand in for the next readings (0: not at all)."""
    if clock.next_change is None:
        return 0.0
    until_change = (clock.next_change - clock.timestamp - CLOCK_CHANGE_MARGIN).total_seconds()
    return max(0.0, min(cache_s, until_change))


def clock_cache(cache_s: float, timer: Callable[[], float] = time.monotonic) -> ClockCache:
    """A cache for one key, the clock: each reading is kept for ``clock_reuse_s`` of it."""

    def held_until(_key: object, clock: MarketClock, now: float) -> float:
        return now + clock_reuse_s(clock, cache_s)

    return TLRUCache(maxsize=1, ttu=held_until, timer=timer)
