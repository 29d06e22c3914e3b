"""``rebalance-stream run`` on Alpaca (alpaca-py against the fake Alpaca server over HTTP),
killed with SIGKILL in the middle of plans and restarted: startup reconciliation and the
client_order_id lookup place no order twice, and the Alpaca secret never reaches the logs."""

from __future__ import annotations

import json
import signal
from collections import Counter
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

PLANS = 8
KEY_ID = "PKTESTCHAOS"
SECRET = "alpaca-secret-that-must-never-be-logged-42"
KILLS = ("between_orders:2", "before_order:3", "after_orders:1", "between_orders:4")
KILL_WAIT_S = 30.0
HTTP_429 = 429
FINAL_TIMEOUT_S = 120.0


def test_kill_9_mid_plan_on_alpaca_then_restart_no_order_sent_twice(
    kafka_broker: str, topic_factory: Any, tmp_path: Path
) -> None:
    account = PaperAccount.from_file(write_account(tmp_path / "venue.json", latency_ms=20))
    config = FakeAlpacaConfig.from_paper_account(account, api_key_id=KEY_ID, secret_key=SECRET)
    settings = job_settings(kafka_broker, topic_factory, tmp_path, latency_ms=0).model_copy(
        update={"broker": "alpaca"}
    )
    publish(kafka_broker, settings.topic_input, list(plan_messages(PLANS)))
    log = tmp_path / "job.log"
    with FakeAlpacaServer(config) as venue:
        env = job_environment(settings)
        env.update(
            APCA_API_KEY_ID=KEY_ID,
            APCA_API_SECRET_KEY=SECRET,
            APCA_API_BASE_URL=venue.base_url,
            APCA_API_DATA_URL=venue.base_url,
            REBALANCE_STREAM_ALPACA_STREAM_URL=venue.stream_url,
        )
        killed = []
        for point in KILLS:
            job = JobProcess({**env, "REBALANCE_STREAM_TEST_CRASH_AT": point}, log)
            killed.append(job.wait(KILL_WAIT_S) == -signal.SIGKILL)
            job.close()

        reader = OutputReader(kafka_broker, [settings.topic_workflow_completed])
        expected = {f"evt-plan-{i:03d}" for i in range(PLANS)}
        final = JobProcess(env, log)
        assert final.wait_for_log("partitions_assigned", FINAL_TIMEOUT_S), f"see {log}"
        done = reader.wait_until(
            lambda r: (
                r.causes(settings.topic_workflow_completed) >= expected
                and caught_up(kafka_broker, settings)
            ),
            FINAL_TIMEOUT_S,
        )
        final.signal(signal.SIGTERM)
        final_code = final.wait(KILL_WAIT_S)
        final.close()
        reader.close()
        requests = venue.request_counts()
        posts = venue.order_posts()
        orders = venue.engine.orders(OrderQuery(status="all", limit=500))
        placed = [order.client_order_id for order in orders]

    assert killed == [True] * len(KILLS), f"see {log}"
    assert (done, final_code) == (True, 0), f"see {log}"
    assert reader.causes(settings.topic_workflow_completed) == expected
    assert len(placed) == len(set(placed)) == PLANS * ORDERS_PER_PLAN
    # A client_order_id is sent again only after Alpaca's rate limiter refused it (429).
    sent = [json.loads(body)["client_order_id"] for body, status in posts if status != HTTP_429]
    assert sorted(sent) == sorted(placed)
    assert all(json.loads(body)["qty"] in {"1", "2"} for body, _ in posts)
    assert SECRET not in log.read_text(encoding="utf-8")
    total = sum(requests.values())
    print(
        f"alpaca chaos: {len(KILLS)} kills, {len(posts)} order POSTs, {total} requests, "
        f"{total / len(placed):.1f} requests per order; {dict(Counter(requests).most_common(6))}"
    )
