"""Startup reconciliation: before consuming, compare this service's orders at the broker with
the ledger's open intents, so the ledger's view of in-flight orders is current (SPEC 3.9).

Orders are this service's when their client_order_id has the ``rs1-`` prefix. An intent whose
order is terminal at the broker gets its terminal state recorded; an intent whose order is still
open, or was never sent, is left for the plan's resume, which looks the order up again. The
broker's orders pass through the order state machine, like every other read of an order. If
the broker cannot be read, the job must not start trading.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from decimal import Decimal

import structlog

from rebalance_stream.brokers.order_watch import TrackedOrder
from rebalance_stream.brokers.protocol import Broker, BrokerError, BrokerOrder, BrokerOrderStatus
from rebalance_stream.ledger.protocol import OrderIntent, OrderJournal, OrderTerminal

log = structlog.get_logger(__name__)

ORDER_PREFIX = "rs1-"


class ReconciliationFailed(Exception):
    """The broker's orders could not be read: the job is not ready to trade."""


@dataclass(frozen=True, slots=True)
class ReconciliationReport:
    """What startup reconciliation found."""

    broker_orders: int
    open_intents: int
    terminals_recorded: int
    still_open: int
    never_sent: int
    open_without_intent: int


def settled_terminal(order: BrokerOrder) -> OrderTerminal | None:
    """An open intent's order, moved by the order state machine from open (as the ledger has
    it) to what the broker reports, through the same synthetic triggers as a REST poll; its
    terminal state, or None while it is open."""
    as_recorded = replace(
        order, status=BrokerOrderStatus.NEW, filled_qty=Decimal(0), filled_avg_price=None
    )
    tracked = TrackedOrder(as_recorded)
    tracked.observe(order, source="reconcile")
    if not tracked.is_terminal:
        return None
    final = tracked.order
    return OrderTerminal(
        final.client_order_id, final.status.value, final.filled_qty, final.filled_avg_price
    )


def compare(orders: list[BrokerOrder], intents: list[OrderIntent]) -> ReconciliationReport:
    """Pure: how the broker's orders and the ledger's open intents line up."""
    by_id = {order.client_order_id: order for order in orders}
    pending = {intent.client_order_id for intent in intents}
    found = [by_id[i] for i in pending if i in by_id]
    terminal = [order for order in found if order.is_terminal]
    untracked = [o for o in orders if not o.is_terminal and o.client_order_id not in pending]
    return ReconciliationReport(
        broker_orders=len(orders),
        open_intents=len(intents),
        terminals_recorded=len(terminal),
        still_open=len(found) - len(terminal),
        never_sent=len(pending) - len(found),
        open_without_intent=len(untracked),
    )


def reconcile_orders(broker: Broker, journal: OrderJournal) -> ReconciliationReport:
    """Record the terminal states of open intents from the broker; report what was found.

    Raises ReconciliationFailed when the broker cannot list its orders.
    """
    try:
        orders = broker.list_orders(ORDER_PREFIX)
    except BrokerError as exc:
        log.error("startup_reconciliation_failed", error=f"{type(exc).__name__}: {exc}")
        raise ReconciliationFailed(f"cannot list the broker's orders: {exc}") from exc
    intents = journal.open_intents()
    report = compare(orders, intents)
    pending = {intent.client_order_id for intent in intents}
    found = [o for o in orders if o.client_order_id in pending]
    terminals = [t for order in found if (t := settled_terminal(order)) is not None]
    if terminals:
        journal.record_terminals(terminals)
    level = log.warning if report.open_without_intent else log.info
    level("startup_reconciled", **asdict(report))
    return report
