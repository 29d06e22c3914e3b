"""The order state machine: one table from (state, trigger) to the next state, and a pure
``advance`` over it. Trade updates, REST polls and reconciliation all move orders through it.

    NEW --partial_fill--> PARTIALLY_FILLED --fill--> FILLED
     |  \\--cancel_requested--> PENDING_CANCEL --canceled--> CANCELED
     |                              \\--fill--> FILLED   (the cancel lost the race)
     \\--rejected--> REJECTED

Guarantees: ``advance`` is total (every state and trigger gives a Transition, never an
exception); an impossible transition is refused and leaves the order as it was; a terminal
state never changes (FILLED is absorbing); ``filled_qty`` never goes down. A REST snapshot
becomes synthetic triggers (``triggers_from_snapshot``) that pass through the same table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from rebalance_stream.brokers.protocol import BrokerOrder, BrokerOrderStatus


class OrderState(StrEnum):
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    PENDING_CANCEL = "pending_cancel"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


class Trigger(StrEnum):
    """What happened to an order, as a venue's event or a synthetic one from a snapshot."""

    ACCEPTED = "accepted"
    PARTIAL_FILL = "partial_fill"
    FILL = "fill"
    CANCEL_REQUESTED = "cancel_requested"
    CANCEL_REJECTED = "cancel_rejected"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


TERMINAL_STATES = frozenset(
    {OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED, OrderState.EXPIRED}
)

_S = OrderState
_T = Trigger
TRANSITIONS: Mapping[tuple[OrderState, Trigger], OrderState] = {
    (_S.NEW, _T.ACCEPTED): _S.NEW,
    (_S.NEW, _T.PARTIAL_FILL): _S.PARTIALLY_FILLED,
    (_S.NEW, _T.FILL): _S.FILLED,
    (_S.NEW, _T.CANCEL_REQUESTED): _S.PENDING_CANCEL,
    (_S.NEW, _T.CANCELED): _S.CANCELED,
    (_S.NEW, _T.REJECTED): _S.REJECTED,
    (_S.NEW, _T.EXPIRED): _S.EXPIRED,
    (_S.PARTIALLY_FILLED, _T.ACCEPTED): _S.PARTIALLY_FILLED,
    (_S.PARTIALLY_FILLED, _T.PARTIAL_FILL): _S.PARTIALLY_FILLED,
    (_S.PARTIALLY_FILLED, _T.FILL): _S.FILLED,
    (_S.PARTIALLY_FILLED, _T.CANCEL_REQUESTED): _S.PENDING_CANCEL,
    (_S.PARTIALLY_FILLED, _T.CANCELED): _S.CANCELED,
    (_S.PARTIALLY_FILLED, _T.EXPIRED): _S.EXPIRED,
    (_S.PENDING_CANCEL, _T.ACCEPTED): _S.PENDING_CANCEL,
    (_S.PENDING_CANCEL, _T.PARTIAL_FILL): _S.PENDING_CANCEL,
    (_S.PENDING_CANCEL, _T.FILL): _S.FILLED,
    (_S.PENDING_CANCEL, _T.CANCEL_REQUESTED): _S.PENDING_CANCEL,
    (_S.PENDING_CANCEL, _T.CANCEL_REJECTED): _S.NEW,
    (_S.PENDING_CANCEL, _T.CANCELED): _S.CANCELED,
    (_S.PENDING_CANCEL, _T.EXPIRED): _S.EXPIRED,
    # A terminal order takes its own trigger again (a duplicate event) and nothing else.
    (_S.FILLED, _T.FILL): _S.FILLED,
    (_S.CANCELED, _T.CANCELED): _S.CANCELED,
    (_S.REJECTED, _T.REJECTED): _S.REJECTED,
    (_S.EXPIRED, _T.EXPIRED): _S.EXPIRED,
}
"""Every allowed transition; a pair that is missing is impossible and refused. A cancel that
arrives for an order already over (CANCEL_REQUESTED on a terminal state) is refused too: the
caller reads the order's final state instead of acting on it."""

_FILL_TRIGGERS = frozenset({Trigger.PARTIAL_FILL, Trigger.FILL})


@dataclass(frozen=True, slots=True)
class OrderProgress:
    """Where an order stands: its state, and the cumulative fill so far."""

    state: OrderState
    filled_qty: Decimal = Decimal(0)
    filled_avg_price: Decimal | None = None

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One trigger; a fill carries the order's cumulative filled_qty and average price."""

    trigger: Trigger
    filled_qty: Decimal | None = None
    filled_avg_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """The result of one ``advance``: the progress after it, and whether it was allowed."""

    progress: OrderProgress
    allowed: bool
    refusal: str | None = None


def advance(progress: OrderProgress, update: OrderUpdate) -> Transition:
    """The order after ``update``; an impossible transition leaves ``progress`` unchanged."""
    target = TRANSITIONS.get((progress.state, update.trigger))
    if target is None:
        refusal = f"{update.trigger.value} is impossible in state {progress.state.value}"
        return Transition(progress, allowed=False, refusal=refusal)
    filled, price = progress.filled_qty, progress.filled_avg_price
    raised = update.filled_qty is not None and update.filled_qty > filled
    if update.trigger in _FILL_TRIGGERS and raised and update.filled_qty is not None:
        filled, price = update.filled_qty, update.filled_avg_price or price
    if target is OrderState.NEW and filled > 0:
        target = OrderState.PARTIALLY_FILLED
    return Transition(OrderProgress(target, filled, price), allowed=True)


def advance_all(progress: OrderProgress, updates: Iterable[OrderUpdate]) -> list[Transition]:
    """Each update's Transition, in order, each from the progress the previous one left."""
    transitions = []
    for update in updates:
        transition = advance(progress, update)
        transitions.append(transition)
        progress = transition.progress
    return transitions


_STATE_OF_STATUS: Mapping[BrokerOrderStatus, OrderState] = {
    BrokerOrderStatus.NEW: OrderState.NEW,
    BrokerOrderStatus.PARTIALLY_FILLED: OrderState.PARTIALLY_FILLED,
    BrokerOrderStatus.FILLED: OrderState.FILLED,
    BrokerOrderStatus.CANCELED: OrderState.CANCELED,
    BrokerOrderStatus.REJECTED: OrderState.REJECTED,
    BrokerOrderStatus.EXPIRED: OrderState.EXPIRED,
}
_TRIGGER_OF_END: Mapping[BrokerOrderStatus, Trigger] = {
    BrokerOrderStatus.CANCELED: Trigger.CANCELED,
    BrokerOrderStatus.REJECTED: Trigger.REJECTED,
    BrokerOrderStatus.EXPIRED: Trigger.EXPIRED,
}


def progress_of(order: BrokerOrder) -> OrderProgress:
    """An order's progress as the broker reported it."""
    state = _STATE_OF_STATUS[order.status]
    return OrderProgress(state, order.filled_qty, order.filled_avg_price)


def status_of(progress: OrderProgress) -> BrokerOrderStatus:
    """The protocol status of a progress; a pending cancel is still open."""
    if progress.state is OrderState.PENDING_CANCEL:
        return (
            BrokerOrderStatus.PARTIALLY_FILLED
            if progress.filled_qty > 0
            else (BrokerOrderStatus.NEW)
        )
    return BrokerOrderStatus(progress.state.value)


def triggers_from_snapshot(progress: OrderProgress, snapshot: BrokerOrder) -> list[OrderUpdate]:
    """The synthetic triggers that take ``progress`` to what a REST read of the order says:
    a fill for quantity not yet seen, then the status's own trigger when it ended otherwise."""
    updates = []
    status = snapshot.status
    filled = snapshot.filled_qty
    if filled > progress.filled_qty or (
        status is BrokerOrderStatus.FILLED and progress.state is not OrderState.FILLED
    ):
        trigger = Trigger.FILL if status is BrokerOrderStatus.FILLED else Trigger.PARTIAL_FILL
        updates.append(OrderUpdate(trigger, filled, snapshot.filled_avg_price))
    end = _TRIGGER_OF_END.get(status)
    if end is not None:
        updates.append(OrderUpdate(end))
    return updates


def with_progress(order: BrokerOrder, progress: OrderProgress) -> BrokerOrder:
    """``order`` carrying ``progress``: its status, cumulative fill and average price."""
    return replace(
        order,
        status=status_of(progress),
        filled_qty=progress.filled_qty,
        filled_avg_price=progress.filled_avg_price,
    )
