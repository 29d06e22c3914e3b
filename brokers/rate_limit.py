"""A token bucket for a venue's request budget, which also obeys the venue's rate-limit headers.

Alpaca allows 200 requests per minute per key id, and says how many remain:

    X-Ratelimit-Remaining: 0    X-Ratelimit-Reset: 1735831860   (unix seconds)
    -> every caller of the bucket waits until 1735831860 before its next request

Clock and sleep are injected, so tests run on a fake clock without real waits.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping

DEFAULT_RATE_PER_MINUTE = 200
REMAINING_HEADER = "x-ratelimit-remaining"
RESET_HEADER = "x-ratelimit-reset"

# A reset below this is read as seconds from now rather than a unix time (2001-09-09).
_EPOCH_FLOOR_S = 1_000_000_000
_S_PER_MINUTE = 60.0
# Waits this short count as done: after sleeping a computed wait, float rounding can leave
# a sliver that a clock near 1.7e9 s cannot even advance by.
_SLACK_S = 1e-6


class TokenBucket:
    """Blocks each request until a token is free. Thread-safe.

    Refills ``rate_per_minute / 60`` tokens a second up to ``burst`` (default: a minute's
    worth), kept as the time the next token is due (GCRA), so float rounding cannot stall it.
    After a response that says no request remains, every ``acquire`` waits until the venue's
    reset time, at most ``max_header_wait_s``.
    """

    def __init__(
        self,
        rate_per_minute: float = DEFAULT_RATE_PER_MINUTE,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_header_wait_s: float = 60.0,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        capacity = rate_per_minute if burst is None else burst
        if capacity < 1:
            raise ValueError("burst must be at least 1")
        self.rate_per_s = rate_per_minute / _S_PER_MINUTE
        self.capacity = float(capacity)
        self._interval_s = 1 / self.rate_per_s
        self._tolerance_s = (self.capacity - 1) * self._interval_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._max_header_wait_s = max_header_wait_s
        self._lock = threading.Lock()
        now = clock()
        self._due = now  # when the next token is due at the steady rate
        self._blocked_until = now

    def acquire(self) -> float:
        """Take one token, sleeping until one is free; returns the seconds slept."""
        slept = 0.0
        while True:
            wait_s = self._try_take()
            if wait_s <= 0:
                return slept
            self._sleep(wait_s)
            slept += wait_s

    def observe(self, headers: Mapping[str, str]) -> None:
        """Align with the venue's count: never more tokens than it says remain."""
        lowered = {key.lower(): value for key, value in headers.items()}
        remaining = _number(lowered.get(REMAINING_HEADER))
        if remaining is None:
            return
        with self._lock:
            now = self._clock()
            earliest_due = now + self._tolerance_s - (max(remaining, 0.0) - 1) * self._interval_s
            self._due = max(self._due, earliest_due)
            if remaining > 0:
                return
            reset = _number(lowered.get(RESET_HEADER))
            if reset is not None:
                self._blocked_until = max(self._blocked_until, now + self._seconds_until(reset))

    def _try_take(self) -> float:
        """Take a token and return 0, or return how long to wait for one."""
        with self._lock:
            now = self._clock()
            if self._blocked_until - now > _SLACK_S:
                return self._blocked_until - now
            due = max(self._due, now)
            wait_s = due - self._tolerance_s - now
            if wait_s > _SLACK_S:
                return wait_s
            self._due = due + self._interval_s
            return 0.0

    def _seconds_until(self, reset: float) -> float:
        wait_s = reset if reset < _EPOCH_FLOOR_S else reset - self._wall_clock()
        return min(max(wait_s, 0.0), self._max_header_wait_s)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


_SHARED: dict[str, TokenBucket] = {}
_SHARED_LOCK = threading.Lock()


def shared_bucket(key_id: str, rate_per_minute: float, burst: float | None = None) -> TokenBucket:
    """The one bucket of every client that uses ``key_id``; the first caller sets its rate."""
    with _SHARED_LOCK:
        bucket = _SHARED.get(key_id)
        if bucket is None:
            bucket = TokenBucket(rate_per_minute, burst=burst)
            _SHARED[key_id] = bucket
        return bucket
