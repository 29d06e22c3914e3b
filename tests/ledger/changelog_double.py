"""An in-memory changelog for KafkaLedger unit tests: sent records become readable on flush."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

from rebalance_stream.ledger.changelog import ChangelogRecord


class MemoryChangelog:
    """Partitions of records; ``writer()`` and ``reader()`` give a ledger its two sides."""

    def __init__(self) -> None:
        self.partitions: dict[int, list[ChangelogRecord]] = defaultdict(list)
        self.unflushed: list[tuple[int, ChangelogRecord]] = []
        self.flushes = 0
        self.reads: list[int] = []

    def writer(self) -> MemoryWriter:
        return MemoryWriter(self)

    def reader(self) -> MemoryReader:
        return MemoryReader(self)

    def keys(self, partition: int) -> list[str]:
        return [record.key.decode() for record in self.partitions[partition]]


class MemoryWriter:
    def __init__(self, log: MemoryChangelog) -> None:
        self._log = log

    def send(self, partition: int, record: ChangelogRecord) -> object:
        self._log.unflushed.append((partition, record))
        return record

    def wait(self, tokens: Sequence[object]) -> None:
        """Like Kafka's producer flush: everything sent so far is written."""
        self.flush()

    def flush(self) -> None:
        log = self._log
        for partition, record in log.unflushed:
            log.partitions[partition].append(record)
        log.unflushed.clear()
        log.flushes += 1

    def close(self) -> None:
        """Records sent but not flushed are lost, as in a crash."""


class MemoryReader:
    def __init__(self, log: MemoryChangelog) -> None:
        self._log = log

    def read(self, partition: int) -> Iterator[ChangelogRecord]:
        self._log.reads.append(partition)
        yield from list(self._log.partitions[partition])

    def close(self) -> None:
        """Nothing to release."""
