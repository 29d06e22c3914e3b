"""What PlanOrderExecutor tells its AccountReads: the positions and buying power it sizes from,
what its buys will spend while they run, what each order filled when it ended, and that the
venue refused an order sized from them."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal

from plan_factory import Trade, planned
from support import FixedClock, paper_account, started_broker

from rebalance_stream.brokers.account_reads import BrokerAccountReads
from rebalance_stream.brokers.protocol import Broker
from rebalance_stream.contracts.client_order_id import client_order_id
from rebalance_stream.contracts.execution import OrderResult, OrderSide
from rebalance_stream.contracts.rebalance import RebalancePlan, RebalancePlanned
from rebalance_stream.operators.order_execution import ExecutionConfig, PlanOrderExecutor

PLAN_ID = "plan-account"


class RecordingAccountReads:
    """BrokerAccountReads that can claim more buying power than the venue has, and records
    every call execution makes."""

    def __init__(self, broker: Broker, extra_buying_power: Decimal = Decimal(0)) -> None:
        self._reads = BrokerAccountReads(broker)
        self._extra = extra_buying_power
        self.calls: list[tuple[str, object]] = []

    def positions(self) -> dict[str, Decimal]:
        self.calls.append(("positions", None))
        return self._reads.positions()

    def buying_power(self, needed: Decimal) -> Decimal:
        self.calls.append(("buying_power", needed))
        return self._reads.buying_power(needed) + self._extra

    @contextmanager
    def spending(self, cost: Decimal, client_order_ids: Sequence[str]) -> Iterator[None]:
        self.calls.append(("spending", (cost, tuple(client_order_ids))))
        yield
        self.calls.append(("spent", None))

    def orders_ended(self, filled: Mapping[str, Decimal]) -> None:
        self.calls.append(("orders_ended", dict(filled)))

    def stale(self, reason: str) -> None:
        self.calls.append(("stale", reason))


def plan_of(trades: list[Trade]) -> RebalancePlan:
    return RebalancePlanned.model_validate(planned(PLAN_ID, trades)).rebalance_plan


def execute(
    plan: RebalancePlan, extra_buying_power: Decimal = Decimal(0)
) -> tuple[tuple[OrderResult, ...], list[tuple[str, object]]]:
    """The plan's results and the calls execution made, at a paper venue with 1,000.00."""
    broker = started_broker(paper_account(cash="1000.00"), FixedClock())
    account = RecordingAccountReads(broker, extra_buying_power)
    config = ExecutionConfig(poll_interval_s=0.01, buying_power_wait_s=0)
    executor = PlanOrderExecutor(broker, config, FixedClock(), time.sleep, account=account)
    outcome = executor.execute(plan)
    broker.close()
    return outcome.orders, account.calls


SELL_TQQQ_BUY_VTI = [Trade("TQQQ", "SELL", "-800.00", 1), Trade("VTI", "BUY", "500.00", 2)]


def test_execution_reads_sizes_spends_and_reports_each_orders_fill() -> None:
    orders, calls = execute(plan_of(SELL_TQQQ_BUY_VTI))

    sell = client_order_id(PLAN_ID, "TQQQ", OrderSide.SELL)
    buy = client_order_id(PLAN_ID, "VTI", OrderSide.BUY)
    assert [(o.symbol, o.status, o.filled_qty) for o in orders] == [
        ("TQQQ", "filled", Decimal(10)),
        ("VTI", "filled", Decimal(2)),
    ]
    assert calls == [
        ("positions", None),
        ("orders_ended", {sell: Decimal(10)}),
        ("buying_power", Decimal("500.00")),
        ("spending", (Decimal("500.00"), (buy,))),
        ("orders_ended", {buy: Decimal(2)}),
        ("spent", None),
    ]


def test_an_order_the_venue_refuses_makes_the_reads_stale() -> None:
    plan = plan_of([Trade("VTI", "BUY", "5000.00")])  # 20 VTI; the venue has 1,000.00 of cash

    orders, calls = execute(plan, extra_buying_power=Decimal(10_000))

    (vti,) = orders
    assert (vti.symbol, vti.status) == ("VTI", "rejected")
    assert ("stale", "order_rejected") in calls
    assert [name for name, _ in calls] == ["buying_power", "spending", "stale", "spent"]
