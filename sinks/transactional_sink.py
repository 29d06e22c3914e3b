"""exactly_once publishing: an input's records and its offset commit share one Kafka transaction.

A producer has one open transaction at a time, so dispositions, which arrive in any order, are
held until every earlier offset of their partition is decided. The releasable ones, in offset
order per partition, go in the next transaction, with the offsets after them committed through
``send_offsets_to_transaction``. Consumers reading with ``read_committed`` then see each input's
records exactly once, or not at all. A transaction that fails is aborted, and the job stops:
on restart the inputs come again and the ledger publishes the outputs on record (SPEC 1).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from kafka import TopicPartition  # type: ignore[import-untyped]
from kafka.structs import OffsetAndMetadata  # type: ignore[import-untyped]

from rebalance_stream.operators.decode import DEFAULT_MAX_INPUT_BYTES
from rebalance_stream.operators.flow import Disposition, SourcePosition
from rebalance_stream.sinks.routing import OutputTopics, producer_records
from rebalance_stream.streams.offsets import OffsetTracker

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL_S = 0.1


@dataclass(frozen=True, slots=True)
class TransactionHooks:
    """Callbacks of the transactional publisher.

    ``committed`` gets the dispositions of each committed transaction; ``fatal`` the first
    failure; ``group_metadata`` returns the consumer's group metadata (KIP-447 fencing);
    ``before_commit`` runs just before each commit (a crash-test hook).
    """

    committed: Callable[[list[Disposition]], None]
    fatal: Callable[[SourcePosition, BaseException], None]
    group_metadata: Callable[[], Any]
    before_commit: Callable[[], None] = lambda: None


class TransactionalOutcomePublisher:
    """Batches decided inputs into transactions, in offset order per partition."""

    def __init__(
        self,
        producer: Any,
        topics: OutputTopics,
        hooks: TransactionHooks,
        interval_s: float = DEFAULT_INTERVAL_S,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    ) -> None:
        self._producer = producer
        self._topics = topics
        self._hooks = hooks
        self._interval_s = interval_s
        self._max_input_bytes = max_input_bytes
        self._lock = threading.RLock()
        self._tracker: OffsetTracker[Any] = OffsetTracker()
        self._decided: dict[tuple[Any, int], Disposition] = {}
        self._stopping = threading.Event()
        self._failed = False
        self._thread = threading.Thread(target=self._loop, name="kafka-transactions", daemon=True)
        self.transactions = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Commit what is releasable, then stop the transaction thread."""
        self._stopping.set()
        self._thread.join()
        self.commit_ready()

    def received(self, position: SourcePosition) -> None:
        """The source emitted this input; call in offset order per partition."""
        with self._lock:
            self._tracker.receive(
                TopicPartition(position.topic, position.partition), position.offset
            )

    def publish(self, disposition: Disposition) -> None:
        """Hold a decided input until its partition's earlier inputs are decided too."""
        position = disposition.position
        partition = TopicPartition(position.topic, position.partition)
        with self._lock:
            self._decided[(partition, position.offset)] = disposition
            self._tracker.acknowledge(partition, position.offset)

    def release_partitions(self, partitions: list[Any]) -> None:
        """On revocation: commit what is releasable now, and forget the rest of ``partitions``;
        the next owner reads those inputs again."""
        with self._lock:
            self.commit_ready()
            revoked = set(partitions)
            for key in [k for k in self._decided if k[0] in revoked]:
                del self._decided[key]
            self._tracker.forget(list(partitions))

    def commit_ready(self) -> None:
        """One transaction with every releasable input; nothing when none is."""
        with self._lock:
            if self._failed:
                return
            positions = self._tracker.committable()
            ready = self._take_ready(positions)
            if not ready:
                return
            try:
                self._transact(ready, positions)
            except Exception as exc:  # a failed transaction is aborted; the job must stop
                self._fail(ready, exc)
                return
        self._hooks.committed(ready)

    def _take_ready(self, positions: dict[Any, int]) -> list[Disposition]:
        keys = sorted(
            (k for k in self._decided if k[0] in positions and k[1] < positions[k[0]]),
            key=lambda k: (k[0].topic, k[0].partition, k[1]),
        )
        return [self._decided.pop(key) for key in keys]

    def _transact(self, ready: list[Disposition], positions: dict[Any, int]) -> None:
        producer = self._producer
        producer.begin_transaction()
        for disposition in ready:
            for record in producer_records(disposition, self._topics, self._max_input_bytes):
                producer.send(
                    record.topic, value=record.value, key=record.key, headers=list(record.headers)
                )
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in positions.items()}
        producer.send_offsets_to_transaction(offsets, self._hooks.group_metadata())
        self._hooks.before_commit()
        producer.commit_transaction()
        self.transactions += 1
        log.debug("transaction_committed", inputs=len(ready), offsets=len(offsets))

    def _fail(self, ready: list[Disposition], error: BaseException) -> None:
        self._failed = True
        log.error("transaction_failed", inputs=len(ready), error=repr(error))
        try:
            self._producer.abort_transaction()
        except Exception as abort_error:  # fenced or broken: nothing more to undo here
            log.warning("transaction_abort_failed", error=repr(abort_error))
        self._hooks.fatal(ready[0].position, error)

    def _loop(self) -> None:
        while not self._stopping.wait(self._interval_s):
            self.commit_ready()
