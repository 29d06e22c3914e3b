"""Cash, positions and orders of one paper account, in memory and optionally in SQLite.

Reads come from memory. With a SQLite path, every ``save`` is one transaction written before
memory changes, so a crash never leaves memory ahead of the file. Decimals are stored as plain
strings and timestamps as ISO-8601 UTC. One process at a time should own a state file.

Each order is one JSON document, so a field added later (``order_type``, ``limit_price``) needs
no new schema: a document written before it was added reads as a market order.
"""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from rebalance_stream.brokers.protocol import (
    MARKET_ORDER,
    TERMINAL_STATUSES,
    BrokerOrder,
    BrokerOrderStatus,
)
from rebalance_stream.contracts.execution import OrderSide
from rebalance_stream.contracts.wire import format_timestamp, plain_decimal

SCHEMA_VERSION = "1"
DEFAULT_RETAINED_ORDERS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (symbol TEXT PRIMARY KEY, qty TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    broker_order_id TEXT NOT NULL UNIQUE,
    client_order_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
"""

_UPSERT_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_UPSERT_POSITION = (
    "INSERT INTO positions (symbol, qty) VALUES (?, ?) "
    "ON CONFLICT (symbol) DO UPDATE SET qty = excluded.qty"
)
_UPSERT_ORDER = (
    "INSERT INTO orders (broker_order_id, client_order_id, body) VALUES (?, ?, ?) "
    "ON CONFLICT (broker_order_id) DO UPDATE SET body = excluded.body"
)


def _optional_decimal(value: Decimal | None) -> str | None:
    return None if value is None else plain_decimal(value)


def _optional_timestamp(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def dump_order(order: BrokerOrder) -> str:
    """Encode an order as JSON: decimals as plain strings, timestamps ISO-8601 UTC."""
    document = {
        "broker_order_id": order.broker_order_id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "status": order.status.value,
        "qty": _optional_decimal(order.qty),
        "notional": _optional_decimal(order.notional),
        "filled_qty": plain_decimal(order.filled_qty),
        "filled_avg_price": _optional_decimal(order.filled_avg_price),
        "submitted_at": format_timestamp(order.submitted_at),
        "filled_at": _optional_timestamp(order.filled_at),
        "reject_reason": order.reject_reason,
        "order_type": order.order_type,
        "limit_price": _optional_decimal(order.limit_price),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def load_order(text: str) -> BrokerOrder:
    """Decode what ``dump_order`` wrote; a document without ``order_type`` is a market order."""
    doc: dict[str, Any] = json.loads(text)

    def dec(key: str) -> Decimal | None:
        return None if doc.get(key) is None else Decimal(doc[key])

    def ts(key: str) -> datetime | None:
        return None if doc[key] is None else datetime.fromisoformat(doc[key])

    submitted_at = ts("submitted_at")
    if submitted_at is None:
        raise ValueError("stored order without submitted_at")
    return BrokerOrder(
        broker_order_id=doc["broker_order_id"],
        client_order_id=doc["client_order_id"],
        symbol=doc["symbol"],
        side=OrderSide(doc["side"]),
        status=BrokerOrderStatus(doc["status"]),
        qty=dec("qty"),
        notional=dec("notional"),
        filled_qty=Decimal(doc["filled_qty"]),
        filled_avg_price=dec("filled_avg_price"),
        submitted_at=submitted_at,
        filled_at=ts("filled_at"),
        reject_reason=doc["reject_reason"],
        order_type=doc.get("order_type", MARKET_ORDER),
        limit_price=dec("limit_price"),
    )


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; _transaction() marks each one.
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_SCHEMA)
    return conn


def _recent_orders(conn: sqlite3.Connection, retained: int) -> list[BrokerOrder]:
    """The open orders and the last ``retained`` terminal ones, oldest first."""
    terminal = sorted(status.value for status in TERMINAL_STATUSES)
    marks = ", ".join("?" * len(terminal))
    status = "json_extract(body, '$.status')"
    open_rows = conn.execute(
        f"SELECT seq, body FROM orders WHERE {status} NOT IN ({marks})",  # noqa: S608 - marks
        terminal,
    ).fetchall()
    ended_rows = conn.execute(
        f"SELECT seq, body FROM orders WHERE {status} IN ({marks}) "  # noqa: S608 - marks
        "ORDER BY seq DESC LIMIT ?",
        [*terminal, retained],
    ).fetchall()
    return [load_order(body) for _, body in sorted(open_rows + ended_rows)]


def _seed(conn: sqlite3.Connection, cash: Decimal, positions: Mapping[str, Decimal]) -> None:
    with _transaction(conn):
        conn.execute(_UPSERT_META, ("schema_version", SCHEMA_VERSION))
        conn.execute(_UPSERT_META, ("cash", plain_decimal(cash)))
        conn.executemany(
            _UPSERT_POSITION, [(symbol, plain_decimal(qty)) for symbol, qty in positions.items()]
        )


class PaperState:
    """The ledger the paper broker reads and mutates. Not thread-safe: the broker serializes.

    Memory holds every open order and the last ``retained_orders`` terminal ones, so a
    long-running job does not grow with the orders it has placed. With a state file every order
    stays in SQLite, where lookups and listings find the older ones; without one the older
    terminal orders are forgotten (the job's ledger, not the paper venue, keeps orders unique).
    """

    def __init__(
        self,
        conn: sqlite3.Connection | None,
        cash: Decimal,
        positions: Mapping[str, Decimal],
        orders: list[BrokerOrder],
        retained_orders: int = DEFAULT_RETAINED_ORDERS,
    ) -> None:
        if retained_orders < 0:
            raise ValueError("retained_orders must be >= 0")
        self._conn = conn
        self._cash = cash
        self._positions = {symbol: qty for symbol, qty in positions.items() if qty != 0}
        self._retained = retained_orders
        # Every order in memory, in submission order; terminal ones also in the order they ended.
        self._orders: dict[str, BrokerOrder] = {}
        self._open: dict[str, BrokerOrder] = {}
        self._ended: deque[str] = deque()
        for order in orders:
            self._remember(order)

    @classmethod
    def open(
        cls,
        path: Path | None,
        *,
        cash: Decimal,
        positions: Mapping[str, Decimal],
        retained_orders: int = DEFAULT_RETAINED_ORDERS,
    ) -> PaperState:
        """Load the state at ``path``, or seed it from ``cash`` and ``positions`` when new.

        Without a path the state lives in memory only. Loading reads the open orders and the
        last ``retained_orders`` terminal ones into memory.
        """
        seed = {symbol: qty for symbol, qty in positions.items() if qty != 0}
        if path is None:
            return cls(None, cash, seed, [], retained_orders)
        conn = _connect(path)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if "cash" not in meta:
                _seed(conn, cash, seed)
                return cls(conn, cash, seed, [], retained_orders)
            if meta.get("schema_version") != SCHEMA_VERSION:
                raise ValueError("unsupported paper state schema_version")
            stored = {s: Decimal(q) for s, q in conn.execute("SELECT symbol, qty FROM positions")}
            orders = _recent_orders(conn, retained_orders)
            return cls(conn, Decimal(meta["cash"]), stored, orders, retained_orders)
        except BaseException:
            conn.close()
            raise

    @property
    def persistent(self) -> bool:
        return self._conn is not None

    @property
    def cash(self) -> Decimal:
        return self._cash

    def positions(self) -> dict[str, Decimal]:
        """Every position held, by symbol."""
        return dict(self._positions)

    def position(self, symbol: str) -> Decimal:
        """The quantity held, Decimal 0 when none."""
        return self._positions.get(symbol, Decimal(0))

    def order(self, broker_order_id: str) -> BrokerOrder | None:
        """The order from memory, else from the state file; None when neither has it."""
        order = self._orders.get(broker_order_id)
        if order is not None or self._conn is None:
            return order
        row = self._conn.execute(
            "SELECT body FROM orders WHERE broker_order_id = ?", (broker_order_id,)
        ).fetchone()
        return None if row is None else load_order(row[0])

    def orders(self) -> list[BrokerOrder]:
        """Every order, oldest first: all of the state file's, or those retained in memory."""
        if self._conn is None:
            return list(self._orders.values())
        rows = self._conn.execute("SELECT body FROM orders ORDER BY seq").fetchall()
        return [load_order(body) for (body,) in rows]

    def open_orders(self) -> list[BrokerOrder]:
        """Orders not yet terminal, oldest first."""
        return list(self._open.values())

    @property
    def orders_in_memory(self) -> int:
        return len(self._orders)

    def save(self, order: BrokerOrder, *, cash: Decimal, qty: Decimal) -> None:
        """In one transaction: store ``order``, set cash, set the order symbol's position to qty.

        A position of 0 is removed.
        """
        if self._conn is not None:
            self._persist(self._conn, order, cash, qty)
        self._cash = cash
        if qty == 0:
            self._positions.pop(order.symbol, None)
        else:
            self._positions[order.symbol] = qty
        self._remember(order)

    def _remember(self, order: BrokerOrder) -> None:
        """Keep ``order`` in memory; past ``retained_orders`` ended ones, forget the oldest."""
        order_id = order.broker_order_id
        known = self._orders.get(order_id)
        self._orders[order_id] = order
        if not order.is_terminal:
            self._open[order_id] = order
        elif known is None or not known.is_terminal:
            self._open.pop(order_id, None)
            self._ended.append(order_id)
        while len(self._ended) > self._retained:
            del self._orders[self._ended.popleft()]

    @staticmethod
    def _persist(conn: sqlite3.Connection, order: BrokerOrder, cash: Decimal, qty: Decimal) -> None:
        with _transaction(conn):
            conn.execute(_UPSERT_META, ("cash", plain_decimal(cash)))
            if qty == 0:
                conn.execute("DELETE FROM positions WHERE symbol = ?", (order.symbol,))
            else:
                conn.execute(_UPSERT_POSITION, (order.symbol, plain_decimal(qty)))
            conn.execute(
                _UPSERT_ORDER, (order.broker_order_id, order.client_order_id, dump_order(order))
            )

    def close(self) -> None:
        """Close the SQLite connection, if any. The state must not be used afterwards."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
