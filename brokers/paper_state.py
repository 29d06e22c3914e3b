"""Cash, positions and orders of one paper account, in memory and optionally in SQLite.

Reads come from memory. With a SQLite path, every ``save`` is one transaction written before
memory changes, so a crash never leaves memory ahead of the file. Decimals are stored as plain
strings and timestamps as ISO-8601 UTC. One process at a time should own a state file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from rebalance_stream.brokers.protocol import TERMINAL_STATUSES, BrokerOrder, BrokerOrderStatus
from rebalance_stream.contracts.execution import OrderSide
from rebalance_stream.contracts.wire import format_timestamp, plain_decimal

SCHEMA_VERSION = "1"

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
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def load_order(text: str) -> BrokerOrder:
    """Decode what ``dump_order`` wrote."""
    doc: dict[str, Any] = json.loads(text)

    def dec(key: str) -> Decimal | None:
        return None if doc[key] is None else Decimal(doc[key])

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


def _seed(conn: sqlite3.Connection, cash: Decimal, positions: Mapping[str, Decimal]) -> None:
    with _transaction(conn):
        conn.execute(_UPSERT_META, ("schema_version", SCHEMA_VERSION))
        conn.execute(_UPSERT_META, ("cash", plain_decimal(cash)))
        conn.executemany(
            _UPSERT_POSITION, [(symbol, plain_decimal(qty)) for symbol, qty in positions.items()]
        )


class PaperState:
    """The ledger the paper broker reads and mutates. Not thread-safe: the broker serializes."""

    def __init__(
        self,
        conn: sqlite3.Connection | None,
        cash: Decimal,
        positions: Mapping[str, Decimal],
        orders: list[BrokerOrder],
    ) -> None:
        self._conn = conn
        self._cash = cash
        self._positions = {symbol: qty for symbol, qty in positions.items() if qty != 0}
        self._orders = {order.broker_order_id: order for order in orders}
        self._open = {o.broker_order_id: o for o in orders if o.status not in TERMINAL_STATUSES}

    @classmethod
    def open(
        cls, path: Path | None, *, cash: Decimal, positions: Mapping[str, Decimal]
    ) -> PaperState:
        """Load the state at ``path``, or seed it from ``cash`` and ``positions`` when new.

        Without a path the state lives in memory only.
        """
        seed = {symbol: qty for symbol, qty in positions.items() if qty != 0}
        if path is None:
            return cls(None, cash, seed, [])
        conn = _connect(path)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if "cash" not in meta:
                _seed(conn, cash, seed)
                return cls(conn, cash, seed, [])
            if meta.get("schema_version") != SCHEMA_VERSION:
                raise ValueError("unsupported paper state schema_version")
            stored = {s: Decimal(q) for s, q in conn.execute("SELECT symbol, qty FROM positions")}
            rows = conn.execute("SELECT body FROM orders ORDER BY seq").fetchall()
            return cls(conn, Decimal(meta["cash"]), stored, [load_order(b) for (b,) in rows])
        except BaseException:
            conn.close()
            raise

    @property
    def persistent(self) -> bool:
        return self._conn is not None

    @property
    def cash(self) -> Decimal:
        return self._cash

    def position(self, symbol: str) -> Decimal:
        """The quantity held, Decimal 0 when none."""
        return self._positions.get(symbol, Decimal(0))

    def order(self, broker_order_id: str) -> BrokerOrder | None:
        return self._orders.get(broker_order_id)

    def orders(self) -> list[BrokerOrder]:
        """Every order, oldest first."""
        return list(self._orders.values())

    def open_orders(self) -> list[BrokerOrder]:
        """Orders not yet terminal, oldest first."""
        return list(self._open.values())

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
        self._orders[order.broker_order_id] = order
        if order.status in TERMINAL_STATUSES:
            self._open.pop(order.broker_order_id, None)
        else:
            self._open[order.broker_order_id] = order

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
