"""Fault injection for the fake Alpaca server, and its per-key rate limit counter.

A ``Fault`` applies to the next ``count`` requests whose method and path match it. The path
pattern is an fnmatch pattern on the request path (``*`` also matches ``/``), or a route
template such as ``/v2/orders/{order_id}``. A request takes at most one latency fault and at
most one other fault:

    latency                  -> sleep latency_ms, then answer normally
    http_429                 -> 429 before processing, X-Ratelimit-Remaining: 0
    http_500                 -> 500 before processing; nothing happened
    http_504_after_accept    -> processed (an order is placed), then a 504 gateway page
    disconnect               -> the socket is closed before processing; nothing happened
    disconnect_after_accept  -> processed, then the socket is closed without a response
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from fnmatch import fnmatchcase

_WINDOW_S = 60


class FaultKind(StrEnum):
    LATENCY = "latency"
    HTTP_429 = "http_429"
    HTTP_500 = "http_500"
    HTTP_504_AFTER_ACCEPT = "http_504_after_accept"
    DISCONNECT = "disconnect"
    DISCONNECT_AFTER_ACCEPT = "disconnect_after_accept"


BEFORE_PROCESSING = frozenset({FaultKind.HTTP_429, FaultKind.HTTP_500, FaultKind.DISCONNECT})
AFTER_PROCESSING = frozenset({FaultKind.HTTP_504_AFTER_ACCEPT, FaultKind.DISCONNECT_AFTER_ACCEPT})


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted fault for the next ``count`` matching requests.

    ``latency_ms`` is the latency fault's sleep; ``reset_in_s`` sets a 429's
    X-Ratelimit-Reset to now plus that many seconds.
    """

    kind: FaultKind
    method: str = "*"
    path: str = "*"
    count: int = 1
    latency_ms: int = 0
    reset_in_s: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or self.latency_ms < 0 or self.reset_in_s < 0:
            raise ValueError("count must be >= 1, latency_ms and reset_in_s >= 0")

    def matches(self, method: str, path: str, template: str) -> bool:
        if self.method not in ("*", method.upper()):
            return False
        return self.path == template or fnmatchcase(path, self.path)

    @classmethod
    def from_json(cls, document: Mapping[str, object]) -> Fault:
        """A fault from ``{"kind", "method", "path", "count", "latency_ms", "reset_in_s"}``.

        Raises ValueError for an unknown kind, field or a bad value.
        """
        unknown = set(document) - {"kind", "method", "path", "count", "latency_ms", "reset_in_s"}
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(
            kind=FaultKind(str(document.get("kind"))),
            method=str(document.get("method", "*")).upper(),
            path=str(document.get("path", "*")),
            count=_int(document, "count", 1),
            latency_ms=_int(document, "latency_ms", 0),
            reset_in_s=_int(document, "reset_in_s", 1),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "method": self.method,
            "path": self.path,
            "count": self.count,
            "latency_ms": self.latency_ms,
            "reset_in_s": self.reset_in_s,
        }


def _int(document: Mapping[str, object], key: str, default: int) -> int:
    value = document.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer")
    return value


@dataclass(frozen=True, slots=True)
class Taken:
    """The faults one request drew: a latency to sleep, and at most one other fault."""

    latency_ms: int = 0
    fault: Fault | None = None


class FaultPlan:
    """Armed faults, consumed in the order they were armed. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[Fault] = []

    def arm(self, fault: Fault) -> None:
        with self._lock:
            self._armed.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def pending(self) -> list[Fault]:
        """The armed faults, each with the count it has left."""
        with self._lock:
            return list(self._armed)

    def take(self, method: str, path: str, template: str) -> Taken:
        """Draw the first matching latency fault and the first other matching fault."""
        with self._lock:
            latency = self._draw(method, path, template, latency=True)
            other = self._draw(method, path, template, latency=False)
        return Taken(latency.latency_ms if latency else 0, other)

    def _draw(self, method: str, path: str, template: str, *, latency: bool) -> Fault | None:
        for index, fault in enumerate(self._armed):
            if (fault.kind is FaultKind.LATENCY) != latency:
                continue
            if not fault.matches(method, path, template):
                continue
            if fault.count == 1:
                del self._armed[index]
            else:
                self._armed[index] = replace(fault, count=fault.count - 1)
            return fault
        return None


@dataclass(frozen=True, slots=True)
class RateState:
    """What the X-Ratelimit-* headers say; ``allowed`` is False past the limit."""

    limit: int
    remaining: int
    reset_s: int
    allowed: bool = True

    def headers(self) -> dict[str, str]:
        return {
            "X-Ratelimit-Limit": str(self.limit),
            "X-Ratelimit-Remaining": str(self.remaining),
            "X-Ratelimit-Reset": str(self.reset_s),
        }


class RateLimiter:
    """A fixed one-minute window per API key, as Alpaca counts (200 requests a minute)."""

    def __init__(self, limit_per_min: int, now_s: Callable[[], float]) -> None:
        self._limit = limit_per_min
        self._now_s = now_s
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}  # key -> (window start s, used)

    def hit(self, key: str) -> RateState:
        """Count one request for ``key``; past the limit it is not allowed (and not counted)."""
        with self._lock:
            start, used = self._window(key)
            allowed = used < self._limit
            if allowed:
                used += 1
            self._windows[key] = (start, used)
            return RateState(self._limit, self._limit - used, start + _WINDOW_S, allowed)

    def peek(self, key: str) -> RateState:
        with self._lock:
            start, used = self._window(key)
            return RateState(self._limit, self._limit - used, start + _WINDOW_S)

    def _window(self, key: str) -> tuple[int, int]:
        now = int(self._now_s())
        start, used = self._windows.get(key, (now, 0))
        if now >= start + _WINDOW_S:
            return now, 0
        return start, used
