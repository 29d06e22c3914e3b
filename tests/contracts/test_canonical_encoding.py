"""canonical_json and derived event ids (SPEC 2, output identity and encoding)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from rebalance_stream.contracts.execution import (
    ExecutionMetadata,
    ExecutionResult,
    ExecutionStatus,
    OrderResult,
    OrderSide,
    Scenario,
    SkipReason,
)
from rebalance_stream.contracts.outcomes import (
    ErrorDetails,
    FailureStep,
    SourceOffset,
    TradeExecuted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowSummary,
)
from rebalance_stream.contracts.rebalance import (
    AllocationComparison,
    ExecutionUrgency,
    RebalancePlan,
    RebalancePlanItem,
    RebalancePlanned,
    TradeAction,
)
from rebalance_stream.contracts.wire import (
    EVENT_ID_NAMESPACE,
    canonical_json,
    derived_event_id,
    format_timestamp,
)

PLAIN_DECIMAL = re.compile(r"-?\d+(\.\d+)?")
UTC_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z")
PROPERTY_SETTINGS = settings(max_examples=100, deadline=None)

# --- strategies: small, always valid -----------------------------------------------------

ids = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=12)
texts = st.text(min_size=1, max_size=12)
symbols = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ.", min_size=1, max_size=10)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
timestamps = st.datetimes(
    min_value=datetime(1970, 1, 2),  # noqa: DTZ001 - hypothesis bounds are naive by contract
    max_value=datetime(2199, 12, 30),  # noqa: DTZ001
    timezones=st.one_of(st.just(UTC), offsets),
)


def money(min_value: str | None = None, max_value: str | None = None) -> st.SearchStrategy[Decimal]:
    """Decimals of several scales, including exponent forms such as 0E-8 and 1E+2."""
    low = None if min_value is None else Decimal(min_value)
    high = None if max_value is None else Decimal(max_value)
    scaled = st.one_of(
        *(
            st.decimals(low, high, allow_nan=False, allow_infinity=False, places=places)
            for places in (0, 2, 8)
        )
    )
    exponent_form = st.builds(
        lambda digits, shift: Decimal(digits).scaleb(shift),
        st.integers(-999, 999),
        st.integers(-10, 6),
    )
    fixed = st.sampled_from([Decimal("0E-8"), Decimal("-0"), Decimal("1E+2")])
    return st.one_of(scaled, exponent_form, fixed).filter(
        lambda value: (low is None or value >= low) and (high is None or value <= high)
    )


non_negative = money("0", "1000000000")
signed = money("-1000000000", "1000000000")
weights = money("0", "1")
metadata = st.dictionaries(
    st.text(max_size=8),
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=8)),
    max_size=3,
)

order_results = st.builds(
    OrderResult,
    symbol=symbols,
    side=st.sampled_from(OrderSide),
    client_order_id=ids,
    broker_order_id=st.none() | ids,
    order_type=st.sampled_from(["market", "limit"]),
    planned_qty=st.none() | non_negative,
    planned_notional=st.none() | non_negative,
    filled_qty=non_negative,
    filled_avg_price=st.none() | non_negative,
    status=st.sampled_from(["filled", "canceled", "rejected", "expired", "skipped"]),
    success=st.booleans(),
    skipped=st.booleans(),
    skip_reason=st.none() | st.sampled_from(SkipReason),
    error_message=st.none() | texts,
    submitted_at=st.none() | timestamps,
    filled_at=st.none() | timestamps,
    expected_price=st.none() | non_negative,
    slippage_bps=st.none() | signed,
)

execution_results = st.builds(
    ExecutionResult,
    plan_id=ids,
    correlation_id=ids,
    status=st.sampled_from(ExecutionStatus),
    success=st.booleans(),
    orders=st.lists(order_results, max_size=3).map(tuple),
    orders_placed=st.integers(0, 50),
    orders_succeeded=st.integers(0, 50),
    total_trade_value=non_negative,
    started_at=timestamps,
    completed_at=timestamps,
    metadata=st.builds(
        ExecutionMetadata,
        scenario=st.sampled_from(Scenario),
        timings_ms=st.dictionaries(
            st.sampled_from(["validation", "risk", "sells", "buys"]), st.integers(0, 10**6)
        ),
    ),
)

envelope_fields: dict[str, st.SearchStrategy[Any]] = {
    "event_id": ids,
    "correlation_id": ids,
    "causation_id": ids,
    "timestamp": timestamps,
    "source_module": st.just("rebalance_stream") | texts,
    "source_component": st.none() | texts,
    "schema_version": st.sampled_from(["1.0", "1.3"]),
    "metadata": metadata,
}

trade_executed = st.builds(
    TradeExecuted,
    success=st.booleans(),
    orders_placed=st.integers(0, 50),
    orders_succeeded=st.integers(0, 50),
    failure_reason=st.none() | texts,
    failed_symbols=st.lists(symbols, max_size=3).map(tuple),
    execution_data=execution_results,
    **envelope_fields,
)

workflow_completed = st.builds(
    WorkflowCompleted,
    workflow_duration_ms=st.integers(0, 10**9),
    summary=st.builds(
        WorkflowSummary,
        orders_placed=st.integers(0, 50),
        orders_succeeded=st.integers(0, 50),
        total_trade_value=non_negative,
        plan_id=ids,
    ),
    **envelope_fields,
)

workflow_failed = st.builds(
    WorkflowFailed,
    failure_reason=texts,
    failure_step=st.sampled_from(FailureStep),
    error_details=st.builds(
        ErrorDetails,
        original_event_id=st.none() | ids,
        original_event_type=st.none() | st.just("RebalancePlanned"),
        error_type=texts,
        reason_code=st.sampled_from(["PLAN_ID_CONFLICT", "NOTIONAL_EXCEEDS_MAX_PER_ORDER"]),
        offset=st.builds(
            SourceOffset,
            topic=ids,
            partition=st.integers(0, 64),
            offset=st.integers(0, 2**63 - 1),
        ),
    ),
    **envelope_fields,
)


TRADE_AMOUNTS = {
    TradeAction.BUY: money("0.01", "1000000"),
    TradeAction.SELL: money("-1000000", "-0.01"),
    TradeAction.HOLD: st.sampled_from([Decimal(0), Decimal("-0"), Decimal("0E-8")]),
}
weight_diffs = money("-1", "1")


@st.composite
def plan_items(draw: st.DrawFn, symbol: str) -> RebalancePlanItem:
    """An item whose trade_amount agrees in sign with its action."""
    action = draw(st.sampled_from(TradeAction))
    amount = TRADE_AMOUNTS[action]
    return RebalancePlanItem(
        symbol=symbol,
        current_weight=draw(weights),
        target_weight=draw(weights),
        weight_diff=draw(weight_diffs),
        target_value=draw(non_negative),
        current_value=draw(non_negative),
        trade_amount=draw(amount),
        action=action,
        priority=draw(st.integers(1, 5)),
    )


@st.composite
def rebalance_plans(draw: st.DrawFn) -> RebalancePlan:
    chosen = draw(st.lists(symbols, min_size=1, max_size=4, unique=True))
    return RebalancePlan(
        plan_id=draw(ids),
        correlation_id=draw(ids),
        causation_id=draw(ids),
        timestamp=draw(timestamps),
        items=tuple(draw(plan_items(symbol)) for symbol in chosen),
        total_portfolio_value=draw(non_negative),
        total_trade_value=draw(signed),
        max_drift_tolerance=draw(weights),
        execution_urgency=draw(st.sampled_from(ExecutionUrgency)),
        estimated_duration_minutes=draw(st.none() | st.integers(1, 600)),
        metadata=draw(st.none() | metadata),
        strategy_id=draw(st.none() | ids),
        account_id=draw(st.just("default") | ids),
    )


symbol_maps = st.dictionaries(symbols, signed, max_size=3)
rebalance_planned = st.builds(
    RebalancePlanned,
    rebalance_plan=rebalance_plans(),
    allocation_comparison=st.builds(
        AllocationComparison,
        target_values=symbol_maps,
        current_values=symbol_maps,
        deltas=symbol_maps,
    ),
    trades_required=st.booleans(),
    **envelope_fields,
)

EVERY_CONTRACT: list[tuple[type[BaseModel], st.SearchStrategy[Any]]] = [
    (TradeExecuted, trade_executed),
    (WorkflowCompleted, workflow_completed),
    (WorkflowFailed, workflow_failed),
    (ExecutionResult, execution_results),
    (OrderResult, order_results),
    (RebalancePlanned, rebalance_planned),
]
CONTRACT_IDS = [model.__name__ for model, _ in EVERY_CONTRACT]


def wire_values(python: Any, wire: Any) -> list[tuple[Any, Any]]:
    """Pairs (python value, JSON value) of every leaf, walking both dumps side by side."""
    if isinstance(python, dict):
        return [pair for key in python for pair in wire_values(python[key], wire[key])]
    if isinstance(python, list | tuple):
        return [pair for p, w in zip(python, wire, strict=True) for pair in wire_values(p, w)]
    return [(python, wire)]


# --- fixed examples ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("0E-8"), b'"0.00000000"'),
        (Decimal("1E+2"), b'"100"'),
        (Decimal("-1.5E-3"), b'"-0.0015"'),
        (Decimal("1.10"), b'"1.10"'),
    ],
)
def test_canonical_json_decimal_in_exponent_form_is_written_plain(
    value: Decimal, expected: bytes
) -> None:
    summary = WorkflowSummary(plan_id="p", total_trade_value=value)

    encoded = canonical_json(summary)

    assert encoded == (
        b'{"orders_placed":0,"orders_succeeded":0,"plan_id":"p","total_trade_value":'
        + expected
        + b"}"
    )


def test_canonical_json_decimal_map_values_are_written_plain() -> None:
    comparison = AllocationComparison(deltas={"SPY": Decimal("0E-8"), "VTI": Decimal("5E+3")})

    encoded = canonical_json(comparison)

    assert encoded == (
        b'{"current_values":{},"deltas":{"SPY":"0.00000000","VTI":"5000"},"target_values":{}}'
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 11, 30, 14, 30, tzinfo=UTC), "2026-11-30T14:30:00Z"),
        (datetime(2026, 11, 30, 14, 30, 0, 120, tzinfo=UTC), "2026-11-30T14:30:00.000120Z"),
        (
            datetime(2026, 11, 30, 16, 30, tzinfo=timezone(timedelta(hours=2))),
            "2026-11-30T14:30:00Z",
        ),
        (
            datetime(2026, 11, 30, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
            "2026-12-01T04:30:00Z",
        ),
    ],
)
def test_canonical_json_timestamp_is_utc_and_ends_in_z(value: datetime, expected: str) -> None:
    result = ExecutionResult(
        plan_id="p",
        correlation_id="c",
        status=ExecutionStatus.SUCCESS,
        success=True,
        started_at=value,
        completed_at=value,
    )

    document = json.loads(canonical_json(result))

    assert (document["started_at"], document["completed_at"]) == (expected, expected)
    assert format_timestamp(value) == expected


def test_canonical_json_equal_models_give_identical_sorted_compact_bytes() -> None:
    first = SourceOffset(topic="t", partition=1, offset=2)
    second = SourceOffset(offset=2, partition=1, topic="t")

    encoded = (canonical_json(first), canonical_json(second))

    assert encoded == (b'{"offset":2,"partition":1,"topic":"t"}',) * 2


# --- properties over every contract ------------------------------------------------------


@pytest.mark.parametrize(("model", "strategy"), EVERY_CONTRACT, ids=CONTRACT_IDS)
def test_canonical_json_any_contract_round_trips_stably_with_plain_decimals(
    model: type[BaseModel], strategy: st.SearchStrategy[Any]
) -> None:
    """(a) equal after a round trip, (b) the same bytes when re-encoded, (c) no exponent form.

    One property per contract, not three: generating a valid RebalancePlanned dominates the time.
    """

    @PROPERTY_SETTINGS
    @given(strategy)
    def check(instance: BaseModel) -> None:
        assert isinstance(instance, model)
        encoded = canonical_json(instance)

        decoded = model.model_validate_json(encoded)
        re_encoded = canonical_json(decoded)

        assert decoded == instance, "(a) the round trip changed the model"
        assert re_encoded == encoded, "(b) re-encoding changed the bytes"
        pairs = wire_values(instance.model_dump(mode="python"), json.loads(encoded))
        decimals = [(p, w) for p, w in pairs if isinstance(p, Decimal)]
        for python_value, wire_value in decimals:
            assert isinstance(wire_value, str), f"(c) decimal written as {wire_value!r}"
            assert PLAIN_DECIMAL.fullmatch(wire_value), f"(c) decimal written as {wire_value!r}"
            assert Decimal(wire_value) == python_value
        times = [(p, w) for p, w in pairs if isinstance(p, datetime)]
        for moment, wire_moment in times:
            assert UTC_TIMESTAMP.fullmatch(wire_moment), f"timestamp written as {wire_moment!r}"
            assert datetime.fromisoformat(wire_moment) == moment

    check()


def test_canonical_json_strategies_cover_exponent_forms_and_offsets() -> None:
    """Guards the property above: its strategies must produce what it claims to check."""
    seen_exponents: set[bool] = set()
    seen_offsets: set[bool] = set()

    @settings(max_examples=200, deadline=None, database=None)
    @given(non_negative, timestamps)
    def collect(value: Decimal, moment: datetime) -> None:
        seen_exponents.add("E" in str(value))
        seen_offsets.add(moment.utcoffset() != timedelta(0))

    collect()

    assert seen_exponents == {True, False}
    assert seen_offsets == {True, False}


# --- derived event ids -------------------------------------------------------------------


def test_derived_event_id_is_uuid5_of_input_id_and_event_type() -> None:
    expected = str(uuid.uuid5(EVENT_ID_NAMESPACE, "e1:TradeExecuted"))

    derived = derived_event_id("e1", "TradeExecuted")

    assert derived == expected
    # Pinned: downstream consumers dedupe replays against ids that were published earlier.
    assert derived == "e3b2c97c-6ed0-5695-8059-8667ee3a3fdb"
    assert uuid.UUID(derived).version == 5


def test_derived_event_id_same_input_is_stable() -> None:
    first = derived_event_id("e1", "WorkflowCompleted")

    second = derived_event_id("e1", "WorkflowCompleted")

    assert first == second == str(uuid.uuid5(EVENT_ID_NAMESPACE, "e1:WorkflowCompleted"))


def test_derived_event_id_each_event_type_differs() -> None:
    event_types = ["TradeExecuted", "WorkflowCompleted", "WorkflowFailed"]

    derived = {derived_event_id("e1", event_type) for event_type in event_types}

    assert len(derived) == 3
    assert derived_event_id("e2", "TradeExecuted") not in derived
