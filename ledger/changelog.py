"""The ledger as a compacted Kafka changelog: each entity is one key, its latest value wins.

Keys are ``plan/<plan_id>``, ``event/<event_id>``, ``intent/<client_order_id>`` and
``terminal/<client_order_id>``; a value is the entity's whole state as JSON (decimals as exact
strings, timestamps ISO-8601 UTC), and ``None`` (a tombstone) deletes it. Compaction keeps the
latest value per key, so replaying a partition of the topic from the start rebuilds that
partition's ledger state exactly: ``LedgerSnapshot.apply`` is that replay, one record at a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from rebalance_stream.contracts.execution import OrderSide
from rebalance_stream.ledger.protocol import (
    KnownPlan,
    OrderIntent,
    OrderTerminal,
    decode_outputs,
    encode_outputs,
)

PLAN, EVENT, INTENT, TERMINAL = "plan", "event", "intent", "terminal"


class ChangelogError(ValueError):
    """A changelog record that this code cannot read."""


@dataclass(frozen=True, slots=True)
class ChangelogRecord:
    """One record of the changelog topic; ``value`` None is a tombstone."""

    key: bytes
    value: bytes | None


def _key(kind: str, name: str) -> bytes:
    return f"{kind}/{name}".encode()


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def plan_record(plan: KnownPlan, account_id: str) -> ChangelogRecord:
    outputs = None if plan.outputs is None else encode_outputs(plan.outputs).decode()
    document = {
        "first_event_id": plan.first_event_id,
        "items_fingerprint": plan.items_fingerprint,
        "first_received_at": plan.first_received_at.isoformat(),
        "account_id": account_id,
        "outputs": outputs,
        "acknowledged": plan.acknowledged,
    }
    return ChangelogRecord(_key(PLAN, plan.plan_id), _json(document))


def event_record(event_id: str, plan_id: str) -> ChangelogRecord:
    return ChangelogRecord(_key(EVENT, event_id), _json({"plan_id": plan_id}))


def intent_record(intent: OrderIntent) -> ChangelogRecord:
    document = {
        "plan_id": intent.plan_id,
        "account_id": intent.account_id,
        "symbol": intent.symbol,
        "side": intent.side.value,
        "qty": _text(intent.qty),
        "expected_price": _text(intent.expected_price),
        "recorded_at": intent.recorded_at.isoformat(),
    }
    return ChangelogRecord(_key(INTENT, intent.client_order_id), _json(document))


def terminal_record(terminal: OrderTerminal) -> ChangelogRecord:
    document = {
        "status": terminal.status,
        "filled_qty": _text(terminal.filled_qty),
        "filled_avg_price": _text(terminal.filled_avg_price),
    }
    return ChangelogRecord(_key(TERMINAL, terminal.client_order_id), _json(document))


def tombstone(kind: str, name: str) -> ChangelogRecord:
    return ChangelogRecord(_key(kind, name), None)


@dataclass
class LedgerSnapshot:
    """A ledger partition's state, rebuilt from its changelog records in offset order."""

    plans: dict[str, KnownPlan] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)
    events: dict[str, str] = field(default_factory=dict)
    intents: dict[str, OrderIntent] = field(default_factory=dict)
    terminals: dict[str, OrderTerminal] = field(default_factory=dict)

    def apply(self, record: ChangelogRecord) -> None:
        """Apply one record: the latest value of a key replaces the earlier one."""
        kind, _, name = record.key.decode().partition("/")
        tables: dict[str, dict[str, Any]] = {
            PLAN: self.plans,
            EVENT: self.events,
            INTENT: self.intents,
            TERMINAL: self.terminals,
        }
        if kind not in tables or not name:
            raise ChangelogError(f"unknown changelog key {record.key!r}")
        if record.value is None:
            tables[kind].pop(name, None)
            if kind == PLAN:
                self.accounts.pop(name, None)
            return
        document = json.loads(record.value)
        if kind == PLAN:
            self.plans[name], self.accounts[name] = _plan(name, document)
        elif kind == EVENT:
            self.events[name] = str(document["plan_id"])
        elif kind == INTENT:
            self.intents[name] = _intent(name, document)
        else:
            self.terminals[name] = _terminal(name, document)


def _plan(plan_id: str, document: dict[str, Any]) -> tuple[KnownPlan, str]:
    stored = document["outputs"]
    plan = KnownPlan(
        plan_id=plan_id,
        first_event_id=document["first_event_id"],
        items_fingerprint=document["items_fingerprint"],
        first_received_at=datetime.fromisoformat(document["first_received_at"]),
        outputs=None if stored is None else decode_outputs(stored.encode()),
        acknowledged=bool(document["acknowledged"]),
    )
    return plan, str(document["account_id"])


def _intent(client_order_id: str, document: dict[str, Any]) -> OrderIntent:
    return OrderIntent(
        plan_id=document["plan_id"],
        account_id=document["account_id"],
        client_order_id=client_order_id,
        symbol=document["symbol"],
        side=OrderSide(document["side"]),
        qty=Decimal(document["qty"]),
        expected_price=_decimal(document["expected_price"]),
        recorded_at=datetime.fromisoformat(document["recorded_at"]),
    )


def _terminal(client_order_id: str, document: dict[str, Any]) -> OrderTerminal:
    return OrderTerminal(
        client_order_id=client_order_id,
        status=document["status"],
        filled_qty=Decimal(document["filled_qty"]),
        filled_avg_price=_decimal(document["filled_avg_price"]),
    )
