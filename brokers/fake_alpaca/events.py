"""Order events of the fake Alpaca venue, as Alpaca's ``trade_updates`` stream reports them.

The engine records an ``OrderEvent`` for every order state change while it holds its lock, and
calls ``EventFeed.deliver`` once it has released it. One thread at a time delivers: it hands
every recorded event to every listener, in the order recorded, including events that other
threads record meanwhile (their ``deliver`` returns at once and leaves them to it). So each
listener sees every event once, in order, never under the engine's lock, on whichever thread
delivers. A listener should be quick; it may call the engine (events it causes are delivered
after the current one has reached every listener). A listener that raises is logged and
skipped; the change that caused the event stands.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

import structlog

from rebalance_stream.brokers.fake_alpaca.model import Order

log = structlog.get_logger(__name__)

EventName = Literal["new", "accepted", "partial_fill", "fill", "canceled", "expired", "rejected"]
FILL_EVENTS = frozenset({"fill", "partial_fill"})


@dataclass(frozen=True, slots=True)
class Execution:
    """One fill: its unique id, this execution's price and qty, and the position after it."""

    id: str
    price: Decimal
    qty: Decimal
    position_qty: Decimal


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """An order state change: the order as it is after it, and the execution of a fill."""

    event: EventName
    order: Order
    timestamp: datetime
    execution: Execution | None = None


OrderListener = Callable[[OrderEvent], None]


class EventFeed:
    """Recorded order events and the listeners they are delivered to. Thread-safe."""

    def __init__(self) -> None:
        self._listeners: tuple[OrderListener, ...] = ()
        self._listeners_lock = threading.Lock()
        self._pending: deque[OrderEvent] = deque()
        self._delivering = threading.Lock()

    def add_listener(self, listener: OrderListener) -> None:
        with self._listeners_lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: OrderListener) -> None:
        with self._listeners_lock:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

    def record(self, event: OrderEvent) -> None:
        """Queue an event; the engine calls it under its lock, in the order of the changes."""
        self._pending.append(event)

    def deliver(self) -> None:
        """Deliver the queued events unless a thread (maybe this one) is delivering already.

        That thread takes them: it checks for more after it released the delivery lock, and
        anything recorded before a failed acquire was recorded before that release.
        """
        while self._pending:
            if not self._delivering.acquire(blocking=False):
                return
            try:
                while self._pending:
                    self._to_listeners(self._pending.popleft())
            finally:
                self._delivering.release()

    def _to_listeners(self, event: OrderEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception as exc:  # a test's listener must not break the venue
                log.error(
                    "fake_alpaca_listener_failed",
                    trade_event=event.event,
                    order_id=event.order.id,
                    error=repr(exc),
                )
