"""The operational endpoints over plain HTTP: ``/metrics``, ``/healthz`` and ``/readyz``.

    GET /metrics  200  Prometheus text exposition of the job's registry
    GET /healthz  200 while the liveness callback returns True, else 503
    GET /readyz   200 when every readiness condition is met, else 503 with the unmet ones:
                  {"conditions": {"broker_reachable": false, ...}, "ready": false,
                   "unmet": ["broker_reachable"]}

A standard-library ThreadingHTTPServer on a daemon thread. No request is logged; a readiness
condition that changes is logged once.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = structlog.get_logger(__name__)

PARTITIONS_ASSIGNED = "partitions_assigned"
BROKER_REACHABLE = "broker_reachable"
RECONCILED = "reconciled"
READY_CONDITIONS = (PARTITIONS_ASSIGNED, BROKER_REACHABLE, RECONCILED)

JSON_CONTENT_TYPE = "application/json"
SHUTDOWN_POLL_S = 0.1
REQUEST_TIMEOUT_S = 10.0
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - a lookup

Liveness = Callable[[], bool]
"""True while the process loop is alive; called on every /healthz request, so it must be fast."""


class Readiness:
    """Named conditions, all unmet at first; ready when every one is met. Thread-safe.

    The job sets and clears them (``set``, ``clear``, ``mark``); an unknown name raises
    ValueError. Each change is logged once as ``readiness_changed``; a repeat is silent.
    """

    def __init__(self, conditions: Iterable[str] = READY_CONDITIONS) -> None:
        self._met = dict.fromkeys(conditions, False)
        if not self._met:
            raise ValueError("readiness needs at least one condition")
        self._lock = threading.Lock()

    def set(self, name: str) -> None:
        self.mark(name, met=True)

    def clear(self, name: str) -> None:
        self.mark(name, met=False)

    def mark(self, name: str, *, met: bool) -> None:
        with self._lock:
            if name not in self._met:
                raise ValueError(f"unknown readiness condition {name!r}")
            if self._met[name] == met:
                return
            self._met[name] = met
            unmet = self._unmet()
        log.info("readiness_changed", condition=name, met=met, ready=not unmet, unmet=unmet)

    def is_ready(self) -> bool:
        with self._lock:
            return not self._unmet()

    def unmet(self) -> list[str]:
        """The conditions not met, in the order they were declared."""
        with self._lock:
            return self._unmet()

    def snapshot(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._met)

    def _unmet(self) -> list[str]:
        return [name for name, met in self._met.items() if not met]


class Heartbeat:
    """A liveness callback: alive while ``beat()`` was called within ``max_silence_s``.

    The loop that must stay alive beats on each pass; a loop that hangs goes silent and
    /healthz turns 503. It is alive from construction until the first silence.
    """

    def __init__(
        self, max_silence_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_silence_s = max_silence_s
        self._clock = clock
        self._last_beat = clock()

    def beat(self) -> None:
        self._last_beat = self._clock()

    def __call__(self) -> bool:
        return self._clock() - self._last_beat <= self._max_silence_s


class _Server(ThreadingHTTPServer):
    """Holds what the handlers serve; binds without the reverse DNS lookup of HTTPServer."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        registry: CollectorRegistry,
        readiness: Readiness,
        liveness: Liveness,
    ) -> None:
        self.registry = registry
        self.readiness = readiness
        self.liveness = liveness
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn, which can stall on a slow resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A probe that hangs up early is routine; never print a traceback per request.
        log.debug("health_request_failed", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_S  # a client that connects and sends nothing frees its thread

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._send(HTTPStatus.OK, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            alive = _is_alive(self.server.liveness)
            body: dict[str, Any] = {"status": "alive" if alive else "not_alive"}
            self._send_json(HTTPStatus.OK if alive else HTTPStatus.SERVICE_UNAVAILABLE, body)
        elif path == "/readyz":
            conditions = self.server.readiness.snapshot()
            unmet = [name for name, met in conditions.items() if not met]
            body = {"ready": not unmet, "unmet": unmet, "conditions": conditions}
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE if unmet else HTTPStatus.OK, body)
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: probes and scrapes would otherwise write a line to stderr each."""

    def _send_json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body, sort_keys=True).encode(), JSON_CONTENT_TYPE)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


def _is_alive(liveness: Liveness) -> bool:
    """A liveness callback that raises counts as not alive."""
    try:
        return bool(liveness())
    except Exception:  # a broken callback must fail the probe, not the server
        return False


class HealthServer:
    """Serves /metrics, /healthz and /readyz on ``host:port`` (``port=0``: any free port).

    The constructor stores configuration; ``start`` binds and serves on a daemon thread;
    ``stop`` shuts down and releases the port. Also a context manager.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: Readiness,
        liveness: Liveness,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._registry = registry
        self._readiness = readiness
        self._liveness = liveness
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port; with ``port=0``, the one the system chose."""
        if self._server is None:
            raise RuntimeError("the health server is not started")
        return self._server.server_port

    @property
    def url(self) -> str:
        """The base URL, for example ``http://127.0.0.1:8080``; all-interfaces maps to loopback."""
        host = _ANY_ADDRESS.get(self._host, self._host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the health server is already started")
        server = _Server((self._host, self._port), self._registry, self._readiness, self._liveness)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name="health-http",
            daemon=True,
        )
        self._thread.start()
        log.info("health_server_started", host=self._host, port=server.server_port)

    def stop(self) -> None:
        """Stop serving and close the socket; a no-op when not started."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        thread.join()
        self._server = self._thread = None
        log.info("health_server_stopped", host=self._host, port=server.server_port)

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
