"""The input: a kafka-python consumer in a group, polled on its own thread, as an Observable.

Guarantees: no auto-commit; an offset is committed only when it and every offset received before
it on its partition are acknowledged (``OffsetTracker``). Acknowledgements arrive from any thread
through a queue; only the polling thread touches the consumer, which is not thread-safe. Too
many unacknowledged inputs pause the partitions, and polling goes on so the group keeps us.
While running, offsets are committed asynchronously (no round trip before the next poll); on
stop, the last commit waits for the broker's answer.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import reactivex
import structlog
from kafka import ConsumerRebalanceListener, TopicPartition  # type: ignore[import-untyped]
from kafka.structs import OffsetAndMetadata  # type: ignore[import-untyped]
from reactivex import Observable
from reactivex.abc import ObserverBase, SchedulerBase
from reactivex.disposable import Disposable

from rebalance_stream.operators.flow import Clock, InputRecord, SourcePosition
from rebalance_stream.streams.offsets import OffsetTracker
from rebalance_stream.streams.source_options import SourceOptions

log = structlog.get_logger(__name__)

RESUME_FRACTION = 2
MAX_POLL_RECORDS = 500
"""At most this many records per poll, and never more than the room left under max_in_flight:
so the inputs in flight never exceed the bound."""
IDLE_WAIT_S = 0.05


def _input_record(consumed: Any, received_at: datetime) -> InputRecord:
    return InputRecord(
        position=SourcePosition(consumed.topic, consumed.partition, consumed.offset),
        key=consumed.key,
        value=consumed.value if consumed.value is not None else b"",
        headers=tuple(consumed.headers or ()),
        received_at=received_at,
    )


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits what is done for revoked partitions, inside the callback, then forgets them."""

    def __init__(self, source: KafkaPlanSource) -> None:
        self._source = source

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._source.handle_revoked(list(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._source.handle_assigned(list(assigned))


class KafkaPlanSource:
    """Emits one InputRecord per consumed record; ``acknowledge`` when its outputs are in Kafka."""

    def __init__(
        self,
        consumer_factory: Callable[[], Any],
        topic: str,
        clock: Clock,
        options: SourceOptions | None = None,
    ) -> None:
        options = options or SourceOptions()
        self._consumer_factory = consumer_factory
        self._topic = topic
        self._clock = clock
        self._max_in_flight = options.max_in_flight
        self._poll_timeout_ms = options.poll_timeout_ms
        self._shutdown_deadline_s = options.shutdown_deadline_s
        self._before_commit = options.before_commit
        self._commit_offsets = options.commit_offsets
        self._on_revoked = options.on_revoked
        self._group_metadata: Any = None
        self._revoke_wait_s = options.revoke_wait_s
        self._prepare_assigned = options.prepare_assigned
        self._unprepared: list[Any] = []
        self._on_assignment = options.on_assignment
        self._on_loop = options.on_loop
        self._on_lag = options.on_lag
        self._settle = options.settle if options.commit_offsets else None
        self._lag_interval_s = options.lag_interval_s
        self._lag_due = 0.0
        self._resume_at: dict[Any, int] = {}
        self._acks: queue.SimpleQueue[tuple[bool, SourcePosition]] = queue.SimpleQueue()
        self._released: Counter[Any] = Counter()
        self._revoking: frozenset[tuple[str, int]] = frozenset()
        self._stopping = threading.Event()
        self._fatal: BaseException | None = None
        self._tracker: OffsetTracker[Any] = OffsetTracker()
        self._consumer: Any = None
        self._paused = False
        self.pauses = 0
        self.revocations = 0
        self.most_in_flight = 0
        """The most inputs in flight at once, as seen after each poll."""
        """How many times a rebalance took partitions from this member (its own stop aside)."""
        """How many times the source paused its partitions for backpressure."""
        self.committed: dict[Any, int] = {}

    @property
    def fatal_error(self) -> BaseException | None:
        return self._fatal

    def acknowledge(self, position: SourcePosition) -> None:
        """Thread-safe: every output of this input is in Kafka."""
        self._acks.put((True, position))

    def release(self, position: SourcePosition) -> None:
        """Thread-safe: this input was held back by the shutdown. It is never committed, and
        the shutdown stops waiting for it."""
        self._acks.put((False, position))

    def is_stopping(self) -> bool:
        return self._stopping.is_set()

    def group_metadata(self) -> Any:
        """The consumer's group metadata as of the last poll (for KIP-447 fencing)."""
        return self._group_metadata

    def fail(self, position: SourcePosition, error: BaseException) -> None:
        """Thread-safe: an output of this input could not be published. Stops the source."""
        if self._fatal is None:
            self._fatal = error
        log.error("source_stopping_on_fatal", offset=position.offset, error=repr(error))
        self._stopping.set()

    def stop(self) -> None:
        """Thread-safe: stop polling, let in-flight inputs finish, commit, complete."""
        self._stopping.set()

    def records(self) -> Observable[InputRecord]:
        """A cold Observable: subscribing starts the polling thread."""

        def subscribe(
            observer: ObserverBase[InputRecord], scheduler: SchedulerBase | None = None
        ) -> Disposable:
            thread = threading.Thread(
                target=self._run, args=(observer,), name="kafka-poll", daemon=True
            )
            thread.start()
            return Disposable(self.stop)

        return reactivex.create(subscribe)

    def is_held_back(self, position: SourcePosition) -> bool:
        """True when a plan from this position must not start: the job is stopping, or its
        partition is being revoked."""
        return self._stopping.is_set() or (position.topic, position.partition) in self._revoking

    def handle_revoked(self, revoked: list[Any]) -> None:
        """Inside poll(), on kafka-python's network loop: let the revoked partitions' executing
        plans finish (bounded by ``revoke_wait_s``) while their unstarted plans are held back,
        then commit what is done (asynchronously: the loop cannot block on itself; the commit
        goes out before the group is rejoined) and forget the partitions. So a plan never
        runs in two instances at once. A partition that comes straight back is rewound to
        its first unfinished offset, since kafka-python keeps its position."""
        self._revoking = frozenset((tp.topic, tp.partition) for tp in revoked)
        self._unprepared = [tp for tp in self._unprepared if tp not in set(revoked)]
        self.revocations += 1 if revoked and not self._stopping.is_set() else 0
        deadline = time.monotonic() + self._revoke_wait_s
        while self._unsettled(revoked) and time.monotonic() < deadline:
            self._drain_acks()
            time.sleep(IDLE_WAIT_S)
        self._on_revoked(revoked)
        self._drain_acks()
        self._commit(blocking=False)
        for partition in revoked:
            first = self._tracker.first_pending(partition)
            if first is not None:
                self._resume_at[partition] = first
        self._tracker.forget(revoked)
        for partition in revoked:
            self._released.pop(partition, None)
        self._revoking = frozenset()
        log.info("partitions_revoked", partitions=sorted(str(tp) for tp in revoked))

    def handle_assigned(self, assigned: list[Any]) -> None:
        """Inside poll(): pause the partitions until ``prepare_assigned`` has run, and rewind a
        partition that came straight back to where it stopped."""
        if self._prepare_assigned is not None and assigned:
            self._consumer.pause(*assigned)
            self._unprepared = list(assigned)
        for partition in assigned:
            offset = self._resume_at.get(partition)
            if offset is not None:
                self._consumer.seek(partition, offset)
                log.info("partition_rewound", partition=str(partition), offset=offset)
        self._resume_at.clear()
        self._lag_due = 0.0
        self._on_assignment(bool(assigned))
        log.info("partitions_assigned", partitions=sorted(str(tp) for tp in assigned))

    def _run(self, observer: ObserverBase[InputRecord]) -> None:
        try:
            self._consumer = self._consumer_factory()
            self._consumer.subscribe([self._topic], listener=_CommitOnRevoke(self))
            self._learn_topic()
            while not self._stopping.is_set():
                self._on_loop()
                self._report_lag()
                self._drain_acks()
                self._commit(blocking=False)  # no round trip ahead of the next poll
                self._apply_backpressure()
                self._poll_once(observer)
                self._prepare_unprepared()
            self._finish_in_flight()
        except Exception as exc:  # losing the consumer is infrastructure: end the stream
            log.exception("source_failed")
            observer.on_error(exc)
            return
        finally:
            self._close()
        observer.on_completed()

    def _learn_topic(self) -> None:
        """Read the input topic's partitions after subscribing and before joining the group
        (the first poll joins). A group leader that assigns before its metadata has the topic
        assigns nothing, and kafka-python notices only at its next metadata refresh
        (``metadata_max_age_ms``, five minutes). Read before subscribing, the partitions would
        differ from the subscription's snapshot, and the member would rejoin once."""
        partitions = self._consumer.partitions_for_topic(self._topic)
        if partitions:
            log.info("input_topic_found", topic=self._topic, partitions=len(partitions))
        else:
            log.warning("input_topic_not_found", topic=self._topic)

    def _poll_once(self, observer: ObserverBase[InputRecord]) -> None:
        """Poll once; emit each record, except those ``settle`` decides, which are
        acknowledged at once. Every record of a poll has the same ``received_at``."""
        room = self._max_in_flight - self._tracker.in_flight()
        max_records = max(1, min(MAX_POLL_RECORDS, room))
        batch = self._consumer.poll(timeout_ms=self._poll_timeout_ms, max_records=max_records)
        self._group_metadata = self._consumer.group_metadata()
        received_at = self._clock()
        records = [
            _input_record(consumed, received_at)
            for partition_records in batch.values()
            for consumed in partition_records
        ]
        self.most_in_flight = max(self.most_in_flight, self._tracker.in_flight() + len(records))
        settled = self._settle(records) if records and self._settle else ()
        for record in records:
            position = record.position
            partition = TopicPartition(position.topic, position.partition)
            self._tracker.receive(partition, position.offset)
            if position in settled:
                self._tracker.acknowledge(partition, position.offset)
            else:
                observer.on_next(record)

    def _prepare_unprepared(self) -> None:
        """Run ``prepare_assigned`` for the partitions the last poll assigned, then let their
        records flow (unless backpressure holds every partition)."""
        partitions, self._unprepared = self._unprepared, []
        if not partitions or self._prepare_assigned is None:
            return
        self._prepare_assigned(partitions)
        current = set(self._consumer.assignment())
        still_assigned = [tp for tp in partitions if tp in current]
        if still_assigned and not self._paused:
            self._consumer.resume(*still_assigned)

    def _report_lag(self) -> None:
        """Every lag_interval_s, and right after an assignment: the assigned partitions' end
        offsets (one request; exact even while paused) and positions, for the lag gauge."""
        now = time.monotonic()
        if now < self._lag_due:
            return
        self._lag_due = now + self._lag_interval_s
        partitions = list(self._consumer.assignment())
        if not partitions:
            self._on_lag({}, {})
            return
        ends: dict[Any, int | None] = dict(self._consumer.end_offsets(partitions))
        positions = {tp: self._consumer.position(tp) for tp in partitions}
        self._on_lag(ends, positions)

    def _drain_acks(self) -> None:
        while True:
            try:
                acknowledged, position = self._acks.get_nowait()
            except queue.Empty:
                return
            if not acknowledged:
                self._released[TopicPartition(position.topic, position.partition)] += 1
                continue
            partition = TopicPartition(position.topic, position.partition)
            self._tracker.acknowledge(partition, position.offset)

    def _commit(self, *, blocking: bool = True) -> None:
        positions = self._tracker.committable()
        if not positions or not self._commit_offsets:
            return
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in positions.items()}
        self._before_commit()
        try:
            if not blocking:
                self._consumer.commit_async(offsets=offsets, callback=self._async_committed)
                return
            self._consumer.commit(offsets=offsets)
        except Exception as exc:  # a failed commit means redelivery, which dedupe absorbs
            log.warning("commit_failed", error=repr(exc))
            return
        self._committed(positions)

    def _async_committed(self, offsets: dict[Any, Any], response: Any) -> None:
        if isinstance(response, Exception):
            log.warning("commit_failed", error=repr(response), partitions=len(offsets))
            return
        self._committed({tp: meta.offset for tp, meta in offsets.items()})

    def _committed(self, positions: dict[Any, int]) -> None:
        """Offsets the group has now: ``committed`` only moves forward (async answers can
        arrive after a later blocking commit's)."""
        for tp, offset in positions.items():
            if offset > self.committed.get(tp, -1):
                self.committed[tp] = offset
        log.debug("offsets_committed", offsets={str(tp): o for tp, o in positions.items()})

    def _apply_backpressure(self) -> None:
        in_flight = self._tracker.in_flight()
        if not self._paused and in_flight >= self._max_in_flight:
            self._consumer.pause(*self._consumer.assignment())
            self._paused = True
            self.pauses += 1
            log.info("source_paused", in_flight=in_flight)
        elif self._paused and in_flight <= self._max_in_flight // RESUME_FRACTION:
            self._consumer.resume(*self._consumer.paused())
            self._paused = False
            log.info("source_resumed", in_flight=in_flight)

    def _finish_in_flight(self) -> None:
        """Stop taking records; wait (bounded) for in-flight inputs, committing as they land."""
        if self._fatal is not None:
            self._drain_acks()
            self._commit()
            return
        deadline = time.monotonic() + self._shutdown_deadline_s
        while self._unsettled() and time.monotonic() < deadline:
            self._drain_acks()
            self._commit()
            time.sleep(IDLE_WAIT_S)
        self._drain_acks()
        self._commit()
        held_back = sum(self._released.values())
        log.info("source_stopped", unfinished=self._unsettled(), held_back=held_back)

    def _unsettled(self, partitions: list[Any] | None = None) -> int:
        """In-flight inputs, of ``partitions`` or all, neither acknowledged nor held back."""
        chosen = self._released.keys() if partitions is None else partitions
        held_back = sum(self._released.get(p, 0) for p in chosen)
        return self._tracker.unacknowledged(partitions) - held_back

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
