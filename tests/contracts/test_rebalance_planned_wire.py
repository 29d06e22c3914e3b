"""RebalancePlanned as the upstream portfolio service writes it (SPEC 2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from plan_factory import Trade, encode, liquidate, planned
from pydantic import ValidationError

from rebalance_stream.contracts.rebalance import (
    ExecutionUrgency,
    RebalancePlanItem,
    RebalancePlanned,
    TradeAction,
)

FINGERPRINT_OF_UPSTREAM_ITEMS = "493c7dac029b3fc20cd4eceb5de0db693565850e4b31c47a12bebe2d3813f4d4"


def upstream_document(**changes: Any) -> dict[str, Any]:
    """Two trades, one buy and one liquidating sell, in the upstream wire format."""
    trades = [Trade("SPY", "BUY", "1000.00", priority=2), liquidate("TQQQ", "-500.00")]
    return {**planned("plan-1", trades), **changes}


def item_document(**changes: Any) -> dict[str, Any]:
    """One valid BUY item as the upstream service writes it."""
    return {
        "symbol": "SPY",
        "current_weight": "0.10",
        "target_weight": "0.25",
        "weight_diff": "0.15",
        "target_value": "10000.00",
        "current_value": "5000.00",
        "trade_amount": "1000.00",
        "action": "BUY",
        "priority": 3,
        **changes,
    }


def with_item(**changes: Any) -> dict[str, Any]:
    """The upstream document with its only item replaced."""
    document = upstream_document()
    document["rebalance_plan"]["items"] = [item_document(**changes)]
    return document


def error_types(error: pytest.ExceptionInfo[ValidationError]) -> list[tuple[Any, ...]]:
    return [(e["type"], e["loc"]) for e in error.value.errors()]


def test_rebalance_planned_upstream_wire_format_validates() -> None:
    raw = encode(upstream_document())

    event = RebalancePlanned.model_validate_json(raw)

    assert event.event_id == "evt-plan-1"
    assert event.correlation_id == "corr-plan-1"
    assert event.causation_id == "cause-plan-1"
    assert event.event_type == "RebalancePlanned"
    assert event.timestamp == datetime(2026, 11, 30, 14, 30, tzinfo=UTC)
    assert event.source_module == "portfolio_v2"
    assert event.source_component == "rebalance_planner"
    assert event.schema_version == "1.0"
    assert event.metadata == {}
    assert event.trades_required is True
    plan = event.rebalance_plan
    assert plan.plan_id == "plan-1"
    assert plan.timestamp == datetime(2026, 11, 30, 14, 30, tzinfo=UTC)
    assert plan.metadata is None
    assert plan.account_id == "acct-1"
    assert plan.total_portfolio_value == Decimal("100000.00")
    assert plan.total_trade_value == Decimal("1500.00")
    assert plan.max_drift_tolerance == Decimal("0.05")
    assert plan.execution_urgency is ExecutionUrgency.NORMAL
    assert plan.estimated_duration_minutes is None
    assert [(i.symbol, i.action, i.trade_amount, i.priority) for i in plan.items] == [
        ("SPY", TradeAction.BUY, Decimal("1000.00"), 2),
        ("TQQQ", TradeAction.SELL, Decimal("-500.00"), 1),
    ]
    assert event.allocation_comparison.deltas == {
        "SPY": Decimal("1000.00"),
        "TQQQ": Decimal("-500.00"),
    }


def test_rebalance_planned_decimal_json_numbers_with_parse_float_decimal_are_exact() -> None:
    raw = encode(upstream_document()).decode().replace('"1000.00"', "0.1")
    raw = raw.replace('"100000.00"', "12345678901234567.891")
    document = json.loads(raw, parse_float=Decimal)

    event = RebalancePlanned.model_validate(document)

    trade_amount = event.rebalance_plan.items[0].trade_amount
    assert trade_amount == Decimal("0.1")
    assert trade_amount.as_tuple() == Decimal("0.1").as_tuple()
    assert event.allocation_comparison.deltas["SPY"] == Decimal("0.1")
    assert event.rebalance_plan.total_portfolio_value == Decimal("12345678901234567.891")


def test_rebalance_planned_decimal_python_floats_become_shortest_exact_decimals() -> None:
    document = json.loads(encode(upstream_document()).decode().replace('"1000.00"', "0.1"))
    document["rebalance_plan"]["items"][0]["current_weight"] = 0.3
    document["rebalance_plan"]["max_drift_tolerance"] = 1e-7

    event = RebalancePlanned.model_validate(document)

    item = event.rebalance_plan.items[0]
    assert isinstance(document["rebalance_plan"]["items"][0]["trade_amount"], float)
    assert item.trade_amount.as_tuple() == Decimal("0.1").as_tuple()
    assert item.current_weight.as_tuple() == Decimal("0.3").as_tuple()
    assert event.allocation_comparison.deltas["SPY"] == Decimal("0.1")
    assert event.rebalance_plan.max_drift_tolerance == Decimal("0.0000001")


def test_rebalance_planned_decimal_json_number_via_model_validate_json_is_exact() -> None:
    raw = encode(upstream_document()).decode().replace('"1000.00"', "0.1")

    event = RebalancePlanned.model_validate_json(raw)

    assert event.rebalance_plan.items[0].trade_amount.as_tuple() == Decimal("0.1").as_tuple()


@pytest.mark.xfail(
    strict=True,
    reason="contracts/wire.py Money: model_validate_json parses a JSON number as a float "
    "before _reject_float_artifacts sees it, so 12345678901234567.891 becomes "
    "12345678901234568; operators/decode.py avoids this with parse_float=Decimal",
)
def test_rebalance_planned_decimal_long_json_number_via_model_validate_json_is_exact() -> None:
    raw = encode(upstream_document()).decode().replace('"100000.00"', "12345678901234567.891")

    event = RebalancePlanned.model_validate_json(raw)

    assert event.rebalance_plan.total_portfolio_value == Decimal("12345678901234567.891")


@pytest.mark.parametrize("field", ["event", "plan"])
def test_rebalance_planned_timestamp_without_timezone_is_rejected(field: str) -> None:
    document = upstream_document()
    target = document if field == "event" else document["rebalance_plan"]
    target["timestamp"] = "2026-11-30T14:30:00"

    with pytest.raises(ValidationError) as error:
        RebalancePlanned.model_validate(document)

    expected_loc = ("timestamp",) if field == "event" else ("rebalance_plan", "timestamp")
    assert error_types(error) == [("timezone_aware", expected_loc)]


def test_rebalance_planned_offset_timestamp_is_normalized_to_utc() -> None:
    document = planned("plan-1", [Trade("SPY", "BUY", "1")], timestamp="2026-11-30T16:30:00+02:00")

    event = RebalancePlanned.model_validate(document)

    assert event.timestamp == datetime(2026, 11, 30, 14, 30, tzinfo=UTC)
    assert event.timestamp.tzinfo is UTC
    assert event.rebalance_plan.timestamp.tzinfo is UTC
    assert event.rebalance_plan.timestamp.hour == 14
    assert event.model_dump(mode="json")["timestamp"] == "2026-11-30T14:30:00Z"


def test_rebalance_planned_unknown_fields_at_every_level_are_ignored() -> None:
    document = upstream_document(envelope_extra={"a": 1}, trace_id="t-1")
    document["rebalance_plan"]["plan_extra"] = "x"
    document["rebalance_plan"]["items"][0]["item_extra"] = [1, 2]
    document["allocation_comparison"]["comparison_extra"] = {"SPY": "1"}

    event = RebalancePlanned.model_validate_json(json.dumps(document))

    baseline = RebalancePlanned.model_validate(upstream_document())
    assert event == baseline
    assert "envelope_extra" not in event.model_dump()
    assert "plan_extra" not in event.rebalance_plan.model_dump()
    assert "item_extra" not in event.rebalance_plan.items[0].model_dump()


def test_rebalance_plan_item_symbol_is_stripped_and_upper_cased() -> None:
    document = item_document(symbol="  brk.b ")

    item = RebalancePlanItem.model_validate(document)

    assert item.symbol == "BRK.B"


def test_rebalance_plan_item_symbol_of_ten_chars_is_accepted() -> None:
    document = item_document(symbol=" abcdefghij ")

    item = RebalancePlanItem.model_validate(document)

    assert item.symbol == "ABCDEFGHIJ"


@pytest.mark.parametrize("symbol", ["ABCDEFGHIJK", "", "   "])
def test_rebalance_plan_item_symbol_length_out_of_range_is_rejected(symbol: str) -> None:
    document = with_item(symbol=symbol)

    with pytest.raises(ValidationError) as error:
        RebalancePlanned.model_validate(document)

    expected_type = "string_too_long" if symbol.strip() else "string_too_short"
    assert error_types(error) == [(expected_type, ("rebalance_plan", "items", 0, "symbol"))]


def test_rebalance_plan_item_symbol_longer_than_ten_after_upper_casing_is_rejected() -> None:
    document = with_item(symbol="ßßßßßß")

    with pytest.raises(ValidationError):
        RebalancePlanned.model_validate(document)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("current_weight", "-0.01"),
        ("current_weight", "1.01"),
        ("target_weight", "-0.0001"),
        ("target_weight", "1.5"),
    ],
)
def test_rebalance_plan_item_weight_outside_unit_range_is_rejected(field: str, value: str) -> None:
    document = with_item(**{field: value})

    with pytest.raises(ValidationError) as error:
        RebalancePlanned.model_validate(document)

    expected_type = "less_than_equal" if Decimal(value) > 1 else "greater_than_equal"
    assert error_types(error) == [(expected_type, ("rebalance_plan", "items", 0, field))]


@pytest.mark.parametrize("value", ["0", "1"])
def test_rebalance_plan_item_weight_at_bounds_is_accepted(value: str) -> None:
    document = item_document(current_weight=value, target_weight=value)

    item = RebalancePlanItem.model_validate(document)

    assert (item.current_weight, item.target_weight) == (Decimal(value), Decimal(value))


@pytest.mark.parametrize("priority", [0, 6, -1])
def test_rebalance_plan_item_priority_outside_one_to_five_is_rejected(priority: int) -> None:
    document = with_item(priority=priority)

    with pytest.raises(ValidationError) as error:
        RebalancePlanned.model_validate(document)

    expected_type = "less_than_equal" if priority > 5 else "greater_than_equal"
    assert error_types(error) == [(expected_type, ("rebalance_plan", "items", 0, "priority"))]


@pytest.mark.parametrize("priority", [1, 5])
def test_rebalance_plan_item_priority_at_bounds_is_accepted(priority: int) -> None:
    document = item_document(priority=priority)

    item = RebalancePlanItem.model_validate(document)

    assert item.priority == priority


@pytest.mark.parametrize(
    ("action", "amount"),
    [
        ("BUY", "-1.00"),
        ("BUY", "0"),
        ("SELL", "1.00"),
        ("SELL", "0"),
        ("HOLD", "0.01"),
        ("HOLD", "-0.01"),
    ],
)
def test_rebalance_plan_item_action_sign_mismatch_is_rejected(action: str, amount: str) -> None:
    document = with_item(action=action, trade_amount=amount)

    with pytest.raises(ValidationError) as error:
        RebalancePlanned.model_validate(document)

    errors = error.value.errors()
    assert [(e["type"], e["loc"]) for e in errors] == [
        ("value_error", ("rebalance_plan", "items", 0))
    ]
    assert errors[0]["msg"] == (
        f"Value error, SPY: action {action} disagrees with trade_amount {amount}"
    )


@pytest.mark.parametrize(
    ("action", "amount"), [("BUY", "0.01"), ("SELL", "-0.01"), ("HOLD", "0"), ("HOLD", "0.00")]
)
def test_rebalance_plan_item_action_sign_agreement_is_accepted(action: str, amount: str) -> None:
    document = item_document(action=action, trade_amount=amount)

    item = RebalancePlanItem.model_validate(document)

    assert (item.action, item.trade_amount) == (TradeAction(action), Decimal(amount))


def test_rebalance_plan_duplicate_symbol_after_normalization_is_rejected() -> None:
    document = planned("plan-1", [Trade(" spy", "BUY", "1"), Trade("SPY", "BUY", "2")])

    with pytest.raises(ValidationError) as error:
        RebalancePlanned.model_validate(document)

    errors = error.value.errors()
    assert [(e["type"], e["loc"]) for e in errors] == [("value_error", ("rebalance_plan", "items"))]
    assert errors[0]["msg"] == "Value error, symbol SPY appears more than once"


def test_rebalance_plan_empty_items_is_rejected_with_exactly_one_error() -> None:
    document = planned("plan-1", [])

    with pytest.raises(ValidationError) as error:
        RebalancePlanned.model_validate(document)

    errors = error.value.errors()
    assert error.value.error_count() == 1
    assert [(e["type"], e["loc"]) for e in errors] == [("value_error", ("rebalance_plan", "items"))]
    assert errors[0]["msg"] == "Value error, a plan has at least one item"


@pytest.mark.parametrize("event_type", ["TradeExecuted", "rebalanceplanned", ""])
def test_rebalance_planned_wrong_event_type_is_rejected(event_type: str) -> None:
    document = upstream_document(event_type=event_type)

    with pytest.raises(ValidationError) as error:
        RebalancePlanned.model_validate(document)

    expected_type = "value_error" if event_type else "string_too_short"
    assert error_types(error) == [(expected_type, ("event_type",))]


def test_rebalance_planned_major_version_two_is_rejected() -> None:
    document = upstream_document(schema_version="2.0")

    with pytest.raises(ValidationError) as error:
        RebalancePlanned.model_validate(document)

    errors = error.value.errors()
    assert [(e["type"], e["loc"]) for e in errors] == [("value_error", ("schema_version",))]
    assert errors[0]["msg"] == "Value error, unsupported schema_version '2.0'"


def test_rebalance_planned_minor_version_of_major_one_is_accepted() -> None:
    document = upstream_document(schema_version="1.3")

    event = RebalancePlanned.model_validate(document)

    assert event.schema_version == "1.3"


@pytest.mark.parametrize(
    ("action", "amount", "target_weight", "target_value", "expected"),
    [
        ("SELL", "-500.00", "0", "0", True),
        ("SELL", "-500.00", "0.00", "0.00", True),
        ("SELL", "-500.00", "0", "10.00", False),
        ("SELL", "-500.00", "0.01", "0", False),
        ("SELL", "-500.00", "0.25", "10000.00", False),
        ("BUY", "500.00", "0", "0", False),
        ("HOLD", "0", "0", "0", False),
    ],
)
def test_rebalance_plan_item_liquidates_only_for_sell_to_zero_weight_and_value(
    action: str, amount: str, target_weight: str, target_value: str, expected: bool
) -> None:
    document = item_document(
        action=action, trade_amount=amount, target_weight=target_weight, target_value=target_value
    )

    item = RebalancePlanItem.model_validate(document)

    assert item.liquidates is expected


def test_rebalance_plan_items_fingerprint_equal_items_are_equal() -> None:
    document = upstream_document(event_id="evt-a")
    other = upstream_document(event_id="evt-b")
    other["rebalance_plan"]["timestamp"] = "2026-12-01T09:00:00Z"
    other["rebalance_plan"]["account_id"] = "acct-2"
    other["rebalance_plan"]["items"][0]["symbol"] = " spy "
    first = RebalancePlanned.model_validate(document).rebalance_plan
    second = RebalancePlanned.model_validate(other).rebalance_plan

    fingerprints = (first.items_fingerprint(), second.items_fingerprint())

    assert fingerprints[0] == fingerprints[1]
    # Pinned: the fingerprint is compared with what the dedupe store recorded earlier.
    assert fingerprints[0] == FINGERPRINT_OF_UPSTREAM_ITEMS


def test_rebalance_plan_items_fingerprint_changed_amount_differs() -> None:
    changed = upstream_document()
    changed["rebalance_plan"]["items"][0]["trade_amount"] = "1000.01"
    original = RebalancePlanned.model_validate(upstream_document()).rebalance_plan
    modified = RebalancePlanned.model_validate(changed).rebalance_plan

    fingerprints = (original.items_fingerprint(), modified.items_fingerprint())

    assert fingerprints[0] == FINGERPRINT_OF_UPSTREAM_ITEMS
    assert fingerprints[1] != FINGERPRINT_OF_UPSTREAM_ITEMS


@pytest.mark.parametrize("written", ["1000.0", "1000", 1000, Decimal("1E+3"), 1000.0])
def test_rebalance_plan_items_fingerprint_same_value_other_scale_is_equal(
    written: object,
) -> None:
    rescaled = upstream_document()
    rescaled["rebalance_plan"]["items"][0]["trade_amount"] = written
    original = RebalancePlanned.model_validate(upstream_document()).rebalance_plan
    modified = RebalancePlanned.model_validate(rescaled).rebalance_plan

    fingerprints = (original.items_fingerprint(), modified.items_fingerprint())

    assert original.items == modified.items
    assert fingerprints == (FINGERPRINT_OF_UPSTREAM_ITEMS, FINGERPRINT_OF_UPSTREAM_ITEMS)


@pytest.mark.parametrize("negative_zero", ["-0", "-0.00", -0.0])
def test_rebalance_plan_items_fingerprint_negative_zero_equals_zero(
    negative_zero: object,
) -> None:
    zero = planned("plan-1", [Trade("SPY", "HOLD", "0")])
    signed = planned("plan-1", [Trade("SPY", "HOLD", "0")])
    signed["rebalance_plan"]["items"][0]["trade_amount"] = negative_zero
    first = RebalancePlanned.model_validate(zero).rebalance_plan
    second = RebalancePlanned.model_validate(signed).rebalance_plan

    fingerprints = (first.items_fingerprint(), second.items_fingerprint())

    assert first.items == second.items
    assert fingerprints[0] == fingerprints[1]


def test_rebalance_plan_account_id_missing_defaults_to_default() -> None:
    document = upstream_document()
    del document["rebalance_plan"]["account_id"]

    event = RebalancePlanned.model_validate(document)

    assert event.rebalance_plan.account_id == "default"


@pytest.mark.parametrize(
    "value",
    [Decimal("1E+38"), Decimal("-1E+999999999"), Decimal("1E-39"), Decimal("0E-999999999")],
)
def test_rebalance_plan_item_money_beyond_38_digits_either_side_of_the_point_is_rejected(
    value: Decimal,
) -> None:
    with pytest.raises(ValidationError) as error:
        RebalancePlanItem.model_validate(item_document(target_value=value))

    assert error_types(error) == [("value_error", ("target_value",))]
    assert "decimal out of range" in str(error.value)


@pytest.mark.parametrize("value", ["9" * 38, "0." + "0" * 37 + "1", "1E+37"])
def test_rebalance_plan_item_money_within_38_digits_either_side_is_accepted(value: str) -> None:
    item = RebalancePlanItem.model_validate(item_document(target_value=value))

    assert item.target_value == Decimal(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1E+18"), "value_error"),
        (Decimal("1E+999999999"), "value_error"),
        (Decimal("3E-19"), "value_error"),
        (Decimal("-1E-999999999"), "value_error"),
    ],
)
def test_rebalance_plan_item_priority_beyond_18_digits_either_side_is_rejected_before_int(
    value: Decimal, expected: str
) -> None:
    with pytest.raises(ValidationError) as error:
        RebalancePlanItem.model_validate(item_document(priority=value))

    assert error_types(error) == [(expected, ("priority",))]
    assert "integer out of range" in str(error.value)


def test_rebalance_plan_item_priority_as_an_integral_json_number_is_accepted() -> None:
    item = RebalancePlanItem.model_validate(item_document(priority=Decimal("3.0")))

    assert item.priority == 3
