"""Two ``rebalance-stream run`` instances in one group trade on one venue (the fake Alpaca server,
over HTTP); one is killed with SIGKILL in the middle of a plan, and the other takes over its
partitions. With either ledger backend: no order is placed twice and every plan gets an outcome.

With SQLite each instance has its own file, so the survivor knows nothing of the killed one's
plans: the order lookup by client_order_id is what keeps each order single. With the Kafka
ledger the survivor restores the killed instance's partitions from the changelog first.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from job_process import JobProcess, OutputReader, job_environment
from portfolio_scenario import ORDERS_PER_PLAN, plan_messages, write_account
from test_chaos_on_kafka import caught_up
from test_job_on_kafka import publish
from test_restart_on_kafka import job_settings

from rebalance_stream.brokers.fake_alpaca.model import OrderQuery
from rebalance_stream.brokers.fake_alpaca.server import FakeAlpacaConfig, FakeAlpacaServer
from rebalance_stream.brokers.paper_account import PaperAccount

pytestmark = pytest.mark.kafka

PLANS = 24
ACCOUNTS = 12  # spread over the three partitions (4, 5 and 3 accounts)
KEY_ID = "PKTWOINSTANCES"
SECRET = "two-instances-secret"
RATE_LIMIT_PER_MIN = 100_000
KILL_AT = "between_orders:1"  # in the first plan instance-a runs
SHARE_TIMEOUT_S = 60.0
POLL_S = 0.2
KILL_WAIT_S = 60.0
DONE_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
INPUT_PARTITIONS = 3
ASSIGNED = '"event": "partitions_assigned"'


def assigned(log: Path) -> list[int]:
    """The input partitions of the last assignment the instance logged ([] before any)."""
    if not log.exists():
        return []
    lines = [line for line in log.read_text(encoding="utf-8").splitlines() if ASSIGNED in line]
    if not lines:
        return []
    names = json.loads(lines[-1])["partitions"]
    return sorted(int(name.rsplit("partition=", 1)[1].rstrip(")")) for name in names)


def split(logs: Path) -> bool:
    """Whether each instance has some of the partitions, and together they have all."""
    first, second = assigned(logs / "instance-a.log"), assigned(logs / "instance-b.log")
    return bool(first and second) and sorted(first + second) == list(range(INPUT_PARTITIONS))


def wait_for(condition: Callable[[], object]) -> bool:
    deadline = time.monotonic() + SHARE_TIMEOUT_S
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(POLL_S)
    return False


@pytest.mark.parametrize("ledger", ["sqlite", "kafka"])
def test_one_of_two_instances_killed_mid_plan_no_order_twice_every_plan_decided(
    kafka_broker: str, topic_factory: Any, tmp_path: Path, ledger: str
) -> None:
    account = PaperAccount.from_file(write_account(tmp_path / "venue.json", latency_ms=20))
    config = FakeAlpacaConfig.from_paper_account(
        account, api_key_id=KEY_ID, secret_key=SECRET, rate_limit_per_min=RATE_LIMIT_PER_MIN
    )
    settings = job_settings(kafka_broker, topic_factory, tmp_path, latency_ms=0).model_copy(
        update={"broker": "alpaca", "topic_ledger_changelog": f"ledger-{uuid.uuid4().hex[:12]}"}
    )
    expected = {f"evt-plan-{i:03d}" for i in range(PLANS)}
    done = settings.topic_workflow_completed
    reader = OutputReader(kafka_broker, [done, settings.topic_workflow_failed])

    with FakeAlpacaServer(config) as venue:

        def instance(name: str, **extra: str) -> JobProcess:
            ledger_name = "kafka" if ledger == "kafka" else str(tmp_path / f"{name}.sqlite")
            env = job_environment(settings, group_instance_id=name, ledger=ledger_name, **extra)
            env.update(
                APCA_API_KEY_ID=KEY_ID,
                APCA_API_SECRET_KEY=SECRET,
                APCA_API_BASE_URL=venue.base_url,
                APCA_API_DATA_URL=venue.base_url,
                REBALANCE_STREAM_ALPACA_STREAM_URL=venue.stream_url,
            )
            return JobProcess(env, tmp_path / f"{name}.log")

        doomed = instance("instance-a", test_crash_at=KILL_AT)
        survivor = instance("instance-b")
        shared = wait_for(lambda: split(tmp_path))
        before = (assigned(tmp_path / "instance-a.log"), assigned(tmp_path / "instance-b.log"))
        publish(kafka_broker, settings.topic_input, plan_messages(PLANS, accounts=ACCOUNTS))
        killed = doomed.wait(KILL_WAIT_S) == -signal.SIGKILL
        doomed.close()
        decided = reader.wait_until(
            lambda r: r.causes(done) >= expected and caught_up(kafka_broker, settings),
            DONE_TIMEOUT_S,
        )
        survivor.signal(signal.SIGTERM)
        survivor_code = survivor.wait(STOP_TIMEOUT_S)
        survivor.close()
        reader.close()
        orders = venue.engine.orders(OrderQuery(status="all", limit=500))

    placed = [order.client_order_id for order in orders]
    assert (killed, decided, survivor_code) == (True, True, 0), f"see {tmp_path}/*.log"
    assert len(placed) == len(set(placed)) == PLANS * ORDERS_PER_PLAN
    assert {order.status for order in orders} == {"filled"}
    assert reader.causes(done) == expected
    assert reader.records[settings.topic_workflow_failed] == []
    assert shared, "the two instances never shared the partitions"
    assert sorted(before[0] + before[1]) == list(range(INPUT_PARTITIONS)), before
    assert assigned(tmp_path / "instance-b.log") == list(range(INPUT_PARTITIONS))  # took over
    print(
        f"two instances, {ledger} ledger: {len(placed)} orders, "
        f"{len(reader.records[done]) - PLANS} outcomes repeated after the takeover"
    )
