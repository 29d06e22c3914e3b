"""End to end in-process: each case of SPEC 1's table, through the whole pipeline, against a
real paper broker; asserting the exact records per topic and the exact orders at the broker."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from plan_factory import Trade, liquidate, planned
from reactivex.scheduler import ThreadPoolScheduler
from support import FixedClock, paper_account, record, started_broker

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.brokers.protocol import MarketClock
from rebalance_stream.contracts import client_order_id, derived_event_id
from rebalance_stream.contracts.execution import OrderSide
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.ledger.protocol import PublishedInput
from rebalance_stream.operators.flow import Disposition
from rebalance_stream.operators.market_gate import MarketClockFailure
from rebalance_stream.operators.risk import KillSwitch
from rebalance_stream.sinks.records import ProducerRecord
from rebalance_stream.sinks.routing import OutputTopics, producer_records
from rebalance_stream.streams.pipeline import PipelineConfig, PipelineDependencies
from rebalance_stream.streams.simulate import run_in_process

TOPICS = OutputTopics()
TE, WC, WF, DLQ = (
    TOPICS.trade_executed,
    TOPICS.workflow_completed,
    TOPICS.workflow_failed,
    TOPICS.dead_letter,
)


class ClockFailingBroker:
    """The paper broker, except that its market clock cannot be read."""

    def __init__(self, inner: PaperBroker) -> None:
        self._inner = inner
        self.clock_calls = 0

    def get_clock(self) -> MarketClock:
        self.clock_calls += 1
        raise ConnectionError("clock endpoint unreachable")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CountingBroker(ClockFailingBroker):
    def get_clock(self) -> MarketClock:
        self.clock_calls += 1
        return self._inner.get_clock()


def run(
    documents: list[dict[str, Any] | bytes],
    broker: Any,
    clock: FixedClock,
    config: PipelineConfig | None = None,
    kill_switch: KillSwitch = KillSwitch.ACTIVE,
) -> list[Disposition]:
    records = [record(document, offset) for offset, document in enumerate(documents)]
    deps = PipelineDependencies(
        broker=broker,
        ledger=InMemoryLedger(),
        kill_switch=lambda: kill_switch,
        clock=clock,
        sleep=clock.advance,
        scheduler=ThreadPoolScheduler(4),
    )
    return run_in_process(records, config or PipelineConfig(), deps)


def topics_of(disposition: Disposition) -> list[str]:
    return [r.topic for r in producer_records(disposition, TOPICS)]


def values_of(disposition: Disposition) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in producer_records(disposition, TOPICS) if r.topic != DLQ]


def orders_at(broker: PaperBroker) -> list[tuple[str, str, Decimal, str]]:
    return [
        (o.symbol, o.side.value, o.filled_qty, o.status.value) for o in broker.list_orders("rs1-")
    ]


ROTATION = planned(
    "plan-rot",
    [
        liquidate("TQQQ", "-8000.00", 1),
        Trade("VTI", "BUY", "5000.00", 2, "0.10", "5000.00", "0"),
        Trade("GLD", "BUY", "1900.00", 3, "0.05", "1900.00", "0"),
        Trade("SPY", "HOLD", "0", 5),
    ],
)


def test_pipeline_rotation_sells_all_then_buys_two_and_completes(
    paper: PaperBroker, clock: FixedClock
) -> None:
    [disposition] = run([ROTATION], paper, clock)

    assert topics_of(disposition) == [TE, WC]
    traded, completed = values_of(disposition)
    assert traded["success"] is True
    assert traded["orders_placed"] == 3
    assert traded["orders_succeeded"] == 3
    assert traded["failure_reason"] is None
    assert traded["execution_data"]["status"] == "success"
    assert traded["execution_data"]["total_trade_value"] == "14900.00"
    assert completed["summary"] == {
        "orders_placed": 3,
        "orders_succeeded": 3,
        "plan_id": "plan-rot",
        "total_trade_value": "14900.00",
    }
    assert orders_at(paper) == [
        ("TQQQ", "SELL", Decimal(100), "filled"),
        ("VTI", "BUY", Decimal(20), "filled"),
        ("GLD", "BUY", Decimal(10), "filled"),
    ]
    assert paper.get_position_qty("TQQQ") == 0
    assert paper.get_account().cash == Decimal("20000.00") + 8000 - 5000 - 1900
    ids = [o["client_order_id"] for o in traded["execution_data"]["orders"]]
    assert ids == [
        client_order_id("plan-rot", "TQQQ", OrderSide.SELL),
        client_order_id("plan-rot", "VTI", OrderSide.BUY),
        client_order_id("plan-rot", "GLD", OrderSide.BUY),
    ]


def test_pipeline_outputs_carry_causation_keys_and_headers(
    paper: PaperBroker, clock: FixedClock
) -> None:
    [disposition] = run([ROTATION], paper, clock)

    records: list[ProducerRecord] = list(producer_records(disposition, TOPICS))
    for produced in records:
        body = json.loads(produced.value)
        assert produced.key == b"corr-plan-rot"
        assert body["causation_id"] == "evt-plan-rot"
        assert body["correlation_id"] == "corr-plan-rot"
        assert body["event_id"] == derived_event_id("evt-plan-rot", body["event_type"])
        assert body["timestamp"] == "2026-11-30T14:30:05Z"
        assert body["source_module"] == "rebalance_stream"
        assert produced.header("event_type") == body["event_type"].encode()
        assert produced.header("event_id") == body["event_id"].encode()
        assert produced.header("causation_id") == b"evt-plan-rot"
        assert produced.header("correlation_id") == b"corr-plan-rot"
        assert produced.header("schema_version") == b"1.0"


def test_pipeline_no_trade_plan_completes_without_any_broker_call(clock: FixedClock) -> None:
    broker = CountingBroker(started_broker(clock=clock))
    plan = planned("plan-hold", [Trade("SPY", "HOLD", "0", 5)], trades_required=False)

    [disposition] = run([plan], broker, clock)

    assert topics_of(disposition) == [TE, WC]
    traded, _ = values_of(disposition)
    assert traded["orders_placed"] == 0
    assert traded["execution_data"]["metadata"]["scenario"] == "no_trades_needed"
    assert traded["source_component"] == "skip_when_no_trades"
    assert broker.clock_calls == 0
    assert broker.list_orders("") == []


PARTIAL = planned(
    "plan-part",
    [
        Trade("ARKK", "BUY", "800.00", 1, "0.01", "800.00", "0"),
        Trade("VTI", "BUY", "500.00", 2, "0.05", "500.00", "0"),
    ],
)


def test_pipeline_partial_fill_fails_when_partial_counts_as_failure(
    paper: PaperBroker, clock: FixedClock
) -> None:
    config = PipelineConfig(treat_partial_execution_as_failure=True)

    [disposition] = run([PARTIAL], paper, clock, config)

    assert topics_of(disposition) == [TE, WF]
    traded, failed = values_of(disposition)
    reason = "partial execution: 1/2 orders filled; failed: ARKK"
    assert traded["success"] is False
    assert traded["failure_reason"] == reason
    assert traded["failed_symbols"] == ["ARKK"]
    assert traded["execution_data"]["status"] == "partial_success"
    assert failed["failure_step"] == "execution"
    assert failed["failure_reason"] == reason
    assert failed["error_details"]["reason_code"] == "PARTIAL_EXECUTION"
    assert orders_at(paper) == [
        ("ARKK", "BUY", Decimal(10), "canceled"),
        ("VTI", "BUY", Decimal(2), "filled"),
    ]


def test_pipeline_partial_fill_completes_when_partial_is_accepted(
    paper: PaperBroker, clock: FixedClock
) -> None:
    config = PipelineConfig(treat_partial_execution_as_failure=False)

    [disposition] = run([PARTIAL], paper, clock, config)

    assert topics_of(disposition) == [TE, WC]
    traded, completed = values_of(disposition)
    assert traded["success"] is True
    assert traded["failure_reason"] == "partial execution: 1/2 orders filled; failed: ARKK"
    assert completed["summary"]["orders_succeeded"] == 1


def test_pipeline_duplicate_plan_id_and_redelivery_produce_nothing_more(
    paper: PaperBroker, clock: FixedClock
) -> None:
    resent = {**ROTATION, "event_id": "evt-plan-rot-resent"}

    first, redelivered, new_event = run([ROTATION, ROTATION, resent], paper, clock)

    assert topics_of(first) == [TE, WC]
    assert topics_of(redelivered) == []
    assert redelivered.skipped is not None
    assert redelivered.skipped.reason_code == "DUPLICATE_EVENT"
    assert topics_of(new_event) == []
    assert new_event.skipped is not None
    assert new_event.skipped.reason_code == "DUPLICATE_PLAN"
    assert len(paper.list_orders("rs1-")) == 3


def test_pipeline_plan_id_conflict_fails_without_orders(
    paper: PaperBroker, clock: FixedClock
) -> None:
    hold = planned("plan-x", [Trade("SPY", "HOLD", "0", 5)], trades_required=False)
    changed = planned("plan-x", [Trade("VTI", "BUY", "500.00", 1)], event_id="evt-plan-x-2")

    _, conflict = run([hold, changed], paper, clock)

    assert topics_of(conflict) == [WF]
    [failed] = values_of(conflict)
    assert failed["failure_step"] == "validation"
    assert failed["error_details"]["reason_code"] == "PLAN_ID_CONFLICT"
    assert failed["causation_id"] == "evt-plan-x-2"
    assert paper.list_orders("") == []


def test_pipeline_stale_plan_fails_without_orders(paper: PaperBroker, clock: FixedClock) -> None:
    config = PipelineConfig(max_plan_age=timedelta(minutes=10))
    clock.advance(3600)

    [disposition] = run([ROTATION], paper, clock, config)

    assert topics_of(disposition) == [WF]
    [failed] = values_of(disposition)
    assert failed["failure_step"] == "validation"
    assert failed["error_details"]["reason_code"] == "PLAN_STALE"
    assert paper.list_orders("") == []


def test_pipeline_risk_breach_fails_with_zero_orders(paper: PaperBroker, clock: FixedClock) -> None:
    big = planned("plan-big", [Trade("SPY", "BUY", "150000.00", 1)])

    [disposition] = run([big], paper, clock)

    assert topics_of(disposition) == [TE, WF]
    traded, failed = values_of(disposition)
    assert traded["success"] is False
    assert traded["orders_placed"] == 0
    assert traded["failed_symbols"] == ["SPY"]
    assert failed["failure_step"] == "risk"
    assert failed["error_details"]["reason_code"] == "NOTIONAL_EXCEEDS_MAX_PER_ORDER"
    assert paper.list_orders("") == []


def test_pipeline_kill_switch_halted_fails_with_zero_orders(
    paper: PaperBroker, clock: FixedClock
) -> None:
    [disposition] = run([ROTATION], paper, clock, kill_switch=KillSwitch.HALTED)

    assert topics_of(disposition) == [TE, WF]
    traded, failed = values_of(disposition)
    assert traded["orders_placed"] == 0
    assert failed["failure_step"] == "risk"
    assert failed["error_details"]["reason_code"] == "KILL_SWITCH_HALTED"
    assert paper.list_orders("") == []


def test_pipeline_closed_market_completes_with_zero_orders(clock: FixedClock) -> None:
    broker = started_broker(paper_account(market="closed"), clock)

    [disposition] = run([ROTATION], broker, clock)

    assert topics_of(disposition) == [TE, WC]
    traded, _ = values_of(disposition)
    assert traded["success"] is True
    assert traded["orders_placed"] == 0
    assert traded["execution_data"]["metadata"]["scenario"] == "market_closed"
    assert broker.list_orders("") == []


def test_pipeline_clock_failure_under_fail_policy_fails_at_market_gate(
    paper: PaperBroker, clock: FixedClock
) -> None:
    broker = ClockFailingBroker(paper)
    config = PipelineConfig(market_clock_failure=MarketClockFailure.FAIL)

    [disposition] = run([ROTATION], broker, clock, config)

    assert topics_of(disposition) == [TE, WF]
    traded, failed = values_of(disposition)
    assert traded["success"] is False
    assert traded["orders_placed"] == 0
    assert failed["failure_step"] == "market_gate"
    assert failed["error_details"]["reason_code"] == "MARKET_CLOCK_UNAVAILABLE"
    assert paper.list_orders("") == []


def test_pipeline_clock_failure_under_proceed_policy_executes(
    paper: PaperBroker, clock: FixedClock
) -> None:
    broker = ClockFailingBroker(paper)
    config = PipelineConfig(market_clock_failure=MarketClockFailure.PROCEED)

    [disposition] = run([ROTATION], broker, clock, config)

    assert topics_of(disposition) == [TE, WC]
    assert broker.clock_calls == 1
    assert len(paper.list_orders("rs1-")) == 3


def test_pipeline_malformed_bytes_are_dead_lettered_and_later_plans_run(
    paper: PaperBroker, clock: FixedClock
) -> None:
    broken = b'{"event_id": "evt-broken", "rebalance_plan": [1,'

    bad, good = run([broken, ROTATION], paper, clock)

    assert topics_of(bad) == [DLQ]
    [dead] = producer_records(bad, TOPICS)
    assert dead.value == broken
    assert dead.header("dlq.failure_step") == b"decode"
    assert dead.header("dlq.error.type") == b"DecodeError"
    assert dead.header("dlq.source.offset") == b"0"
    assert dead.header("origin") == b"test"
    assert topics_of(good) == [TE, WC]


def test_pipeline_schema_invalid_plan_is_dead_lettered_then_failed(
    paper: PaperBroker, clock: FixedClock
) -> None:
    invalid = planned("plan-bad", [Trade("SPY", "BUY", "-500.00", 1)])

    [disposition] = run([invalid], paper, clock)

    assert topics_of(disposition) == [DLQ, WF]
    [failed] = values_of(disposition)
    assert failed["failure_step"] == "validation"
    assert failed["error_details"]["reason_code"] == "SCHEMA_INVALID"
    assert failed["error_details"]["original_event_id"] == "evt-plan-bad"
    assert failed["error_details"]["offset"] == {
        "offset": 0,
        "partition": 0,
        "topic": "rebalance.planned",
    }
    assert paper.list_orders("") == []


@pytest.mark.parametrize("accounts", [["a", "b", "a", "c", "b", "a"]])
def test_pipeline_many_accounts_each_plan_decided_once(
    paper: PaperBroker, clock: FixedClock, accounts: list[str]
) -> None:
    plans = [
        planned(f"plan-{i}", [Trade("VTI", "BUY", "100.00", 1)], account_id=account)
        for i, account in enumerate(accounts)
    ]

    dispositions = run(plans, paper, clock)

    assert [d.position.offset for d in dispositions] == list(range(len(accounts)))
    assert [topics_of(d) for d in dispositions] == [[TE, WC]] * len(accounts)
    assert len(paper.list_orders("rs1-")) == len(accounts)


def test_pipeline_same_input_twice_gives_the_same_bytes() -> None:
    first_clock, second_clock = FixedClock(), FixedClock()

    [first] = run([ROTATION], started_broker(clock=first_clock), first_clock)
    [second] = run([ROTATION], started_broker(clock=second_clock), second_clock)

    first_values = [r.value for r in producer_records(first, TOPICS)]
    second_values = [r.value for r in producer_records(second, TOPICS)]
    assert first_values == second_values
    assert len(first_values) == 2


class LookupCountingLedger(InMemoryLedger):
    """The in-memory ledger, counting its published-input reads."""

    lookups = 0

    def published_inputs(self, input_digests: Collection[str]) -> dict[str, PublishedInput]:
        self.lookups += 1
        return super().published_inputs(input_digests)


@pytest.mark.parametrize(("skip_published", "lookups"), [(True, 2), (False, 0)])
def test_pipeline_reads_published_inputs_only_when_configured_to(
    paper: PaperBroker, clock: FixedClock, skip_published: bool, lookups: int
) -> None:
    """Where the source already settled published inputs, the pipeline does not read them
    again: the input that is one after all is decided by dedupe, the same way."""
    ledger = LookupCountingLedger()
    deps = PipelineDependencies(broker=paper, ledger=ledger, clock=clock, sleep=clock.advance)
    config = PipelineConfig(skip_published_inputs=skip_published)
    [first] = run_in_process([record(ROTATION, 0)], config, deps)
    ledger.mark_acknowledged(["plan-rot"])

    [again] = run_in_process([record(ROTATION, 1)], config, deps)

    assert first.owns_outcome
    assert again.skipped is not None
    assert again.skipped.reason_code == "DUPLICATE_EVENT"
    assert again.outputs == ()
    assert ledger.lookups == lookups
