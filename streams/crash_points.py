"""Test-only crash points: kill this process with SIGKILL at a named checkpoint.

``REBALANCE_STREAM_TEST_CRASH_AT=between_orders:3`` kills the process the third time execution
passes ``between_orders``. The chaos tests use it to stop the job exactly where a crash hurts
most; production never sets it, and then the hook does nothing.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

import structlog

from rebalance_stream.operators.order_execution import (
    AFTER_ORDERS,
    BEFORE_ORDER,
    BETWEEN_ORDERS,
    no_checkpoint,
)
from rebalance_stream.streams.runner import BEFORE_COMMIT, BEFORE_PUBLISH

log = structlog.get_logger(__name__)

CHECKPOINTS = (BEFORE_ORDER, BETWEEN_ORDERS, AFTER_ORDERS, BEFORE_PUBLISH, BEFORE_COMMIT)


class CrashPointError(ValueError):
    """The crash point setting names no checkpoint, or its count is not a positive integer."""


def parse_crash_point(spec: str) -> tuple[str, int]:
    """``NAME`` or ``NAME:N`` -> (NAME, N); N defaults to 1."""
    name, _, count = spec.partition(":")
    if name not in CHECKPOINTS:
        raise CrashPointError(f"unknown checkpoint {name!r}; known: {', '.join(CHECKPOINTS)}")
    passes = int(count) if count.isdigit() else (1 if not count else 0)
    if passes < 1:
        raise CrashPointError(f"crash point count must be a positive integer: {spec!r}")
    return name, passes


def kill_this_process() -> None:
    """SIGKILL to ourselves: no cleanup, no flush, exactly like an OOM kill or a power cut."""
    os.kill(os.getpid(), signal.SIGKILL)


def crash_hook(
    spec: str | None, kill: Callable[[], None] = kill_this_process
) -> Callable[[str], None]:
    """A checkpoint hook that calls ``kill`` at the N-th pass; no-op without a spec."""
    if not spec:
        return no_checkpoint
    target, passes = parse_crash_point(spec)
    lock = threading.Lock()
    seen = [0]

    def checkpoint(name: str) -> None:
        if name != target:
            return
        with lock:
            seen[0] += 1
            if seen[0] < passes:
                return
        log.warning("test_crash_point_reached", checkpoint=name, passes=passes)
        kill()

    return checkpoint
