"""The fake Alpaca server that alpaca-py's real clients talk to: HTTP on one port, the trading
websocket on another.

Give ``base_url`` to ``TradingClient`` and ``StockHistoricalDataClient`` as ``url_override``;
both append ``/v2/...`` (see ``api.py`` for the endpoints and ``/_fake`` scripting). A ``/v2``
request passes, in order: the request counter, auth (``APCA-API-KEY-ID`` and
``APCA-API-SECRET-KEY`` must match, else 401), the order body recorder, the per-key minute
rate limit (429 past it), the armed faults, then its route. Every ``/v2`` answer carries
``X-Ratelimit-Limit``, ``-Remaining`` and ``-Reset``. Give ``stream_url`` to ``TradingStream``
as ``url_override`` for the order events (``trade_stream.py``); while the server runs, a
ticker settles the engine every 10 ms so that delayed orders fill with no request. The secret
is never logged.
"""

from __future__ import annotations

import argparse
import hmac
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog

from rebalance_stream.brokers.fake_alpaca.api import (
    AdminApi,
    Handler,
    Reply,
    Request,
    Router,
    TradingApi,
    json_reply,
)
from rebalance_stream.brokers.fake_alpaca.config import FakeAlpacaConfig
from rebalance_stream.brokers.fake_alpaca.engine import Engine
from rebalance_stream.brokers.fake_alpaca.faults import (
    AFTER_PROCESSING,
    Fault,
    FaultKind,
    FaultPlan,
    RateLimiter,
    RateState,
)
from rebalance_stream.brokers.fake_alpaca.http_server import HttpServer, RequestHandler
from rebalance_stream.brokers.fake_alpaca.market_data import MarketDataApi
from rebalance_stream.brokers.fake_alpaca.model import FillBehaviour
from rebalance_stream.brokers.fake_alpaca.trade_stream import (
    StreamCondition,
    StreamCounters,
    TradeStreamServer,
)
from rebalance_stream.brokers.paper_account import PaperAccount

__all__ = ["FakeAlpacaConfig", "FakeAlpacaServer", "main", "serve"]

log = structlog.get_logger(__name__)

KEY_ID_VARIABLE = "APCA_API_KEY_ID"
SECRET_KEY_VARIABLE = "APCA_API_SECRET_KEY"  # noqa: S105 - the variable's name, not a secret
DEFAULT_PORT = 8765
DEFAULT_STREAM_PORT = 8766
ORDERS_TEMPLATE = "/v2/orders"
_MS_PER_S = 1000
_POLL_INTERVAL_S = 0.02  # how soon stop() returns; http.server's default is 0.5 s
_SETTLE_INTERVAL_S = 0.01
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


class FakeAlpacaServer:
    """A fake Alpaca venue on ``host:port`` (port 0 picks a free one), run on its own threads.

    The constructor stores configuration; ``start()`` binds and serves (or use ``with``). The
    trading websocket listens on ``host`` at a free port.
    """

    def __init__(
        self,
        config: FakeAlpacaConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        stream_port: int = 0,
    ) -> None:
        self.config = config or FakeAlpacaConfig()
        self._address = (host, port)
        self._stream_port = stream_port
        self._now = self.config.clock or _utc_now
        self.engine = Engine(self.config.account, self._now)
        self.faults = FaultPlan()
        self._limiter = RateLimiter(self.config.rate_limit_per_min, self._now_s)
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._order_posts: list[tuple[str, int]] = []
        self.stream = TradeStreamServer(self.config.api_key_id, self.config.secret_key)
        self.engine.add_listener(self.stream.publish)
        admin = AdminApi(self.engine, self.faults, self.stats, self.stream)
        market_data = MarketDataApi(self.engine)
        self._router = Router(
            TradingApi(self.engine).routes() + market_data.routes() + admin.routes()
        )
        self._httpd: HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._ticking = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Serve HTTP and the trading websocket, and start the settle ticker, on daemon threads;
        idempotent."""
        if self._httpd is not None:
            return
        self._httpd = HttpServer(self._address, RequestHandler)
        self._httpd.app = self.handle
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_S},
            name="fake-alpaca",
            daemon=True,
        )
        self._thread.start()
        self.stream.start(self._address[0], self._stream_port)
        self._ticking = threading.Event()
        self._ticker = threading.Thread(
            target=_settle_every,
            args=(self.engine, self._ticking),
            name="fake-alpaca-settle",
            daemon=True,
        )
        self._ticker.start()
        log.info(
            "fake_alpaca_started",
            base_url=self.base_url,
            stream_url=self.stream_url,
            api_key_id=self.config.api_key_id,
        )

    def stop(self) -> None:
        """Stop the ticker, the websocket and the HTTP server, and close the sockets; idempotent."""
        if self._httpd is None:
            return
        self._ticking.set()
        if self._ticker is not None:
            self._ticker.join()
        self.stream.stop()
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

    @property
    def stream_url(self) -> str:
        """The trading websocket, ``ws://host:port/stream``; raises RuntimeError before start."""
        return self.stream.url

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

    def drop_stream_connections(self) -> int:
        """Cut every trading websocket connection (clients reconnect); the number cut."""
        return self.stream.drop_connections()

    def stream_outage(self, on: bool) -> None:
        """While on, the websocket cuts and refuses connections; events meanwhile are lost."""
        self.stream.set_outage(on)

    def duplicate_next_fills(self, n: int = 1) -> None:
        """Deliver each of the next ``n`` fill and partial_fill events twice."""
        self.stream.duplicate_next_fills(n)

    def stream_counters(self) -> StreamCounters:
        """Connections authorized, subscriptions, trade_updates sent, refusals."""
        return self.stream.counters()

    def wait_for_stream(self, condition: StreamCondition, timeout: float = 10.0) -> bool:
        """Wait until ``condition(stream_counters())`` holds, e.g. ``lambda c: c.subscriptions
        >= 2``; False when ``timeout`` seconds pass first."""
        return self.stream.wait_for(condition, timeout)

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
        return {
            "request_counts": counts,
            "order_requests": self.order_requests(),
            "stream": self.stream_counters().to_json(),
        }

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


def _settle_every(engine: Engine, stop: threading.Event) -> None:
    """Settle the engine every _SETTLE_INTERVAL_S until ``stop`` is set; a failure ends it."""
    while not stop.wait(_SETTLE_INTERVAL_S):
        try:
            engine.settle()
        except Exception as exc:
            log.error("fake_alpaca_settle_ticker_failed", error=repr(exc))
            return


def _route(handler: Handler | None, request: Request, args: Mapping[str, str]) -> Reply:
    if handler is None:
        return json_reply(404, {"code": 40410000, "message": "endpoint not found"})
    return handler(request, args)


def _with_rate(reply: Reply, rate: RateState) -> Reply:
    return Reply(reply.status, reply.body, reply.content_type, {**reply.headers, **rate.headers()})


def serve(argv: Sequence[str] | None = None, stop: threading.Event | None = None) -> int:
    """Run a fake Alpaca server until SIGTERM, Ctrl-C or ``stop`` is set; prints its URLs.

    Options: ``--host``, ``--port`` and ``--stream-port`` (the trade_updates websocket; 0
    picks a free one), ``--account FILE`` (the paper account
    format; default the built-in sample), ``--rate-limit``. The key pair comes from
    APCA_API_KEY_ID and APCA_API_SECRET_KEY (never the command line), else the defaults.
    """
    parser = argparse.ArgumentParser(
        prog="rebalance-stream fake-alpaca", description="A fake Alpaca API for tests and demos."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--stream-port", type=int, default=DEFAULT_STREAM_PORT)
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
    with FakeAlpacaServer(config, args.host, args.port, args.stream_port) as server:
        print(f"fake alpaca listening on {server.base_url}", flush=True)
        print(f"fake alpaca trade stream on {server.stream_url}", flush=True)
        with suppress(KeyboardInterrupt):
            stopped.wait()
    return 0


def main() -> None:
    raise SystemExit(serve())
