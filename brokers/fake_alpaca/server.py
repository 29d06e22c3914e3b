"""The fake Alpaca HTTP server that alpaca-py's real clients talk to, on one port.

Give ``base_url`` to ``TradingClient`` and ``StockHistoricalDataClient`` as ``url_override``;
both append ``/v2/...`` (see ``api.py`` for the endpoints and ``/_fake`` scripting). A ``/v2``
request passes, in order: the request counter, auth (``APCA-API-KEY-ID`` and
``APCA-API-SECRET-KEY`` must match, else 401), the order body recorder, the per-key minute
rate limit (429 past it), the armed faults, then its route. Every ``/v2`` answer carries
``X-Ratelimit-Limit``, ``-Remaining`` and ``-Reset``. The secret is never logged.
"""

from __future__ import annotations

import argparse
import hmac
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import structlog
from pydantic import BaseModel

from rebalance_stream.brokers.fake_alpaca.api import (
    AdminApi,
    Handler,
    Reply,
    Request,
    Router,
    TradingApi,
    json_reply,
)
from rebalance_stream.brokers.fake_alpaca.engine import Engine
from rebalance_stream.brokers.fake_alpaca.faults import (
    AFTER_PROCESSING,
    Fault,
    FaultKind,
    FaultPlan,
    RateLimiter,
    RateState,
)
from rebalance_stream.brokers.fake_alpaca.model import FillBehaviour, Quote, VenueAccount
from rebalance_stream.brokers.fake_alpaca.wire import parse_behaviour
from rebalance_stream.brokers.paper_account import DEFAULT_FILL_KEY, PaperAccount

log = structlog.get_logger(__name__)

KEY_ID_VARIABLE = "APCA_API_KEY_ID"
SECRET_KEY_VARIABLE = "APCA_API_SECRET_KEY"  # noqa: S105 - the variable's name, not a secret
DEFAULT_PORT = 8765
ORDERS_TEMPLATE = "/v2/orders"
_MS_PER_S = 1000
_POLL_INTERVAL_S = 0.02  # how soon stop() returns; http.server's default is 0.5 s
_UNAUTHORIZED = {"code": 40110000, "message": "request is not authorized"}
_RATE_LIMITED = {"code": 42910000, "message": "rate limit exceeded"}
_SERVER_ERROR = {"code": 50010000, "message": "internal server error occurred"}
# What Alpaca's nginx answers when its upstream times out: HTML, not JSON.
_GATEWAY_TIMEOUT = (
    b"<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    b"<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n"
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FakeAlpacaConfig:
    """The venue's account, the key pair it accepts, its rate limit and base latency."""

    account: VenueAccount = field(default_factory=VenueAccount)
    api_key_id: str = "fake-key-id"
    secret_key: str = field(default="fake-secret-key", repr=False)
    rate_limit_per_min: int = 200
    latency_ms: int = 0
    clock: Callable[[], datetime] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_paper_account(cls, paper: PaperAccount, **changes: Any) -> FakeAlpacaConfig:
        """A config over a paper account file: each price is both bid and ask."""
        fills: dict[str, FillBehaviour] = {
            symbol: parse_behaviour(_json_of(model))
            for symbol, model in paper.fill.items()
            if symbol != DEFAULT_FILL_KEY
        }
        account = VenueAccount(
            cash=paper.cash,
            positions=dict(paper.positions),
            quotes={symbol: Quote(price, price) for symbol, price in paper.prices.items()},
            fractionable=paper.fractionable,
            market_open=paper.market == "open",
            fills=fills,
            default_fill=parse_behaviour(_json_of(paper.fill.get(DEFAULT_FILL_KEY, "immediate"))),
        )
        return cls(account=account, latency_ms=paper.latency_ms, **changes)


def _json_of(model: object) -> object:
    return model.model_dump(mode="json") if isinstance(model, BaseModel) else model


class FakeAlpacaServer:
    """A fake Alpaca venue on ``host:port`` (port 0 picks a free one), run on its own threads.

    The constructor stores configuration; ``start()`` binds and serves (or use ``with``).
    """

    def __init__(
        self, config: FakeAlpacaConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or FakeAlpacaConfig()
        self._address = (host, port)
        self._now = self.config.clock or _utc_now
        self.engine = Engine(self.config.account, self._now)
        self.faults = FaultPlan()
        self._limiter = RateLimiter(self.config.rate_limit_per_min, self._now_s)
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._order_posts: list[tuple[str, int]] = []
        trading = TradingApi(self.engine)
        self._router = Router(
            trading.routes() + AdminApi(self.engine, self.faults, self.stats).routes()
        )
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and serve on a daemon thread; idempotent."""
        if self._httpd is not None:
            return
        self._httpd = _HttpServer(self._address, _Handler)
        self._httpd.app = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_S},
            name="fake-alpaca",
            daemon=True,
        )
        self._thread.start()
        log.info("fake_alpaca_started", base_url=self.base_url, api_key_id=self.config.api_key_id)

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd, self._thread = None, None
        log.info("fake_alpaca_stopped")

    def __enter__(self) -> FakeAlpacaServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://host:port``, without ``/v2``; raises RuntimeError before ``start()``."""
        if self._httpd is None:
            raise RuntimeError("FakeAlpacaServer is not started; call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- scripting and observing -------------------------------------------------------------

    def inject_fault(self, kind: FaultKind | str, **options: Any) -> Fault:
        """Arm a fault: ``inject_fault("http_504_after_accept", method="POST", path=...)``.

        Options are Fault's fields: method, path, count, latency_ms, reset_in_s.
        """
        fault = Fault(FaultKind(kind), **options)
        self.faults.arm(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    def set_quote(self, symbol: str, bid: Decimal | str, ask: Decimal | str) -> None:
        """Set a symbol's quote and fill the resting orders it makes marketable."""
        self.engine.set_quote(symbol, Decimal(bid), Decimal(ask))

    def set_fill(self, symbol: str, behaviour: FillBehaviour) -> None:
        self.engine.set_fill(symbol, behaviour)

    def set_market_open(self, is_open: bool) -> None:
        self.engine.set_market_open(is_open)

    def request_counts(self) -> dict[tuple[str, str], int]:
        """Requests per (method, path template), e.g. ``("GET", "/v2/orders/{order_id}")``."""
        with self._lock:
            return dict(self._counts)

    def order_requests(self) -> list[str]:
        """The raw body of every authorized POST /v2/orders, in the order answered."""
        return [body for body, _ in self.order_posts()]

    def order_posts(self) -> list[tuple[str, int]]:
        """(raw body, HTTP status answered) of every authorized POST /v2/orders; status 0 is a
        cut connection."""
        with self._lock:
            return list(self._order_posts)

    def stats(self) -> dict[str, object]:
        counts = [
            {"method": method, "path": path, "count": count}
            for (method, path), count in sorted(self.request_counts().items())
        ]
        return {"request_counts": counts, "order_requests": self.order_requests()}

    # -- request pipeline --------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        """Answer one request; the HTTP handler calls it on the connection's thread."""
        template, handler, args = self._router.match(request.method, request.path)
        if template.startswith("/_fake/"):
            return self._admin(request, handler, args)
        with self._lock:
            self._counts[(request.method, template)] += 1
        key = request.headers.get("apca-api-key-id", "")
        if not self._authorized(request):
            return _with_rate(json_reply(401, _UNAUTHORIZED), self._limiter.peek(key))
        reply = self._answer(request, template, handler, args)
        if request.method == "POST" and template == ORDERS_TEMPLATE:
            with self._lock:
                self._order_posts.append((request.body.decode("utf-8", "replace"), reply.status))
        return reply

    def _answer(
        self, request: Request, template: str, handler: Handler | None, args: Mapping[str, str]
    ) -> Reply:
        """An authorized API request's reply: the rate limit, then armed faults, then the route."""
        key = request.headers.get("apca-api-key-id", "")
        rate = self._limiter.hit(key)
        if not rate.allowed:
            return _with_rate(json_reply(429, _RATE_LIMITED), rate)
        taken = self.faults.take(request.method, request.path, template)
        latency_ms = self.config.latency_ms + taken.latency_ms
        if latency_ms:
            time.sleep(latency_ms / _MS_PER_S)
        fault = taken.fault
        if fault is None:
            return _with_rate(_route(handler, request, args), rate)
        log.info("fake_alpaca_fault", kind=fault.kind.value, method=request.method, path=template)
        if fault.kind in AFTER_PROCESSING:
            _route(handler, request, args)
        return self._fault_reply(fault, rate)

    def _admin(self, request: Request, handler: Handler | None, args: Mapping[str, str]) -> Reply:
        if not self._authorized(request):
            return json_reply(401, _UNAUTHORIZED)
        return _route(handler, request, args)

    def _fault_reply(self, fault: Fault, rate: RateState) -> Reply:
        if fault.kind in (FaultKind.DISCONNECT, FaultKind.DISCONNECT_AFTER_ACCEPT):
            return Reply(0, disconnect=True)
        if fault.kind is FaultKind.HTTP_429:
            reset = int(self._now_s()) + fault.reset_in_s
            return _with_rate(json_reply(429, _RATE_LIMITED), RateState(rate.limit, 0, reset))
        if fault.kind is FaultKind.HTTP_500:
            return _with_rate(json_reply(500, _SERVER_ERROR), rate)
        return _with_rate(Reply(504, _GATEWAY_TIMEOUT, "text/html"), rate)

    def _authorized(self, request: Request) -> bool:
        key = request.headers.get("apca-api-key-id", "")
        secret = request.headers.get("apca-api-secret-key", "")
        key_ok = hmac.compare_digest(key.encode(), self.config.api_key_id.encode())
        return hmac.compare_digest(secret.encode(), self.config.secret_key.encode()) and key_ok

    def _now_s(self) -> float:
        return self._now().timestamp()


def _route(handler: Handler | None, request: Request, args: Mapping[str, str]) -> Reply:
    if handler is None:
        return json_reply(404, {"code": 40410000, "message": "endpoint not found"})
    return handler(request, args)


def _with_rate(reply: Reply, rate: RateState) -> Reply:
    return Reply(reply.status, reply.body, reply.content_type, {**reply.headers, **rate.headers()})


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    app: FakeAlpacaServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (killed, timed out) is normal here; report anything else."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, asks the FakeAlpacaServer, writes its reply (HTTP/1.0, then close)."""

    server: _HttpServer

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
        headers = {name.lower(): value for name, value in self.headers.items()}
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            reply = self.server.app.handle(Request(self.command, url.path, params, headers, body))
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


def serve(argv: Sequence[str] | None = None, stop: threading.Event | None = None) -> int:
    """Run a fake Alpaca server until SIGTERM, Ctrl-C or ``stop`` is set; prints its base URL.

    Options: ``--host``, ``--port`` (0 picks a free one), ``--account FILE`` (the paper account
    format; default the built-in sample), ``--rate-limit``. The key pair comes from
    APCA_API_KEY_ID and APCA_API_SECRET_KEY (never the command line), else the defaults.
    """
    parser = argparse.ArgumentParser(
        prog="rebalance-stream fake-alpaca", description="A fake Alpaca API for tests and demos."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--account", type=Path, help="a paper account file (default: sample)")
    parser.add_argument("--rate-limit", type=int, default=200, help="requests a minute per key")
    args = parser.parse_args(argv)
    paper = PaperAccount.from_file(args.account) if args.account else PaperAccount.sample()
    keys = {
        name: os.environ[variable]
        for name, variable in (("api_key_id", KEY_ID_VARIABLE), ("secret_key", SECRET_KEY_VARIABLE))
        if os.environ.get(variable)
    }
    config = FakeAlpacaConfig.from_paper_account(paper, rate_limit_per_min=args.rate_limit, **keys)
    stopped = stop or threading.Event()
    with suppress(ValueError):  # signal handlers can be set only on the main thread
        signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
    with FakeAlpacaServer(config, args.host, args.port) as server:
        print(f"fake alpaca listening on {server.base_url}", flush=True)
        with suppress(KeyboardInterrupt):
            stopped.wait()
    return 0


def main() -> None:
    raise SystemExit(serve())
