"""record_outcomes: the ledger keeps each plan's outputs before they are published (SPEC 1).

An outcome is decided once: the outputs go on record first, and the record wins over a second
decision (a plan resumed after a crash whose first outcome was recorded already), so a plan's
outputs are always the same bytes, however often they are published.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

import reactivex
from reactivex import Observable
from reactivex import operators as ops
from reactivex.abc import DisposableBase, ObserverBase, SchedulerBase
from reactivex.disposable import CompositeDisposable, SerialDisposable
from reactivex.scheduler import TimeoutScheduler

from rebalance_stream.contracts.outcomes import OutputEvent
from rebalance_stream.ledger.protocol import OutcomeStore, PlanOutcome
from rebalance_stream.operators.flow import DeadLetter, Disposition, Op

DEFAULT_MAX_BATCH = 500


def _plan_outcome(disposition: Disposition) -> PlanOutcome | None:
    if not disposition.owns_outcome or disposition.plan_id is None or disposition.not_started:
        return None
    events = tuple(o for o in disposition.outputs if not isinstance(o, DeadLetter))
    if len(events) != len(disposition.outputs):
        return None
    return PlanOutcome(disposition.plan_id, events, disposition.decided_at)


def settle_outcomes(store: OutcomeStore, batch: Sequence[Disposition]) -> list[Disposition]:
    """Record the batch's plan outcomes in one write; return the batch with the outputs on record.

    Dispositions that own no plan outcome (dead letters, duplicates) pass through unchanged.
    """
    owned = [(index, outcome) for index, d in enumerate(batch) if (outcome := _plan_outcome(d))]
    settled = list(batch)
    if not owned:
        return settled
    on_record = store.record_outcomes([outcome for _, outcome in owned])
    for (index, _), outputs in zip(owned, on_record, strict=True):
        kept: tuple[OutputEvent | DeadLetter, ...] = outputs
        if kept != settled[index].outputs:
            settled[index] = replace(settled[index], outputs=kept)
    return settled


def record_outcomes(
    store: OutcomeStore,
    window_s: float = 0.0,
    max_batch: int = DEFAULT_MAX_BATCH,
    scheduler: SchedulerBase | None = None,
) -> Op[Disposition, Disposition]:
    """Put each plan's outputs on record; emit each Disposition with the outputs on record.

    Group commit: the dispositions that arrive while a write runs share the next write (at
    most ``max_batch``), which starts on ``scheduler`` as soon as the previous one ends, or
    ``window_s`` after its first disposition when ``window_s`` > 0. With neither a window nor
    a scheduler, one write per disposition in the caller's thread. Emitted in arrival order;
    safe with concurrent upstream threads; nothing is dropped. A failing ledger errors the
    stream: without a record, publishing could not promise the same bytes twice.

    -d1-d2-d3-|   ->   -d1-d2-d3-|   (d2 resumed a plan recorded before: d2 keeps that record)
    """
    if window_s <= 0 and scheduler is None:
        return ops.map(lambda disposition: settle_outcomes(store, [disposition])[0])

    def operator(source: Observable[Disposition]) -> Observable[Disposition]:
        def subscribe(
            observer: ObserverBase[Disposition], subscribe_scheduler: SchedulerBase | None = None
        ) -> DisposableBase:
            timers = scheduler or subscribe_scheduler or TimeoutScheduler.singleton()
            batcher = _GroupCommit(store, observer, timers, window_s, max_batch)
            upstream = source.subscribe(
                batcher.on_next,
                batcher.on_error,
                batcher.on_completed,
                scheduler=subscribe_scheduler,
            )
            return CompositeDisposable(upstream, batcher.timer)

        return reactivex.create(subscribe)

    return operator


class _GroupCommit:
    """Collects dispositions and settles them together: when the scheduled write starts (at
    once, or when the window ends) or when the batch is full.

    ``_lock`` guards the pending list and is never held while the ledger writes, so that
    upstream threads keep adding to the next batch; ``_writing`` serializes the writes and
    the emissions, so that batches are written and emitted in the order they were taken.
    """

    def __init__(
        self,
        store: OutcomeStore,
        observer: ObserverBase[Disposition],
        timers: SchedulerBase,
        window_s: float,
        max_batch: int,
    ) -> None:
        self._store = store
        self._observer = observer
        self._timers = timers
        self._window_s = window_s
        self._max_batch = max_batch
        self._lock = threading.RLock()  # a scheduler may run the write in on_next's thread
        self._writing = threading.RLock()
        self._pending: list[Disposition] = []
        self._scheduled = False
        self._stopped = False
        self.timer = SerialDisposable()

    def on_next(self, disposition: Disposition) -> None:
        if _plan_outcome(disposition) is None and self._pass_when_idle(disposition):
            return
        with self._lock:
            if self._stopped:
                return
            self._pending.append(disposition)
            full = len(self._pending) >= self._max_batch
            if not full and not self._scheduled:
                # Under the lock: a write that ran already is never replaced by one that has not.
                self._scheduled = True
                self.timer.disposable = self._schedule_write()
        if full:
            self._flush()

    def _pass_when_idle(self, disposition: Disposition) -> bool:
        """Emit a disposition with nothing to record (a duplicate) at once, in this thread,
        when no write runs and none waits: it cannot overtake anything."""
        if not self._writing.acquire(blocking=False):
            return False
        try:
            with self._lock:
                idle = not self._pending and not self._stopped
            if idle:
                self._observer.on_next(disposition)
            return idle
        finally:
            self._writing.release()

    def _schedule_write(self) -> DisposableBase:
        def write(_scheduler: SchedulerBase, _state: object) -> None:
            self._flush()

        if self._window_s > 0:
            return self._timers.schedule_relative(self._window_s, write)
        return self._timers.schedule(write)

    def on_error(self, error: Exception) -> None:
        with self._writing:
            if self._flush():
                self._stop()
                self._observer.on_error(error)

    def on_completed(self) -> None:
        with self._writing:
            if self._flush():
                self._stop()
                self._observer.on_completed()

    def _stop(self) -> None:
        with self._lock:
            self._stopped = True

    def _flush(self) -> bool:
        """Settle and emit what is pending; False when the ledger failed (the stream errored)."""
        with self._writing:
            with self._lock:
                if self._stopped:
                    return False
                batch, self._pending = self._pending, []
                self._scheduled = False
            if not batch:
                return True
            try:
                settled = settle_outcomes(self._store, batch)
            except Exception as exc:  # the ledger is gone: no record, so nothing may be published
                self._stop()
                self._observer.on_error(exc)
                return False
            for disposition in settled:
                self._observer.on_next(disposition)
            return True
