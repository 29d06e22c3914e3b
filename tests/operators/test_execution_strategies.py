"""The executor's strategies and guards on the paper broker: lookups only where needed,
limit_then_market attempts and their intents, the buying power wait, skip or scale, the kill
switch read before each order, and the price sanity rules."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from plan_factory import Trade, liquidate, planned
from support import FixedClock, paper_account, started_broker

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.brokers.protocol import AccountSnapshot, BrokerOrder, OrderRequest, Quote
from rebalance_stream.contracts.client_order_id import client_order_id, with_attempt
from rebalance_stream.contracts.execution import OrderSide, SkipReason
from rebalance_stream.contracts.rebalance import RebalancePlan, RebalancePlanned
from rebalance_stream.operators.execution_config import (
    ExecutionConfig,
    ExecutionStrategy,
    PriceSanity,
)
from rebalance_stream.operators.order_execution import OrderRecording, PlanOrderExecutor
from rebalance_stream.operators.order_sizing import SizedOrder, buys_cost, scale_buys
from rebalance_stream.operators.price_sanity import check_prices
from rebalance_stream.operators.risk import KillSwitch, RiskDenial

PLAN_ID = "plan-strategies"


def plan_of(trades: list[Trade]) -> RebalancePlan:
    return RebalancePlanned.model_validate(planned(PLAN_ID, trades)).rebalance_plan


class CountingBroker:
    """The paper broker, counting lookups and submits; buying power can lag behind cash."""

    def __init__(self, inner: PaperBroker) -> None:
        self.inner = inner
        self.lookups: list[str] = []
        self.submits: list[str] = []
        self.account_reads = 0
        self.lagging_reads = 0
        self.lag = Decimal(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        self.lookups.append(client_order_id)
        return self.inner.get_order_by_client_id(client_order_id)

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        self.submits.append(request.client_order_id)
        return self.inner.submit_order(request)

    def get_account(self) -> AccountSnapshot:
        self.account_reads += 1
        account = self.inner.get_account()
        if self.account_reads <= self.lagging_reads:
            return AccountSnapshot(account.cash, account.buying_power - self.lag)
        return account


class JournalLog:
    def __init__(self) -> None:
        self.intents: list[list[tuple[str, Decimal]]] = []
        self.terminals: list[list[tuple[str, str]]] = []

    def record_intents(self, intents: Any) -> None:
        self.intents.append([(i.client_order_id, i.qty) for i in intents])

    def record_terminals(self, terminals: Any) -> None:
        self.terminals.append([(t.client_order_id, t.status) for t in terminals])

    def open_intents(self) -> list[Any]:
        return []


def run(
    broker: Any,
    clock: FixedClock,
    plan: RebalancePlan,
    *,
    look_up_first: bool = True,
    **config: Any,
) -> Any:
    executor = PlanOrderExecutor(broker, ExecutionConfig(**config), clock, clock.advance)
    return executor.execute(plan, look_up_first=look_up_first)


ROTATION = [
    liquidate("TQQQ", "-8000.00", priority=1),
    Trade("VTI", "BUY", "10000.00", priority=2),
]


def test_a_new_plan_looks_nothing_up_and_a_repeat_adopts_what_the_broker_refuses(
    paper: PaperBroker, clock: FixedClock
) -> None:
    broker = CountingBroker(paper)
    first = run(broker, clock, plan_of(ROTATION), look_up_first=False)
    placed = paper.list_orders("rs1-")

    again = run(broker, clock, plan_of(ROTATION), look_up_first=False)

    assert [o.status for o in first.orders] == ["filled", "filled"]
    assert paper.list_orders("rs1-") == placed
    # The liquidation sizes to nothing (the position is gone), so that item is looked up;
    # the buy is sent, refused as a duplicate and adopted.
    assert broker.lookups == [
        client_order_id(PLAN_ID, "TQQQ", OrderSide.SELL),
        client_order_id(PLAN_ID, "VTI", OrderSide.BUY),
    ]
    assert broker.submits == [
        client_order_id(PLAN_ID, "TQQQ", OrderSide.SELL),
        client_order_id(PLAN_ID, "VTI", OrderSide.BUY),
        client_order_id(PLAN_ID, "VTI", OrderSide.BUY),
    ]
    assert [(o.status, o.filled_qty) for o in again.orders] == [
        (o.status, o.filled_qty) for o in first.orders
    ]


def test_limit_then_market_sends_the_rest_after_each_partial_fill_with_its_intent(
    clock: FixedClock,
) -> None:
    paper = started_broker(paper_account(fill={"default": {"partial": "0.5"}}), clock)
    log = JournalLog()
    plan = plan_of([Trade("TQQQ", "SELL", "-8000.00")])
    executor = PlanOrderExecutor(
        paper,
        ExecutionConfig(strategy=ExecutionStrategy.LIMIT_THEN_MARKET, max_repegs=1),
        clock,
        clock.advance,
        OrderRecording(log),
    )

    (result,) = executor.execute(plan).orders

    first = client_order_id(PLAN_ID, "TQQQ", OrderSide.SELL)
    ids = [with_attempt(first, n) for n in (1, 2, 3)]
    orders = paper.list_orders("rs1-")
    assert [(o.client_order_id, o.order_type, o.qty, o.filled_qty) for o in orders] == [
        (ids[0], "limit", Decimal(100), Decimal(50)),
        (ids[1], "limit", Decimal(50), Decimal(25)),
        (ids[2], "market", Decimal(25), Decimal(12)),
    ]
    assert log.intents == [
        [(ids[0], Decimal(100))],
        [(ids[1], Decimal(50))],
        [(ids[2], Decimal(25))],
    ]
    assert log.terminals == [[(i, "canceled") for i in ids]]
    assert (result.filled_qty, result.attempts, result.success) == (Decimal(87), 3, False)
    paper.close()


def test_buys_wait_until_the_sell_proceeds_show_in_buying_power(
    paper: PaperBroker, clock: FixedClock
) -> None:
    broker = CountingBroker(paper)
    broker.lagging_reads, broker.lag = 2, Decimal("8000.00")
    plan = plan_of([liquidate("TQQQ", "-8000.00", 1), Trade("VTI", "BUY", "27500.00", 2)])

    outcome = run(broker, clock, plan, buying_power_wait_s=5.0, poll_interval_s=0.5)

    assert [(o.symbol, o.status) for o in outcome.orders] == [("TQQQ", "filled"), ("VTI", "filled")]
    assert broker.account_reads == 3
    assert outcome.timings_ms["buying_power_wait"] == 1000


def test_buys_the_wait_does_not_cover_are_skipped_when_it_ends(
    paper: PaperBroker, clock: FixedClock
) -> None:
    broker = CountingBroker(paper)
    broker.lagging_reads, broker.lag = 100, Decimal("8000.00")
    plan = plan_of([liquidate("TQQQ", "-8000.00", 1), Trade("VTI", "BUY", "27500.00", 2)])

    outcome = run(broker, clock, plan, buying_power_wait_s=2.0, poll_interval_s=0.5)

    sell, buy = outcome.orders
    assert sell.status == "filled"
    assert (buy.skipped, buy.skip_reason) == (True, SkipReason.INSUFFICIENT_BUYING_POWER)
    assert broker.account_reads == 5
    assert broker.submits == [sell.client_order_id]


def test_the_kill_switch_is_read_before_each_order(paper: PaperBroker, clock: FixedClock) -> None:
    states = iter([KillSwitch.ACTIVE, KillSwitch.REDUCING])
    executor = PlanOrderExecutor(
        paper, ExecutionConfig(), clock, clock.advance, kill_switch=lambda: next(states)
    )

    sell, buy = executor.execute(plan_of(ROTATION)).orders

    assert sell.status == "filled"
    assert (buy.status, buy.attempts, buy.success) == ("not_sent", 0, False)
    assert buy.error_message == (
        "KILL_SWITCH_REDUCING: kill switch is reducing (sells only), no buy is sent"
    )
    assert [o.symbol for o in paper.list_orders("rs1-")] == ["TQQQ"]


def test_a_price_sanity_breach_sends_no_order(paper: PaperBroker, clock: FixedClock) -> None:
    class WideQuotes(CountingBroker):
        def get_quotes(self, symbols: Any) -> dict[str, Quote]:
            return {"VTI": Quote(Decimal("240.00"), Decimal("260.00"))}

    broker = WideQuotes(paper)

    outcome = run(broker, clock, plan_of(ROTATION), price_sanity=PriceSanity(Decimal(100)))

    assert outcome.orders == ()
    assert outcome.denial == RiskDenial(
        "SPREAD_TOO_WIDE", "VTI quote 240.00/260.00 spread 800.00 bps above 100"
    )
    assert broker.submits == []


QUOTE = Quote(Decimal("99.00"), Decimal("101.00"))


@pytest.mark.parametrize(
    ("prices", "sanity", "expected"),
    [
        ({"SPY": Decimal(100)}, PriceSanity(None, None), None),
        ({"SPY": Decimal(100)}, PriceSanity(Decimal(200), None), None),
        ({"SPY": Decimal(106)}, PriceSanity(None, Decimal(500)), "PRICE_DEVIATES_FROM_QUOTE"),
        ({"SPY": Decimal(105)}, PriceSanity(None, Decimal(500)), None),
        ({"SPY": None}, PriceSanity(Decimal(1), Decimal(1)), "SPREAD_TOO_WIDE"),
        ({"QQQ": Decimal(1)}, PriceSanity(Decimal(1), Decimal(1)), None),
    ],
)
def test_check_prices_rules(
    prices: dict[str, Decimal | None], sanity: PriceSanity, expected: str | None
) -> None:
    denial = check_prices(prices, {"SPY": QUOTE}, sanity)
    assert (denial.reason_code if denial else None) == expected


def sized(symbol: str, qty: str, price: str, fractionable: bool = False) -> SizedOrder:
    return SizedOrder(
        symbol,
        OrderSide.BUY,
        f"id-{symbol}",
        1,
        Decimal(qty),
        Decimal(price),
        fractionable=fractionable,
    )


def test_scale_buys_shrinks_each_buy_by_one_factor_rounding_down() -> None:
    buys = [sized("SPY", "30", "100"), sized("VTI", "10", "250", fractionable=True)]

    scaled = scale_buys(buys, Decimal(2750), Decimal(1))

    assert buys_cost(buys) == Decimal(5500)
    assert [(o.qty, o.skip) for o in scaled] == [(Decimal(15), None), (Decimal(5), None)]


def test_scale_buys_skips_a_buy_scaled_to_nothing_and_keeps_buys_that_fit() -> None:
    buys = [sized("SPY", "1", "100"), sized("VTI", "4", "250")]

    assert scale_buys(buys, Decimal(1100), Decimal(1)) == buys
    scaled = scale_buys(buys, Decimal(500), Decimal(1))
    assert [(o.qty, o.skip) for o in scaled] == [
        (Decimal(0), SkipReason.INSUFFICIENT_BUYING_POWER),
        (Decimal(1), None),
    ]


def test_a_buy_reserves_buying_power_at_the_ask_when_above_its_price() -> None:
    order = sized("SPY", "10", "100")

    assert order.costed_at(Decimal("101.00")).cost == Decimal("1010.00")
    assert order.costed_at(Decimal("99.00")).cost == Decimal(1000)
