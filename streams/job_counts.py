"""Counts of what the job decided, by kind, for logs, tests and (later) metrics."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping

from rebalance_stream.contracts.outcomes import WorkflowCompleted, WorkflowFailed
from rebalance_stream.operators.flow import DeadLetter, Disposition

CONSUMED = "consumed"
DEDUPLICATED = "deduplicated"
DEAD_LETTERED = "dead_lettered"
MIS_KEYED = "mis_keyed"
COMPLETED = "workflow_completed"
FAILED = "workflow_failed"


def kinds_of(disposition: Disposition) -> list[str]:
    """The counters that one input's disposition moves (SPEC 1, 3.11)."""
    kinds = [CONSUMED]
    if disposition.skipped is not None:
        kinds.append(DEDUPLICATED)
    if disposition.mis_keyed:
        kinds.append(MIS_KEYED)
    for output in disposition.outputs:
        if isinstance(output, DeadLetter):
            kinds.append(DEAD_LETTERED)
        elif isinstance(output, WorkflowCompleted):
            kinds.append(COMPLETED)
        elif isinstance(output, WorkflowFailed):
            kinds.append(FAILED)
    return kinds


class JobCounts:
    """Thread-safe counters of decided inputs; ``snapshot`` reads them all at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, disposition: Disposition) -> None:
        with self._lock:
            self._counts.update(kinds_of(disposition))

    def add(self, kinds: Mapping[str, int]) -> None:
        """Count inputs decided without a Disposition (``kinds`` as ``kinds_of`` names them)."""
        with self._lock:
            self._counts.update(kinds)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
