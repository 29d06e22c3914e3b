"""Test-only crash points: parsing the setting, and killing at the N-th pass only."""

from __future__ import annotations

import pytest

from rebalance_stream.operators.order_execution import no_checkpoint
from rebalance_stream.streams.crash_points import CrashPointError, crash_hook, parse_crash_point


def test_parse_crash_point_name_and_pass() -> None:
    assert parse_crash_point("between_orders:3") == ("between_orders", 3)
    assert parse_crash_point("before_commit") == ("before_commit", 1)


@pytest.mark.parametrize("spec", ["nowhere", "before_order:0", "before_order:x", "before_order:-1"])
def test_parse_crash_point_rejects_unknown_names_and_bad_counts(spec: str) -> None:
    with pytest.raises(CrashPointError):
        parse_crash_point(spec)


def test_crash_hook_without_a_setting_is_the_no_op_checkpoint() -> None:
    assert crash_hook(None) is no_checkpoint
    assert crash_hook("") is no_checkpoint


def test_crash_hook_kills_at_the_nth_pass_of_its_checkpoint_only() -> None:
    kills: list[str] = []
    hook = crash_hook("between_orders:2", kill=lambda: kills.append("killed"))

    hook("before_order")
    hook("between_orders")
    first = list(kills)
    hook("before_order")
    hook("between_orders")

    assert (first, kills) == ([], ["killed"])
