"""Alpaca's trading websocket (the ``trade_updates`` stream) for the fake venue, on its own port.

The protocol alpaca-py's ``TradingStream`` speaks, at ``ws://host:port/stream``:

    -> {"action": "authenticate", "data": {"key_id": K, "secret_key": S}}
    <- {"stream": "authorization", "data": {"action": "authenticate", "status": "authorized"}}
       ("unauthorized" when the key pair does not match, and the connection is closed)
    -> {"action": "listen", "data": {"streams": ["trade_updates"]}}
    <- {"stream": "listening", "data": {"streams": ["trade_updates"]}}
    <- {"stream": "trade_updates", "data": {"event", "order", "timestamp", ...}}  (wire.py)

Messages go out as binary frames, as Alpaca's paper stream sends them. Each published event
goes to the connections listening when it was published, in order, from one sender thread;
nothing is replayed to a connection that was not (Alpaca keeps no backlog). Faults on demand:
``drop_connections`` cuts every connection without a close frame, ``set_outage(True)`` cuts
them and refuses new ones with HTTP 503 until turned off, ``duplicate_next_fills(n)`` sends
each of the next n fill events twice. The secret key is never logged.
"""

from __future__ import annotations

import hmac
import json
import queue
import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

import structlog
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from rebalance_stream.brokers.fake_alpaca.events import FILL_EVENTS, OrderEvent
from rebalance_stream.brokers.fake_alpaca.wire import dumps, trade_update_json

log = structlog.get_logger(__name__)

STREAM_PATH = "/stream"
TRADE_UPDATES = "trade_updates"
_AUTH_TIMEOUT_S = 10.0
_LOGGED_ACTION_CHARS = 40


@dataclass(frozen=True, slots=True)
class StreamCounters:
    """What the stream did so far; ``listening`` is the connections listening now."""

    connections: int  # authorized connections
    subscriptions: int  # connections that started listening to trade_updates
    listening: int
    trade_updates_sent: int  # trade_updates messages sent, duplicates included
    refused: int  # unauthorized connections, and connections refused during an outage

    def to_json(self) -> dict[str, int]:
        return asdict(self)


StreamCondition = Callable[[StreamCounters], bool]


class _Subscriber:
    """An authorized connection; ``send_lock`` orders its listening reply and its events."""

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection
        self.peer = _peer(connection)
        self.send_lock = threading.Lock()
        self.listening = False
        self.subscribed = False
        self.cut = False


@dataclass(frozen=True, slots=True)
class _Delivery:
    """An event for the connections listening when it was published, each sent ``copies`` times."""

    event: OrderEvent
    subscribers: tuple[_Subscriber, ...]
    copies: int


class TradeStreamServer:
    """The trade_updates websocket for one key pair; ``publish`` is the engine's listener."""

    def __init__(self, api_key_id: str, secret_key: str) -> None:
        self._api_key_id = api_key_id
        self._secret_key = secret_key
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._subscribers: set[_Subscriber] = set()
        self._outage = False
        self._duplicates = 0
        self._connections = self._subscriptions = self._sent = self._refused = 0
        self._outbox: queue.Queue[_Delivery | None] = queue.Queue()
        self._server: Server | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, host: str, port: int = 0) -> None:
        """Listen on ``host:port`` (0: a free port), and start the sender; idempotent."""
        if self._server is not None:
            return
        self._outbox = queue.Queue()
        server = serve(self._serve_connection, host, port, process_request=self._admit_request)
        self._threads = [
            threading.Thread(target=server.serve_forever, name="fake-alpaca-stream", daemon=True),
            threading.Thread(
                target=self._send_loop,
                args=(self._outbox,),
                name="fake-alpaca-stream-sender",
                daemon=True,
            ),
        ]
        self._server = server
        for thread in self._threads:
            thread.start()
        log.info("fake_alpaca_stream_started", url=self.url)

    def stop(self) -> None:
        """Close every connection and the port, and stop the sender; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        self._outbox.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []
        with self._lock:
            self._subscribers.clear()
        log.info("fake_alpaca_stream_stopped")

    @property
    def url(self) -> str:
        """``ws://host:port/stream``; raises RuntimeError before ``start()``."""
        server = self._server
        if server is None:
            raise RuntimeError("the trade stream is not started; call start() first")
        host, port = server.socket.getsockname()[:2]
        return f"ws://{host!s}:{port}{STREAM_PATH}"

    def publish(self, event: OrderEvent) -> None:
        """Queue an event for the connections listening now; never blocks. Ignored while stopped
        or during an outage."""
        with self._lock:
            if self._server is None or self._outage:
                return
            copies = 1
            if event.event in FILL_EVENTS and self._duplicates > 0:
                self._duplicates -= 1
                copies = 2
            subscribers = tuple(s for s in self._subscribers if s.listening)
        self._outbox.put(_Delivery(event, subscribers, copies))

    # -- faults and counters -----------------------------------------------------------------

    def drop_connections(self) -> int:
        """Cut every open connection without a close frame; the number cut."""
        server = self._server
        with self._lock:
            subscribers, self._subscribers = self._subscribers, set()
        connections = {s.connection for s in subscribers}
        if server is not None:
            connections |= server.connections
        for subscriber in subscribers:
            subscriber.cut = True
        for connection in connections:
            _cut(connection)
        log.info("fake_alpaca_stream_connections_dropped", connections=len(connections))
        return len(connections)

    def set_outage(self, on: bool) -> None:
        """While on, cut every connection and refuse new ones; events meanwhile are lost."""
        with self._lock:
            self._outage = on
        if on:
            self.drop_connections()
        log.info("fake_alpaca_stream_outage", on=on)

    def duplicate_next_fills(self, count: int = 1) -> None:
        """Send each of the next ``count`` fill or partial_fill events twice (same execution
        id); replaces what is left of an earlier call. Events during an outage do not count."""
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._lock:
            self._duplicates = count
        log.info("fake_alpaca_stream_duplicates_armed", count=count)

    def counters(self) -> StreamCounters:
        with self._lock:
            return self._counters()

    def wait_for(self, condition: StreamCondition, timeout: float) -> bool:
        """Wait until ``condition(counters)`` holds; False when ``timeout`` seconds pass first."""
        with self._changed:
            return self._changed.wait_for(lambda: condition(self._counters()), timeout)

    def _counters(self) -> StreamCounters:
        listening = sum(1 for s in self._subscribers if s.listening)
        return StreamCounters(
            self._connections, self._subscriptions, listening, self._sent, self._refused
        )

    # -- connections -------------------------------------------------------------------------

    def _admit_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """The opening handshake: 404 off the stream path, 503 during an outage."""
        if urlsplit(request.path).path != STREAM_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        with self._changed:
            if not self._outage:
                return None
            self._refused += 1
            self._changed.notify_all()
        return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "stream outage\n")

    def _serve_connection(self, connection: ServerConnection) -> None:
        """Authenticate, then answer listen messages until the connection closes."""
        subscriber: _Subscriber | None = None
        try:
            subscriber = self._authenticate(connection)
            if subscriber is None:
                return
            for message in connection:
                self._on_message(subscriber, message)
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            if subscriber is not None:
                with self._changed:
                    self._subscribers.discard(subscriber)
                    self._changed.notify_all()
                log.info("fake_alpaca_stream_connection_closed", peer=subscriber.peer)

    def _authenticate(self, connection: ServerConnection) -> _Subscriber | None:
        """The authorized connection as a subscriber, or None when it was refused."""
        message = _parse(connection.recv(timeout=_AUTH_TIMEOUT_S))
        data = _object(message.get("data"))
        key_id, secret = data.get("key_id"), data.get("secret_key")
        authorized = message.get("action") == "authenticate" and self._keys_match(key_id, secret)
        subscriber = _Subscriber(connection)
        with self._changed:
            admitted = authorized and not self._outage
            if admitted:
                self._subscribers.add(subscriber)
                self._connections += 1
            else:
                self._refused += 1
            self._changed.notify_all()
        if not authorized:
            log.info(
                "fake_alpaca_stream_unauthorized", api_key_id=str(key_id), peer=_peer(connection)
            )
            connection.send(dumps(_authorization("unauthorized")))
            connection.close(CloseCode.POLICY_VIOLATION, "unauthorized")
            return None
        if not admitted:
            _cut(connection)
            return None
        connection.send(dumps(_authorization("authorized")))
        log.info("fake_alpaca_stream_authorized", api_key_id=str(key_id), peer=subscriber.peer)
        return subscriber

    def _keys_match(self, key_id: object, secret: object) -> bool:
        if not isinstance(key_id, str) or not isinstance(secret, str):
            return False
        key_ok = hmac.compare_digest(key_id.encode(), self._api_key_id.encode())
        return hmac.compare_digest(secret.encode(), self._secret_key.encode()) and key_ok

    def _on_message(self, subscriber: _Subscriber, raw: str | bytes) -> None:
        """A listen message sets the streams the connection gets; anything else is ignored."""
        message = _parse(raw)
        action = message.get("action")
        if action != "listen":
            log.info("fake_alpaca_stream_ignored", action=str(action)[:_LOGGED_ACTION_CHARS])
            return
        streams = _object(message.get("data")).get("streams")
        wanted = [TRADE_UPDATES] if isinstance(streams, list) and TRADE_UPDATES in streams else []
        with subscriber.send_lock:  # events published from now on go out after the reply
            with self._changed:
                subscriber.listening = bool(wanted)
                if wanted and not subscriber.subscribed:
                    subscriber.subscribed = True
                    self._subscriptions += 1
                self._changed.notify_all()
            subscriber.connection.send(dumps({"stream": "listening", "data": {"streams": wanted}}))
        log.info("fake_alpaca_stream_listening", streams=wanted, peer=subscriber.peer)

    # -- sending -----------------------------------------------------------------------------

    def _send_loop(self, outbox: queue.Queue[_Delivery | None]) -> None:
        while (delivery := outbox.get()) is not None:
            payload = dumps({"stream": TRADE_UPDATES, "data": trade_update_json(delivery.event)})
            for subscriber in delivery.subscribers:
                for _ in range(delivery.copies):
                    self._send(subscriber, payload)

    def _send(self, subscriber: _Subscriber, payload: bytes) -> None:
        """Send unless the connection was cut or stopped listening; counted before it goes out,
        so that a client that got it reads a counter that includes it."""
        with subscriber.send_lock:
            if subscriber.cut or not subscriber.listening:
                return
            self._count_sent(1)
            try:
                subscriber.connection.send(payload)
            except (ConnectionClosed, OSError):
                self._count_sent(-1)

    def _count_sent(self, change: int) -> None:
        with self._changed:
            self._sent += change
            self._changed.notify_all()


def _authorization(status: str) -> dict[str, object]:
    return {"stream": "authorization", "data": {"action": "authenticate", "status": status}}


def _cut(connection: ServerConnection) -> None:
    """Close the TCP connection at once, with no close frame (the client sees code 1006)."""
    with suppress(OSError):
        connection.socket.shutdown(socket.SHUT_RDWR)


def _parse(raw: str | bytes) -> dict[str, object]:
    """A client message as a JSON object; anything else is an empty one."""
    try:
        message = json.loads(raw)
    except ValueError:
        return {}
    return _object(message)


def _object(value: object) -> dict[str, object]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _peer(connection: ServerConnection) -> str:
    with suppress(OSError):
        return "{}:{}".format(*connection.remote_address[:2])
    return "unknown"
