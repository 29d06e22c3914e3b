"""Which offsets may be committed: the last unbroken run of acknowledged offsets, plus one.

Pure bookkeeping for the polling thread. It walks the offsets that were actually received, not
n+1, because compaction and transaction markers leave holes in a partition's offsets.

    received 4 5 7 8, acknowledged 4 7 8   ->   commit 5 (5 is still in flight)
    then 5 is acknowledged                 ->   commit 9
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


@dataclass
class PartitionProgress:
    """One partition's received offsets, in order, and which of them are acknowledged."""

    pending: deque[int] = field(default_factory=deque)
    acknowledged: set[int] = field(default_factory=set)
    next_to_commit: int | None = None

    def receive(self, offset: int) -> None:
        if self.pending and offset <= self.pending[-1]:
            raise ValueError(f"offset {offset} received after {self.pending[-1]}")
        self.pending.append(offset)

    def acknowledge(self, offset: int) -> None:
        if offset in self.pending:
            self.acknowledged.add(offset)

    def advance(self) -> int | None:
        """Drop the leading acknowledged offsets; return the new commit position, if it moved."""
        moved = False
        while self.pending and self.pending[0] in self.acknowledged:
            offset = self.pending.popleft()
            self.acknowledged.discard(offset)
            self.next_to_commit = offset + 1
            moved = True
        return self.next_to_commit if moved else None


class OffsetTracker(Generic[P]):
    """Commit positions per partition. Not thread-safe: the polling thread owns it."""

    def __init__(self) -> None:
        self._partitions: dict[P, PartitionProgress] = {}

    def receive(self, partition: P, offset: int) -> None:
        self._partitions.setdefault(partition, PartitionProgress()).receive(offset)

    def acknowledge(self, partition: P, offset: int) -> None:
        """Mark an offset done; an unknown partition (revoked since) is ignored."""
        progress = self._partitions.get(partition)
        if progress is not None:
            progress.acknowledge(offset)

    def committable(self) -> dict[P, int]:
        """The positions that moved since the last call, to commit now."""
        moved = {}
        for partition, progress in self._partitions.items():
            position = progress.advance()
            if position is not None:
                moved[partition] = position
        return moved

    def forget(self, partitions: list[P]) -> None:
        """Drop revoked partitions: their in-flight offsets belong to the next owner now."""
        for partition in partitions:
            self._partitions.pop(partition, None)

    def first_pending(self, partition: P) -> int | None:
        """The first received offset of ``partition`` that is not committable yet, if any."""
        progress = self._partitions.get(partition)
        return progress.pending[0] if progress and progress.pending else None

    def unacknowledged(self, partitions: list[P] | None = None) -> int:
        """Received inputs not acknowledged yet, over ``partitions`` (default: all)."""
        chosen = self._partitions.keys() if partitions is None else partitions
        progress = [self._partitions[p] for p in chosen if p in self._partitions]
        return sum(len(p.pending) - len(p.acknowledged) for p in progress)

    def in_flight(self, partition: P | None = None) -> int:
        """Received but not yet committable inputs, for one partition or all."""
        if partition is not None:
            progress = self._partitions.get(partition)
            return len(progress.pending) if progress else 0
        return sum(len(progress.pending) for progress in self._partitions.values())
