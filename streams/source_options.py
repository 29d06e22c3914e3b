"""SourceOptions: the limits and hooks of the Kafka source (``kafka_source``)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from rebalance_stream.operators.flow import InputRecord, SourcePosition

Settle = Callable[[Sequence[InputRecord]], Collection[SourcePosition]]
"""Decides some of a poll's records completely; returns their positions."""


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """Limits of the source. ``before_commit`` runs before each commit (a crash-test hook).

    With ``commit_offsets`` False (exactly_once), the source commits nothing itself: offsets
    go into the producer's transactions, and an acknowledgement only frees the offset.
    ``on_revoked`` runs first in the revocation callback, on the polling thread.
    """

    max_in_flight: int = 1000
    poll_timeout_ms: int = 200
    shutdown_deadline_s: float = 30.0
    before_commit: Callable[[], None] = lambda: None
    commit_offsets: bool = True
    on_revoked: Callable[[list[Any]], None] = lambda _partitions: None
    prepare_assigned: Callable[[list[Any]], None] | None = None
    """Prepares partitions just assigned before any of their records is emitted (a
    partitioned ledger restores them). It runs on the polling thread right after the poll
    that assigned them, outside the rebalance callback, while they stay paused: the group's
    heartbeats go on, so it may take up to max_poll_interval_ms."""
    on_assignment: Callable[[bool], None] = lambda _has_partitions: None
    """Told after each rebalance whether this member now has partitions (readiness)."""
    on_loop: Callable[[], None] = lambda: None
    """Called once per polling loop (a liveness heartbeat)."""
    on_lag: Callable[[dict[Any, int | None], dict[Any, int]], None] = lambda _ends, _pos: None
    """Told every ``lag_interval_s`` the assigned partitions' end offsets and positions."""
    lag_interval_s: float = 15.0
    revoke_wait_s: float = 5.0
    """How long a revocation waits for the revoked partitions' executing plans. It blocks
    kafka-python's network loop, heartbeats included: keep it under half the session timeout."""
    settle: Settle | None = None
    """Given each poll's records, returns the positions of those it has decided completely,
    with nothing to publish (replayed duplicates). The source acknowledges them at once and
    emits only the others. Only where the source commits its own offsets."""
