"""The fake Alpaca server's HTTP layer: requests in as ``Request`` values, ``Reply`` values out.

An answer that raises becomes a JSON 500 and one log line without a traceback (a renderer that
shows locals would print the request's secret). A ``disconnect`` reply closes the socket
without answering.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import structlog

from rebalance_stream.brokers.fake_alpaca.api import Reply, Request, json_reply

log = structlog.get_logger(__name__)


class HttpServer(ThreadingHTTPServer):
    """A thread per connection; ``app`` answers each request."""

    daemon_threads = True
    # socketserver's default backlog is 5: a burst of connections (one per request, HTTP/1.0)
    # from concurrent orders overflowed it and the kernel reset some of them.
    request_queue_size = 128
    app: Callable[[Request], Reply]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (killed, timed out) is normal here; report anything else."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class RequestHandler(BaseHTTPRequestHandler):
    """Reads one request, asks the server's app, writes its reply (HTTP/1.0, then close)."""

    server: HttpServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's line per request on stderr."""

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = self.headers.get("Content-Length", "0")
        body = self.rfile.read(int(length)) if length.isdigit() else b""
        if length.isdigit() and len(body) < int(length):
            # The client went away mid-body (a killed process): as a real server, answer nothing.
            self.close_connection = True
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            reply = self.server.app(Request(self.command, url.path, params, headers, body))
        except Exception as exc:
            # No traceback: a renderer that shows locals would print the request's secret.
            log.error("fake_alpaca_internal_error", path=url.path, error=repr(exc))
            reply = json_reply(500, {"code": 50010000, "message": "fake alpaca internal error"})
        if reply.disconnect:
            self.close_connection = True
            with suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
