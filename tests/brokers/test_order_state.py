"""The order state machine: the table, advance, and snapshots as synthetic triggers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from rebalance_stream.brokers.order_state import (
    TERMINAL_STATES,
    TRANSITIONS,
    OrderProgress,
    OrderState,
    OrderUpdate,
    Trigger,
    advance,
    advance_all,
    progress_of,
    status_of,
    triggers_from_snapshot,
    with_progress,
)
from rebalance_stream.brokers.protocol import BrokerOrder, BrokerOrderStatus
from rebalance_stream.contracts.execution import OrderSide

quantities = st.decimals(min_value=0, max_value=10_000, places=3, allow_nan=False)
prices = st.none() | st.decimals(min_value="0.01", max_value=1_000, places=2, allow_nan=False)
progresses = st.builds(OrderProgress, st.sampled_from(OrderState), quantities, prices)
updates = st.builds(OrderUpdate, st.sampled_from(Trigger), st.none() | quantities, prices)

ORDER = BrokerOrder(
    broker_order_id="b-1",
    client_order_id="rs1-x-SPY-B-1",
    symbol="SPY",
    side=OrderSide.BUY,
    status=BrokerOrderStatus.NEW,
    qty=Decimal(10),
    notional=None,
    filled_qty=Decimal(0),
    filled_avg_price=None,
    submitted_at=datetime(2026, 11, 30, 15, tzinfo=UTC),
)


@given(progresses, updates)
def test_advance_is_total_and_refusals_change_nothing(
    progress: OrderProgress, update: OrderUpdate
) -> None:
    transition = advance(progress, update)
    assert transition.allowed == ((progress.state, update.trigger) in TRANSITIONS)
    if not transition.allowed:
        assert transition.progress == progress
        assert transition.refusal is not None
        assert update.trigger.value in transition.refusal


@given(st.builds(OrderProgress, st.just(OrderState.FILLED), quantities, prices), st.lists(updates))
def test_filled_is_absorbing(progress: OrderProgress, sequence: list[OrderUpdate]) -> None:
    for transition in advance_all(progress, sequence):
        assert transition.progress.state is OrderState.FILLED


@given(progresses, st.lists(updates, max_size=12))
def test_filled_qty_never_goes_down_and_terminal_states_stay(
    progress: OrderProgress, sequence: list[OrderUpdate]
) -> None:
    before = progress
    for transition in advance_all(progress, sequence):
        after = transition.progress
        assert after.filled_qty >= before.filled_qty
        if before.state in TERMINAL_STATES:
            assert after.state is before.state
        before = after


def test_every_terminal_state_takes_only_its_own_trigger() -> None:
    for state in TERMINAL_STATES:
        allowed = [trigger for trigger in Trigger if (state, trigger) in TRANSITIONS]
        assert allowed == [Trigger(state.value) if state is not OrderState.FILLED else Trigger.FILL]


def test_a_cancel_that_loses_the_race_to_a_fill_ends_filled() -> None:
    steps = [
        OrderUpdate(Trigger.ACCEPTED),
        OrderUpdate(Trigger.PARTIAL_FILL, Decimal(4), Decimal("10.00")),
        OrderUpdate(Trigger.CANCEL_REQUESTED),
        OrderUpdate(Trigger.FILL, Decimal(10), Decimal("10.02")),
        OrderUpdate(Trigger.CANCELED),
    ]
    transitions = advance_all(OrderProgress(OrderState.NEW), steps)
    assert [t.progress.state for t in transitions] == [
        OrderState.NEW,
        OrderState.PARTIALLY_FILLED,
        OrderState.PENDING_CANCEL,
        OrderState.FILLED,
        OrderState.FILLED,
    ]
    assert [t.allowed for t in transitions] == [True, True, True, True, False]
    assert transitions[-1].progress == OrderProgress(
        OrderState.FILLED, Decimal(10), Decimal("10.02")
    )
    assert transitions[-1].refusal == "canceled is impossible in state filled"


def test_a_duplicated_fill_is_allowed_and_changes_nothing() -> None:
    filled = OrderProgress(OrderState.FILLED, Decimal(10), Decimal("10.02"))
    transition = advance(filled, OrderUpdate(Trigger.FILL, Decimal(10), Decimal("10.02")))
    assert transition.allowed
    assert transition.progress == filled


def test_a_stale_partial_fill_does_not_lower_the_filled_qty() -> None:
    progress = OrderProgress(OrderState.PARTIALLY_FILLED, Decimal(6), Decimal("9.99"))
    transition = advance(progress, OrderUpdate(Trigger.PARTIAL_FILL, Decimal(4), Decimal("9.98")))
    assert transition.progress == progress


def test_a_rejected_cancel_returns_the_order_to_open_with_its_fills() -> None:
    pending = OrderProgress(OrderState.PENDING_CANCEL, Decimal(3), Decimal(5))
    transition = advance(pending, OrderUpdate(Trigger.CANCEL_REJECTED))
    assert transition.progress.state is OrderState.PARTIALLY_FILLED
    assert status_of(pending) is BrokerOrderStatus.PARTIALLY_FILLED
    assert status_of(replace(pending, filled_qty=Decimal(0))) is BrokerOrderStatus.NEW


def test_a_canceled_snapshot_with_fills_becomes_a_partial_fill_then_a_cancel() -> None:
    snapshot = replace(
        ORDER,
        status=BrokerOrderStatus.CANCELED,
        filled_qty=Decimal(4),
        filled_avg_price=Decimal("10.01"),
    )
    updates = triggers_from_snapshot(progress_of(ORDER), snapshot)
    assert updates == [
        OrderUpdate(Trigger.PARTIAL_FILL, Decimal(4), Decimal("10.01")),
        OrderUpdate(Trigger.CANCELED),
    ]
    final = advance_all(progress_of(ORDER), updates)[-1].progress
    assert with_progress(ORDER, final) == snapshot


def test_an_open_snapshot_with_nothing_new_gives_no_trigger() -> None:
    pending = OrderProgress(OrderState.PENDING_CANCEL)
    assert triggers_from_snapshot(pending, ORDER) == []


def test_a_filled_snapshot_gives_a_fill() -> None:
    snapshot = replace(
        ORDER, status=BrokerOrderStatus.FILLED, filled_qty=Decimal(10), filled_avg_price=Decimal(9)
    )
    assert triggers_from_snapshot(progress_of(ORDER), snapshot) == [
        OrderUpdate(Trigger.FILL, Decimal(10), Decimal(9))
    ]
