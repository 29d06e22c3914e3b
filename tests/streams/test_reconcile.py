"""Startup reconciliation of the broker's rs1- orders with the ledger's open intents."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from support import T0, FixedClock, paper_account

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.brokers.protocol import BrokerOrder, BrokerUnavailable, OrderRequest
from rebalance_stream.contracts.client_order_id import client_order_id
from rebalance_stream.contracts.execution import OrderSide
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.ledger.protocol import OrderIntent, trading_day
from rebalance_stream.streams.reconcile import (
    ReconciliationFailed,
    ReconciliationReport,
    reconcile_orders,
)
from rebalance_stream.streams.runner import EXIT_NOT_READY, PlanConsumerJob
from rebalance_stream.streams.settings import Settings


def intent(plan_id: str, symbol: str, qty: str) -> OrderIntent:
    order_id = client_order_id(plan_id, symbol, OrderSide.BUY)
    price = Decimal("250.00") if symbol == "VTI" else Decimal("40.00")
    return OrderIntent(plan_id, "acct-1", order_id, symbol, OrderSide.BUY, Decimal(qty), price, T0)


def place(broker: PaperBroker, order: OrderIntent) -> BrokerOrder:
    return broker.submit_order(
        OrderRequest(order.client_order_id, order.symbol, order.side, qty=order.qty)
    )


def test_reconcile_records_terminal_orders_and_leaves_open_and_unsent_ones() -> None:
    account = paper_account(fill={"default": "immediate", "ARKK": {"delay_ms": 60_000}})
    broker = PaperBroker(account, clock=FixedClock())
    broker.start()
    ledger = InMemoryLedger()
    filled, resting, unsent = (
        intent("p1", "VTI", "4"),
        intent("p2", "ARKK", "5"),
        intent("p3", "VTI", "1"),
    )
    ledger.record_intents([filled, resting, unsent])
    place(broker, filled)
    place(broker, resting)
    place(broker, intent("p-elsewhere", "ARKK", "1"))

    report = reconcile_orders(broker, ledger)

    assert report == ReconciliationReport(
        broker_orders=3,
        open_intents=3,
        terminals_recorded=1,
        still_open=1,
        never_sent=1,
        open_without_intent=1,
    )
    assert ledger.open_intents() == [resting, unsent]
    day = trading_day(T0)
    # filled 4 VTI at 250.00, plus the expected notional of 5 ARKK and 1 VTI still open
    assert ledger.notional_used("acct-1", day) == Decimal("1450.00")


class UnreachableBroker:
    def list_orders(self, client_order_id_prefix: str = "") -> list[BrokerOrder]:
        raise BrokerUnavailable("connection refused")

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected call {name}")


def test_reconcile_unreachable_broker_fails_and_the_job_never_consumes() -> None:
    with pytest.raises(ReconciliationFailed, match="connection refused"):
        reconcile_orders(UnreachableBroker(), InMemoryLedger())  # type: ignore[arg-type]

    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1")
    job = PlanConsumerJob(settings, UnreachableBroker(), InMemoryLedger())  # type: ignore[arg-type]

    assert job.run() == EXIT_NOT_READY
