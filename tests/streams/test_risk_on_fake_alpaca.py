"""Risk (SPEC 3.10) on a running pipeline, against the fake Alpaca over alpaca-py: each denial
places 0 orders and names its reason; the kill switch file is changed while the pipeline runs,
between plans and in the middle of one."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alpaca_support import fake_venue_config, started_adapter, streaming, wait_until
from plan_factory import Trade, planned
from reactivex.subject import Subject
from support import record

from rebalance_stream.brokers.fake_alpaca import FakeAlpacaServer, Quote, VenueAccount
from rebalance_stream.brokers.fake_alpaca.api import Reply, Request
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.operators.execution_config import ExecutionConfig, PriceSanity
from rebalance_stream.operators.flow import Disposition
from rebalance_stream.operators.order_execution import BETWEEN_ORDERS
from rebalance_stream.operators.risk import KillSwitch, RiskLimits
from rebalance_stream.sinks.routing import OutputTopics, producer_records
from rebalance_stream.streams.kill_switch import KillSwitchReader
from rebalance_stream.streams.pipeline import (
    PipelineConfig,
    PipelineDependencies,
    process_rebalance_plans,
    utc_now,
)

TOPICS = OutputTopics()
TRADES_PATH = "/v2/stocks/trades/latest"
SNAPSHOTS_PATH = "/v2/stocks/snapshots"
QUOTES = {
    "SPY": Quote(Decimal("99.90"), Decimal("100.10")),
    "QQQ": Quote(Decimal("399.80"), Decimal("400.20")),
    "WIDE": Quote(Decimal("45.00"), Decimal("55.00")),
    "TQQQ": Quote(Decimal("80.00"), Decimal("80.00")),
    "GME": Quote(Decimal("20.00"), Decimal("20.00")),
}


class TradePrintingServer(FakeAlpacaServer):
    """The fake venue, except that a symbol in ``trade_prices`` last traded at that price
    (the fake otherwise prints every trade at the quote's mid)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trade_prices: dict[str, Decimal] = {}

    def handle(self, request: Request) -> Reply:
        reply = super().handle(request)
        paths = (TRADES_PATH, SNAPSHOTS_PATH)
        if request.path not in paths or reply.status != 200 or not self.trade_prices:
            return reply
        body = json.loads(reply.body, parse_float=Decimal)  # the quotes' digits unchanged
        for symbol, price in self.trade_prices.items():
            if request.path == TRADES_PATH and symbol in body["trades"]:
                body["trades"][symbol]["p"] = str(price)
            elif request.path == SNAPSHOTS_PATH and symbol in body:
                body[symbol]["latestTrade"]["p"] = str(price)
        return replace(reply, body=json.dumps(body, default=str).encode())


@dataclass
class RunningPipeline:
    """One pipeline instance; plans are pushed one at a time while it keeps running."""

    subject: Subject[Any]
    dispositions: list[Disposition]
    switch_file: Path
    venue: FakeAlpacaServer
    on_checkpoint: Callable[[str], None] = lambda _name: None

    def send(self, document: dict[str, Any]) -> Disposition:
        count = len(self.dispositions)
        self.subject.on_next(record(document, count, received_at=utc_now()))
        assert wait_until(lambda: len(self.dispositions) > count, 30)
        return self.dispositions[count]

    def switch(self, state: KillSwitch) -> None:
        self.switch_file.write_text(state.value)

    def orders(self) -> int:
        return len(self.venue.order_posts())


def outcome_of(disposition: Disposition) -> tuple[list[str], str | None, str | None]:
    """The topics written, and the WorkflowFailed's reason_code and reason, if any."""
    records = producer_records(disposition, TOPICS)
    failed = [json.loads(r.value) for r in records if r.topic == TOPICS.workflow_failed]
    if not failed:
        return [r.topic for r in records], None, None
    reason = failed[0]["failure_reason"]
    return [r.topic for r in records], failed[0]["error_details"]["reason_code"], reason


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningPipeline]:
    account = VenueAccount(
        cash=Decimal(100_000),
        positions={"TQQQ": Decimal(100)},
        quotes=QUOTES,
        fractionable=frozenset({"SPY", "QQQ"}),
    )
    switch_file = tmp_path / "kill-switch"
    switch_file.write_text("active")
    config = PipelineConfig(
        max_plan_age=timedelta(0),
        risk_limits=RiskLimits(
            max_order_notional=Decimal(5_000),
            max_plan_notional=Decimal(8_000),
            max_daily_notional=Decimal(12_000),
            denied_symbols=frozenset({"GME"}),
        ),
        execution=ExecutionConfig(
            poll_interval_s=0.05,
            price_sanity=PriceSanity(Decimal(100), Decimal(300)),
        ),
    )
    with (
        TradePrintingServer(fake_venue_config(account)) as venue,
        started_adapter(venue) as broker,
        streaming(venue, broker) as updates,
    ):
        subject: Subject[Any] = Subject()
        dispositions: list[Disposition] = []
        running = RunningPipeline(subject, dispositions, switch_file, venue)
        deps = PipelineDependencies(
            broker=broker,
            ledger=InMemoryLedger(),
            kill_switch=KillSwitchReader(KillSwitch.ACTIVE, switch_file),
            order_watch=updates,
            checkpoint=lambda name: running.on_checkpoint(name),
        )
        subject.pipe(process_rebalance_plans(config, deps)).subscribe(dispositions.append)
        yield running
        subject.on_completed()


DENIALS = [
    (
        [Trade("SPY", "BUY", "6000.00")],
        "NOTIONAL_EXCEEDS_MAX_PER_ORDER",
        "order notional above max_order_notional 5000: SPY 6000.00",
    ),
    (
        [Trade("SPY", "BUY", "4500.00"), Trade("QQQ", "BUY", "4500.00")],
        "NOTIONAL_EXCEEDS_MAX_PER_PLAN",
        "plan notional 9000.00 above max_plan_notional 8000",
    ),
    ([Trade("GME", "BUY", "100.00")], "SYMBOL_DENIED", "symbols on the deny list: GME"),
    (
        [Trade("WIDE", "BUY", "500.00")],
        "SPREAD_TOO_WIDE",
        "WIDE quote 45.00/55.00 spread 2000.00 bps above 100",
    ),
]


@pytest.mark.parametrize(("trades", "code", "reason"), DENIALS, ids=[d[1] for d in DENIALS])
def test_each_risk_denial_sends_no_order_and_names_its_reason(
    running: RunningPipeline, trades: list[Trade], code: str, reason: str
) -> None:
    disposition = running.send(planned("plan-denied", trades))

    topics, reason_code, message = outcome_of(disposition)
    assert topics == [TOPICS.trade_executed, TOPICS.workflow_failed]
    assert (reason_code, message) == (code, reason)
    assert running.orders() == 0


def test_a_price_far_from_the_fresh_quote_is_denied(running: RunningPipeline) -> None:
    venue = running.venue
    assert isinstance(venue, TradePrintingServer)
    venue.trade_prices["SPY"] = Decimal("104.00")

    disposition = running.send(planned("plan-stale-print", [Trade("SPY", "BUY", "500.00")]))

    _, reason_code, message = outcome_of(disposition)
    assert reason_code == "PRICE_DEVIATES_FROM_QUOTE"
    assert message == "SPY price 104.00 is 400.00 bps from the quote mid 100.00 (above 300)"
    assert running.orders() == 0


def test_the_daily_notional_counts_what_the_running_pipeline_traded(
    running: RunningPipeline,
) -> None:
    first = running.send(planned("plan-day-1", [Trade("SPY", "BUY", "4000.00")]))
    second = running.send(planned("plan-day-2", [Trade("QQQ", "BUY", "4000.00")]))
    third = running.send(planned("plan-day-3", [Trade("SPY", "BUY", "4500.00")]))

    assert (
        outcome_of(first)[0]
        == outcome_of(second)[0]
        == [
            TOPICS.trade_executed,
            TOPICS.workflow_completed,
        ]
    )
    _, reason_code, message = outcome_of(third)
    assert reason_code == "DAILY_NOTIONAL_EXCEEDED"
    assert message is not None
    assert message.startswith("account acct-1 traded ")
    assert message.endswith("plan notional 4500.00 would exceed max_daily_notional 12000")
    assert running.orders() == 2


def test_kill_switch_states_changed_while_running(running: RunningPipeline) -> None:
    running.switch(KillSwitch.HALTED)
    halted = running.send(planned("plan-halted", [Trade("TQQQ", "SELL", "-800.00")]))
    running.switch(KillSwitch.REDUCING)
    reducing_buy = running.send(planned("plan-reducing-buy", [Trade("SPY", "BUY", "500.00")]))
    assert running.orders() == 0
    reducing_sell = running.send(planned("plan-reducing-sell", [Trade("TQQQ", "SELL", "-800.00")]))
    running.switch(KillSwitch.ACTIVE)
    active = running.send(planned("plan-active", [Trade("SPY", "BUY", "500.00")]))

    assert outcome_of(halted)[1:] == (
        "KILL_SWITCH_HALTED",
        "kill switch is halted: no orders are placed",
    )
    assert outcome_of(reducing_buy)[1:] == (
        "KILL_SWITCH_REDUCING",
        "kill switch is reducing (sells only); plan buys SPY",
    )
    assert outcome_of(reducing_sell)[1] is None
    assert outcome_of(active)[1] is None
    assert [json.loads(body)["side"] for body, _ in running.venue.order_posts()] == ["sell", "buy"]


def test_kill_switch_halted_in_the_middle_of_a_plan_stops_its_next_orders(
    running: RunningPipeline,
) -> None:
    def halt_once_an_order_is_sent(name: str) -> None:
        if name == BETWEEN_ORDERS:
            running.switch(KillSwitch.HALTED)

    running.on_checkpoint = halt_once_an_order_is_sent
    plan = planned(
        "plan-halted-midway",
        [Trade("TQQQ", "SELL", "-800.00", 1), Trade("SPY", "BUY", "500.00", 2)],
    )

    disposition = running.send(plan)

    topics, reason_code, _ = outcome_of(disposition)
    assert topics == [TOPICS.trade_executed, TOPICS.workflow_failed]
    assert reason_code == "PARTIAL_EXECUTION"
    executed = json.loads(producer_records(disposition, TOPICS)[0].value)
    orders = {o["symbol"]: o for o in executed["execution_data"]["orders"]}
    assert (orders["TQQQ"]["status"], orders["TQQQ"]["filled_qty"]) == ("filled", "10")
    assert (orders["SPY"]["status"], orders["SPY"]["attempts"]) == ("not_sent", 0)
    assert orders["SPY"]["error_message"] == (
        "KILL_SWITCH_HALTED: kill switch is halted, no further order is sent"
    )
    assert [json.loads(body)["symbol"] for body, _ in running.venue.order_posts()] == ["TQQQ"]
