"""execute_orders: a validated plan's orders, placed at the broker and followed to the end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from reactivex import operators as ops

from rebalance_stream.brokers.account_reads import AccountReads
from rebalance_stream.brokers.order_watch import OrderWatch
from rebalance_stream.brokers.protocol import Broker
from rebalance_stream.contracts.execution import Scenario
from rebalance_stream.contracts.outcomes import FailureStep
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.operators.flow import Clock, Envelope, Failed, Op, PlanExecution
from rebalance_stream.operators.order_execution import ExecutionConfig, PlanOrderExecutor
from rebalance_stream.operators.order_pool import OrderPool
from rebalance_stream.operators.order_recording import OrderRecording, always_active
from rebalance_stream.operators.risk import KillSwitch
from rebalance_stream.operators.step import guarded

log = structlog.get_logger(__name__)

STEP = "execute_orders"


def execute_orders(  # noqa: PLR0913 - each is an injected dependency
    broker: Broker,
    config: ExecutionConfig,
    clock: Clock,
    sleep: Callable[[float], None],
    recording: OrderRecording | None = None,
    *,
    watch: OrderWatch | None = None,
    kill_switch: Callable[[], KillSwitch] = always_active,
    pool: OrderPool | None = None,
    account: AccountReads | None = None,
) -> Op[Envelope[Any], Envelope[Any]]:
    """Execute each plan that is still undecided; blocks while its orders run.

    -p1-E0-p2-p3-|   ->   -X1-E0-X2-F-|   (X is a PlanExecution; E0, decided earlier, passes;
                                           F: p3's prices failed the sanity check, 0 orders)
    Run it inside ``serialize_by_account`` so that one account's plans never overlap.
    A resumed plan's orders are looked up at the broker before sizing; a new plan's are
    not (a duplicate client_order_id is refused at submit, and adopted).
    ``recording`` puts each order's intent on record before the order is sent; ``watch``
    follows placed orders (default: REST polling); ``kill_switch`` is read before each order.
    ``pool`` runs the orders' calls (default: a pool of this operator's own, never shut down).
    ``account`` gives positions and buying power (default: read from the broker per plan).
    """
    executor = PlanOrderExecutor(
        broker,
        config,
        clock,
        sleep,
        recording,
        watch=watch,
        kill_switch=kill_switch,
        pool=pool,
        account=account,
    )

    def run(envelope: Envelope[Any], event: RebalancePlanned) -> Envelope[Any]:
        started = clock()
        log.info(
            "plan_execution_started", plan_id=event.rebalance_plan.plan_id, **envelope.log_fields()
        )
        outcome = executor.execute(event.rebalance_plan, look_up_first=envelope.resumed)
        if outcome.denial is not None:
            denial = outcome.denial
            timed = envelope.timed("price_check", outcome.timings_ms.get("price_check", 0))
            log.warning("risk_denied", reason_code=denial.reason_code, **envelope.log_fields())
            return timed.failed(
                Failed(FailureStep.RISK, denial.reason_code, denial.reason, "RiskDenied", step=STEP)
            )
        execution = PlanExecution(Scenario.EXECUTED, outcome.orders, started, clock(), STEP)
        timings = {**envelope.timings_ms, **outcome.timings_ms}
        return envelope.with_payload(execution, timings_ms=timings)

    return ops.map(guarded(FailureStep.EXECUTION, STEP, RebalancePlanned, run))
