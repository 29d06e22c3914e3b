"""Following Alpaca orders over the ``trade_updates`` websocket, with REST as the safety net.

One alpaca-py ``TradingStream`` per credential set runs on its own thread. Each event moves
its order through the order state machine. Alpaca does not replay what was sent while a
connection was down, and may send a fill twice, so:

- a fill is applied once per ``execution_id`` (a repeat is counted and dropped);
- after every (re)connect, each order being waited for is read once over REST (catch-up);
- while the stream is down, and for an order not heard of for ``fallback_poll_s``, the
  order is read over REST (polling as the fallback).

A ``StreamAccountBook``, when given, hears every fill of the account (ours or not), each
connection and disconnection, and each fill that only a REST read found.

``expect`` an order before submitting it, so that events arriving before the submit returns
are kept, and so that a reconnect between the two is noticed. The secret is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import structlog
from alpaca.trading.stream import TradingStream

from rebalance_stream.brokers.account_book import StreamAccountBook
from rebalance_stream.brokers.alpaca_config import AlpacaConfig
from rebalance_stream.brokers.alpaca_wire import parse_fill, parse_order
from rebalance_stream.brokers.order_state import OrderUpdate, Trigger
from rebalance_stream.brokers.order_watch import TrackedOrder
from rebalance_stream.brokers.protocol import Broker, BrokerError, BrokerOrder

log = structlog.get_logger(__name__)

SEEN_EXECUTIONS: Final = 100_000
CLOSE_TIMEOUT_S: Final = 10.0
FILL_EVENTS: Final = frozenset({"fill", "partial_fill"})
TRIGGER_OF_EVENT: Mapping[str, Trigger] = {
    "new": Trigger.ACCEPTED,
    "pending_new": Trigger.ACCEPTED,
    "accepted": Trigger.ACCEPTED,
    "partial_fill": Trigger.PARTIAL_FILL,
    "fill": Trigger.FILL,
    "pending_cancel": Trigger.CANCEL_REQUESTED,
    "order_cancel_rejected": Trigger.CANCEL_REJECTED,
    "canceled": Trigger.CANCELED,
    "replaced": Trigger.CANCELED,
    "rejected": Trigger.REJECTED,
    "expired": Trigger.EXPIRED,
}
"""Alpaca's trade_updates events that move an order; others (``done_for_day``, ...) are
ignored, and the REST catch-up covers what they imply."""


@dataclass(slots=True)
class TradeUpdateStats:
    """Counters, for tests and the bench."""

    connections: int = 0
    events: int = 0
    duplicate_fills: int = 0
    catch_up_reads: int = 0
    fallback_reads: int = 0


@dataclass(slots=True)
class _Entry:
    """An order being waited for. ``synced`` is the connection generation its state is
    known to be complete for (-1: never read)."""

    tracked: TrackedOrder | None
    synced: int
    heard_at: float = field(default_factory=time.monotonic)


class _HookedTradingStream(TradingStream):
    """alpaca-py's TradingStream, telling us when a connection is up and when it closes."""

    def __init__(
        self,
        config: AlpacaConfig,
        on_connected: Callable[[], None],
        on_closed: Callable[[], None],
    ) -> None:
        super().__init__(
            config.key_id,
            config.secret_key.get_secret_value(),
            paper=config.is_paper,
            raw_data=True,
            url_override=config.trade_stream_url,
        )
        self._on_connected = on_connected
        self._on_closed = on_closed

    async def _start_ws(self) -> None:
        await super()._start_ws()  # type: ignore[no-untyped-call]
        self._on_connected()

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._on_closed()


class AlpacaTradeUpdates:
    """An OrderWatch over Alpaca's trade updates; ``broker`` serves the REST reads.

    ``start()`` connects on a background thread; ``close()`` stops it. Thread-safe.
    ``account_book`` (optional) is kept from the same stream.
    """

    def __init__(
        self,
        config: AlpacaConfig,
        broker: Broker,
        *,
        fallback_poll_s: float = 5.0,
        poll_interval_s: float = 0.25,
        reconnect_backoff_s: tuple[float, float] = (0.5, 10.0),
        account_book: StreamAccountBook | None = None,
    ) -> None:
        self._config = config
        self.account_book = account_book
        self._broker = broker
        self._fallback_poll_s = fallback_poll_s
        self._poll_interval_s = poll_interval_s
        self._reconnect_backoff_s = reconnect_backoff_s
        self._changed = threading.Condition()
        self._entries: dict[str, _Entry] = {}
        self._executions: OrderedDict[str, None] = OrderedDict()
        self._generation = 0
        self._connected = False
        self._closing = False
        self._stream: _HookedTradingStream | None = None
        self._thread: threading.Thread | None = None
        self.stats = TradeUpdateStats()

    def __repr__(self) -> str:
        return f"AlpacaTradeUpdates(url={self._config.trade_stream_url!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._closing = False
        stream = _HookedTradingStream(self._config, self._on_connected, self._on_closed)
        stream._reconnect_min_backoff, stream._reconnect_max_backoff = self._reconnect_backoff_s
        stream.subscribe_trade_updates(self._on_message)
        self._stream = stream
        self._thread = threading.Thread(target=stream.run, name="alpaca-trade-updates", daemon=True)
        self._thread.start()
        log.info("trade_updates_started", url=self._config.trade_stream_url)

    def close(self) -> None:
        stream, thread = self._stream, self._thread
        if stream is None or thread is None:
            return
        loop = stream._loop
        with self._changed:
            self._closing = True
        if loop is not None and loop.is_running():
            stream.stop()
            # alpaca-py looks at its stop flag only between 5 s receive timeouts: closing the
            # socket ends the receive at once.
            closing = asyncio.run_coroutine_threadsafe(stream.close(), loop)
            with contextlib.suppress(Exception):
                closing.result(timeout=CLOSE_TIMEOUT_S)
        thread.join(timeout=CLOSE_TIMEOUT_S)
        self._stream = self._thread = None
        log.info("trade_updates_stopped", **asdict(self.stats))

    def __enter__(self) -> AlpacaTradeUpdates:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def wait_connected(self, timeout_s: float) -> bool:
        """Whether the stream is connected, waiting at most ``timeout_s`` for it."""
        with self._changed:
            return self._changed.wait_for(lambda: self._connected, timeout_s)

    # -- OrderWatch --------------------------------------------------------------------------

    def expect(self, client_order_id: str) -> None:
        """Keep this order's events from now on; call it before the submit."""
        with self._changed:
            synced = self._generation if self._connected else -1
            self._entries.setdefault(client_order_id, _Entry(None, synced))

    def forget(self, client_order_id: str) -> None:
        with self._changed:
            self._entries.pop(client_order_id, None)

    def until_terminal(self, order: BrokerOrder, limit_s: float) -> BrokerOrder:
        return self._wait(order, limit_s)

    def after_cancel(self, order: BrokerOrder, limit_s: float) -> BrokerOrder:
        return self._wait(order, limit_s)

    # -- internals ---------------------------------------------------------------------------

    def _wait(self, order: BrokerOrder, limit_s: float) -> BrokerOrder:
        """Wait on events; read over REST when the stream cannot be trusted for this order."""
        deadline = time.monotonic() + limit_s
        entry = self._entry(order)
        while True:
            with self._changed:
                tracked = entry.tracked
                assert tracked is not None  # noqa: S101 - _entry sets it
                now = time.monotonic()
                if tracked.is_terminal or now >= deadline:
                    return tracked.order
                reason = self._read_reason(entry, now)
                if reason is None:
                    quiet_for = self._fallback_poll_s - (now - entry.heard_at)
                    self._changed.wait(min(deadline - now, quiet_for))
                    continue
                generation, connected = self._generation, self._connected
            self._read(entry, tracked.order.broker_order_id, reason, generation, connected)
            if not connected:
                with self._changed:
                    self._changed.wait(min(self._poll_interval_s, deadline - time.monotonic()))

    def _entry(self, order: BrokerOrder) -> _Entry:
        with self._changed:
            entry = self._entries.setdefault(order.client_order_id, _Entry(None, -1))
            if entry.tracked is None:
                entry.tracked = TrackedOrder(order)
            return entry

    def _read_reason(self, entry: _Entry, now: float) -> str | None:
        if not self._connected:
            return "poll_disconnected"
        if entry.synced != self._generation:
            return "catch_up"
        if now - entry.heard_at >= self._fallback_poll_s:
            return "poll_quiet"
        return None

    def _read(
        self, entry: _Entry, broker_order_id: str, reason: str, generation: int, connected: bool
    ) -> None:
        try:
            snapshot = self._broker.get_order(broker_order_id)
        except BrokerError as exc:
            log.warning("trade_updates_read_failed", order=broker_order_id, error=str(exc))
            snapshot = None
        with self._changed:
            if reason == "catch_up":
                self.stats.catch_up_reads += 1
            else:
                self.stats.fallback_reads += 1
            entry.heard_at = time.monotonic()
            if snapshot is not None and entry.tracked is not None:
                book = self.account_book
                if book is not None and snapshot.filled_qty > entry.tracked.order.filled_qty:
                    book.stale(f"fill_found_by_{reason}")
                entry.tracked.observe(snapshot, source=reason)
                if connected:
                    entry.synced = max(entry.synced, generation)

    def _on_connected(self) -> None:
        with self._changed:
            self._generation += 1
            self._connected = True
            self.stats.connections += 1
            if self.account_book is not None:
                self.account_book.connected(self._generation)
            self._changed.notify_all()
            log.info(
                "trade_updates_connected", generation=self._generation, waiting=len(self._entries)
            )

    def _on_closed(self) -> None:
        with self._changed:
            if self._connected and not self._closing:
                log.warning("trade_updates_disconnected", generation=self._generation)
            self._connected = False
            if self.account_book is not None:
                self.account_book.disconnected()
            self._changed.notify_all()

    async def _on_message(self, message: Any) -> None:
        """One trade_updates message, from the stream's event loop; never raises."""
        try:
            self._apply(message["data"])
        except Exception:
            log.exception("trade_update_unreadable")

    def _apply(self, data: Mapping[str, Any]) -> None:
        event = str(data.get("event", ""))
        trigger = TRIGGER_OF_EVENT.get(event)
        order = parse_order(data["order"])
        with self._changed:
            self.stats.events += 1
            if event in FILL_EVENTS and not self._first_execution(data.get("execution_id")):
                self.stats.duplicate_fills += 1
                log.info("trade_update_duplicate_fill", execution_id=data.get("execution_id"))
                return
            if event in FILL_EVENTS and self.account_book is not None:
                _book_fill(self.account_book, data, order)
            entry = self._entries.get(order.client_order_id)
            if entry is None or trigger is None:
                return
            if entry.tracked is None:
                entry.tracked = TrackedOrder(order)
            update = OrderUpdate(trigger, order.filled_qty, order.filled_avg_price)
            entry.tracked.apply_event(order, update)
            entry.heard_at = time.monotonic()
            self._changed.notify_all()

    def _first_execution(self, execution_id: object) -> bool:
        """Whether this fill's execution_id is new; remembers the last ``SEEN_EXECUTIONS``."""
        if not isinstance(execution_id, str) or not execution_id:
            return True
        if execution_id in self._executions:
            return False
        self._executions[execution_id] = None
        if len(self._executions) > SEEN_EXECUTIONS:
            self._executions.popitem(last=False)
        return True


def trade_updates_for(config: AlpacaConfig, broker: Broker) -> AlpacaTradeUpdates:
    """The trade-updates stream, not yet started, keeping the account book for
    ``config.account_book_s`` (none when it is 0)."""
    book = StreamAccountBook(broker, config.account_book_s) if config.account_book_s else None
    return AlpacaTradeUpdates(config, broker, account_book=book)


def _book_fill(book: StreamAccountBook, data: Mapping[str, Any], order: BrokerOrder) -> None:
    """Hand a fill to the account book; one it cannot read makes the book stale."""
    try:
        fill = parse_fill(data, order)
    except BrokerError as exc:
        log.warning("trade_update_fill_unreadable", error=str(exc))
        book.stale("unreadable_fill")
        return
    book.filled(fill)
