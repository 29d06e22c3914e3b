"""Following orders to their end: ``OrderWatch``, and its REST-polling implementation.

Every observation of an order, a REST read or a venue's trade update, moves a
``TrackedOrder`` through the order state machine, so a stale or duplicated event can never
lower a fill or revive a finished order. A refused transition is logged and ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol

import structlog

from rebalance_stream.brokers.order_state import (
    OrderProgress,
    OrderUpdate,
    advance_all,
    progress_of,
    triggers_from_snapshot,
    with_progress,
)
from rebalance_stream.brokers.protocol import Broker, BrokerOrder

log = structlog.get_logger(__name__)


class OrderWatch(Protocol):
    """Waits for an order that was placed to end. ``expect`` is called before an order is
    submitted, ``forget`` once its placer is done with it (terminal or given up)."""

    def expect(self, client_order_id: str) -> None: ...

    def forget(self, client_order_id: str) -> None: ...

    def until_terminal(self, order: BrokerOrder, limit_s: float) -> BrokerOrder:
        """The order once terminal, or as last known when ``limit_s`` seconds passed."""
        ...

    def after_cancel(self, order: BrokerOrder, limit_s: float) -> BrokerOrder:
        """Like ``until_terminal``, for an order whose cancel was just asked for."""
        ...


class TrackedOrder:
    """One order's latest known state, changed only through the state machine. Not
    thread-safe: its owner serializes calls."""

    def __init__(self, order: BrokerOrder) -> None:
        self.order = order
        self.progress: OrderProgress = progress_of(order)

    @property
    def is_terminal(self) -> bool:
        return self.progress.is_terminal

    def apply(self, updates: Iterable[OrderUpdate], source: str) -> None:
        """Advance through ``updates``; a refused one is logged and changes nothing."""
        for transition in advance_all(self.progress, updates):
            if not transition.allowed:
                log.warning(
                    "order_transition_refused",
                    client_order_id=self.order.client_order_id,
                    source=source,
                    refusal=transition.refusal,
                )
            self.progress = transition.progress
        self.order = with_progress(self.order, self.progress)

    def apply_event(self, event_order: BrokerOrder, update: OrderUpdate) -> None:
        """Take a venue event: its trigger, and the order's other fields as it carried them."""
        self.order = event_order  # its status and fill are set from the progress by ``apply``
        self.apply([update], "stream")

    def observe(self, snapshot: BrokerOrder, source: str = "rest") -> None:
        """Take a full read of the order: its synthetic triggers, and its other fields
        (timestamps, reject reason)."""
        updates = triggers_from_snapshot(self.progress, snapshot)
        self.order = snapshot  # its status and fill are set from the progress by ``apply``
        self.apply(updates, source)


class PollingOrderWatch:
    """Reads the order over REST every ``interval_s`` until it ends."""

    def __init__(
        self,
        broker: Broker,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
        interval_s: float,
    ) -> None:
        self._broker = broker
        self._clock = clock
        self._sleep = sleep
        self._interval_s = interval_s

    def expect(self, client_order_id: str) -> None:
        """Nothing to prepare: every read is a REST read."""

    def forget(self, client_order_id: str) -> None:
        """Nothing is kept."""

    def until_terminal(self, order: BrokerOrder, limit_s: float) -> BrokerOrder:
        return self._poll(TrackedOrder(order), limit_s)

    def after_cancel(self, order: BrokerOrder, limit_s: float) -> BrokerOrder:
        """Reads the order at once (a cancel is mostly confirmed right away), then polls."""
        tracked = TrackedOrder(order)
        tracked.observe(self._broker.get_order(order.broker_order_id))
        return self._poll(tracked, limit_s)

    def _poll(self, tracked: TrackedOrder, limit_s: float) -> BrokerOrder:
        order = tracked.order
        started = self._clock()
        while not tracked.is_terminal and (self._clock() - started).total_seconds() < limit_s:
            self._sleep(self._interval_s)
            tracked.observe(self._broker.get_order(order.broker_order_id))
        return tracked.order
