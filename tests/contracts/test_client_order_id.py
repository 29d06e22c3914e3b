"""client_order_id: the pinned format that lets a restarted plan find its own orders (SPEC 3.5)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from rebalance_stream.contracts.client_order_id import client_order_id, plan_hash, without_attempt
from rebalance_stream.contracts.execution import OrderSide

# (plan_id, symbol, side, attempt) -> the exact client_order_id. These literals are the
# contract with orders already at the broker: if this test fails, do not update the literals.
GOLDEN = [
    ("plan-2026-11-30-001", "SPY", OrderSide.BUY, 1, "rs1-5qmbu3qemu4t2nw6-SPY-B-1"),
    ("plan-2026-11-30-001", "TQQQ", OrderSide.SELL, 2, "rs1-5qmbu3qemu4t2nw6-TQQQ-S-2"),
    ("", "BRK.B", OrderSide.SELL, 1, "rs1-4oymiquy7qobjgx3-BRK.B-S-1"),
    (
        "7f3e9c1a-5b2d-4e8f-9a6c-0d1b2c3d4e5f",
        "ABCDEFGHIJ",
        OrderSide.BUY,
        99,
        "rs1-b5q2iyej3657lvvb-ABCDEFGHIJ-B-99",
    ),
    ("plan-é", "VTI", OrderSide.BUY, 1, "rs1-inu2paumczuylskz-VTI-B-1"),
]


def spec_client_order_id(plan_id: str, symbol: str, side: OrderSide, attempt: int) -> str:
    """SPEC 3.5 written out independently of the implementation."""
    digest = hashlib.sha256(plan_id.encode("utf-8")).digest()
    encoded = base64.b32encode(digest).decode("ascii").replace("=", "").lower()
    letter = {OrderSide.BUY: "B", OrderSide.SELL: "S"}[side]
    return f"rs1-{encoded[:16]}-{symbol.upper()}-{letter}-{attempt}"


@pytest.mark.parametrize(("plan_id", "symbol", "side", "attempt", "expected"), GOLDEN)
def test_client_order_id_golden_inputs_give_pinned_strings(
    plan_id: str, symbol: str, side: OrderSide, attempt: int, expected: str
) -> None:
    value = client_order_id(plan_id, symbol, side, attempt)

    assert value == expected


@pytest.mark.parametrize(("plan_id", "symbol", "side", "attempt", "expected"), GOLDEN)
def test_client_order_id_golden_strings_follow_the_spec_formula(
    plan_id: str, symbol: str, side: OrderSide, attempt: int, expected: str
) -> None:
    computed = spec_client_order_id(plan_id, symbol, side, attempt)

    assert computed == expected
    assert plan_hash(plan_id) == expected.split("-")[1]


def test_client_order_id_attempt_defaults_to_one() -> None:
    value = client_order_id("plan-2026-11-30-001", "SPY", OrderSide.BUY)

    assert value == "rs1-5qmbu3qemu4t2nw6-SPY-B-1"


def test_client_order_id_ten_char_symbol_and_attempt_99_fits_in_48() -> None:
    value = client_order_id("any-plan-id-at-all", "ABCDEFGHIJ", OrderSide.SELL, 99)

    assert len(value) == 36
    assert len(value) <= 48


@pytest.mark.parametrize("attempt", [0, -1])
def test_client_order_id_attempt_below_one_raises(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt starts at 1"):
        client_order_id("plan-1", "SPY", OrderSide.BUY, attempt)


def test_client_order_id_any_plan_starts_with_rs1_prefix() -> None:
    values = [client_order_id(f"plan-{n}", "SPY", OrderSide.BUY) for n in range(20)]

    assert all(value.startswith("rs1-") for value in values)
    assert len({value.split("-")[1] for value in values}) == 20


def test_client_order_id_lower_case_symbol_is_upper_cased() -> None:
    value = client_order_id("plan-2026-11-30-001", "spy", OrderSide.BUY, 1)

    assert value == "rs1-5qmbu3qemu4t2nw6-SPY-B-1"


def test_plan_hash_any_plan_is_16_lower_case_base32_chars() -> None:
    digest = plan_hash("plan-2026-11-30-001")

    assert digest == "5qmbu3qemu4t2nw6"
    assert set(digest) <= set("abcdefghijklmnopqrstuvwxyz234567")


@pytest.mark.parametrize(
    ("order_id", "stem"),
    [
        ("rs1-abc-SPY-B-1", "rs1-abc-SPY-B"),
        ("rs1-abc-SPY-B-2", "rs1-abc-SPY-B"),
        ("rs1-abc-SPY-S-10", "rs1-abc-SPY-S"),
        (
            client_order_id("p", "SPY", OrderSide.BUY, 3),
            client_order_id("p", "SPY", OrderSide.BUY)[:-2],
        ),
        ("manual", "manual"),  # no attempt: the id itself
        ("-1", "-1"),  # nothing before the dash: the id itself
    ],
)
def test_without_attempt_drops_the_attempt(order_id: str, stem: str) -> None:
    assert without_attempt(order_id) == stem
