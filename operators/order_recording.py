"""Where a plan's orders are put on record before they are sent (SPEC 3.9), and the named
checkpoints that crash tests stop at. ``UnrecordedOrders`` keeps nothing: orders are then safe
only by client_order_id."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rebalance_stream.contracts.rebalance import RebalancePlan
from rebalance_stream.ledger.protocol import OrderIntent, OrderJournal, OrderTerminal
from rebalance_stream.operators.flow import Clock
from rebalance_stream.operators.order_sizing import SizedOrder
from rebalance_stream.operators.risk import KillSwitch

__all__ = [
    "OrderRecording",
    "UnrecordedOrders",
    "always_active",
    "intent_of",
    "no_checkpoint",
]


class UnrecordedOrders:
    """An OrderJournal that keeps nothing: orders are then safe only by client_order_id."""

    def record_intents(self, intents: Sequence[OrderIntent]) -> None:
        """Keep nothing."""

    def record_terminals(self, terminals: Sequence[OrderTerminal]) -> None:
        """Keep nothing."""

    def open_intents(self) -> list[OrderIntent]:
        return []


def no_checkpoint(name: str) -> None:
    """Production's checkpoint: nothing happens."""


def always_active() -> KillSwitch:
    return KillSwitch.ACTIVE


@dataclass(frozen=True, slots=True)
class OrderRecording:
    """Where orders are recorded, and the checkpoint hook that crash tests stop at."""

    journal: OrderJournal = field(default_factory=UnrecordedOrders)
    checkpoint: Callable[[str], None] = no_checkpoint


def intent_of(plan: RebalancePlan, order: SizedOrder, clock: Clock) -> OrderIntent:
    return OrderIntent(
        plan_id=plan.plan_id,
        account_id=plan.account_id,
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        qty=order.qty,
        expected_price=order.expected_price,
        recorded_at=clock(),
    )
