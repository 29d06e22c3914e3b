"""Kill -9 chaos under at_least_once: the job is killed again and again, and restarted.

``rebalance-stream run`` runs as a subprocess with the SQLite ledger and the paper broker's
SQLite state. Each iteration kills it with SIGKILL, either at a seeded random moment or at a
test-only crash point (before an order is sent, between orders, after the orders, before the
outputs are published, before the offsets are committed), then starts it again with the same
group instance id. A last clean run finishes what is left. Afterwards: no order twice, every
plan decided, each position exactly as planned, and a repeated output only ever byte-identical.
"""

from __future__ import annotations

import json
import random
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from job_process import JobProcess, OutputReader, job_environment
from portfolio_scenario import (
    ORDERS_PER_PLAN,
    SYMBOLS,
    expected_positions,
    plan_messages,
)
from test_job_on_kafka import committed_offsets, end_offsets, publish
from test_restart_on_kafka import job_settings

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.brokers.paper_account import PaperAccount
from rebalance_stream.streams.crash_points import CHECKPOINTS

pytestmark = pytest.mark.kafka

SEED = 20261130
PLANS = 20
PUBLISHED_FIRST = 8
ITERATIONS = 30
RANDOM_KILL = "random"
RANDOM_KILL_WINDOW_S = (0.5, 3.0)
HOOK_FALLBACK_KILL_S = 8.0
IDLE_CHECK_S = 0.5
FINAL_RUN_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60
KILLED = -signal.SIGKILL


def crash_plan(rng: random.Random) -> list[tuple[str, int]]:
    """Each iteration's kill: a crash point and its pass, or a random moment (pass 0)."""
    kinds = [*CHECKPOINTS, RANDOM_KILL]
    return [(kinds[i % len(kinds)], rng.randint(1, 3)) for i in range(ITERATIONS)]


def run_killed(
    env: dict[str, str], log: Path, kind: str, passes: int, idle: Callable[[], bool]
) -> str:
    """Run the job once and kill it; say who killed it: the crash point, or the test."""
    if kind == RANDOM_KILL:
        job = JobProcess(env, log)
        code = job.wait(random.Random(passes).uniform(*RANDOM_KILL_WINDOW_S))
        job.close()
        assert code in (None, KILLED), f"job exited {code} on its own; see {log}"
        return RANDOM_KILL
    job = JobProcess({**env, "REBALANCE_STREAM_TEST_CRASH_AT": f"{kind}:{passes}"}, log)
    deadline = time.monotonic() + HOOK_FALLBACK_KILL_S
    code = job.wait(IDLE_CHECK_S)
    while code is None and time.monotonic() < deadline and not idle():
        code = job.wait(IDLE_CHECK_S)
    job.close()
    assert code in (None, KILLED), f"job exited {code} on its own; see {log}"
    return kind if code == KILLED else f"{kind} not reached, killed at random"


def caught_up(kafka_broker: str, settings: Any) -> bool:
    return committed_offsets(kafka_broker, settings) == end_offsets(kafka_broker, settings)


def distinct_values_per_cause(records: list[Any]) -> dict[str, set[bytes]]:
    values: dict[str, set[bytes]] = defaultdict(set)
    for r in records:
        values[json.loads(r.value)["causation_id"]].add(r.value)
    return values


@pytest.mark.parametrize(
    ("guarantee", "ledger"),
    [("at_least_once", "sqlite"), ("exactly_once", "sqlite"), ("at_least_once", "kafka")],
)
def test_kill_9_chaos_no_duplicate_orders_no_lost_plans_exact_positions(
    kafka_broker: str, topic_factory: Any, tmp_path: Path, guarantee: str, ledger: str
) -> None:
    rng = random.Random(SEED)
    settings = job_settings(kafka_broker, topic_factory, tmp_path, latency_ms=30).model_copy(
        update={"processing_guarantee": guarantee, "transaction_timeout_ms": 10_000}
    )
    if ledger == "kafka":
        changelog = f"ledger-{uuid.uuid4().hex[:12]}"  # the job creates it, compacted
        settings = settings.model_copy(
            update={"ledger": "kafka", "topic_ledger_changelog": changelog}
        )
    messages = plan_messages(PLANS)
    publish(kafka_broker, settings.topic_input, messages[:PUBLISHED_FIRST])
    later = iter(messages[PUBLISHED_FIRST:])
    env = job_environment(settings)
    log = tmp_path / "job.log"

    kills: Counter[str] = Counter()
    for kind, passes in crash_plan(rng):
        publish(kafka_broker, settings.topic_input, list(islice(later, 1)))
        kills[run_killed(env, log, kind, passes, lambda: caught_up(kafka_broker, settings))] += 1

    reader = OutputReader(
        kafka_broker,
        [
            settings.topic_trade_executed,
            settings.topic_workflow_completed,
            settings.topic_workflow_failed,
        ],
    )
    done = settings.topic_workflow_completed
    final = JobProcess(env, log)
    assert final.wait_for_log("partitions_assigned", FINAL_RUN_TIMEOUT_S), f"see {log}"
    all_decided = reader.wait_until(
        lambda r: (
            len(distinct_values_per_cause(r.records[done])) >= PLANS
            and caught_up(kafka_broker, settings)
        ),
        FINAL_RUN_TIMEOUT_S,
    )
    final.signal(signal.SIGTERM)
    final_code = final.wait(STOP_TIMEOUT_S)
    final.close()
    reader.wait_until(lambda r: False, 1.0)
    reader.close()

    print(f"{guarantee}/{ledger} chaos kills by point: {dict(sorted(kills.items()))}")
    assert (all_decided, final_code) == (True, 0), f"see {log}"
    assert all(kills[point] >= 1 for point in CHECKPOINTS), kills
    expected_causes = {f"evt-plan-{i:03d}" for i in range(PLANS)}
    for topic in (settings.topic_trade_executed, settings.topic_workflow_completed):
        values = distinct_values_per_cause(reader.records[topic])
        assert set(values) == expected_causes, topic
        assert all(len(v) == 1 for v in values.values()), f"{topic}: differing duplicates"
        repeats = len(reader.records[topic]) - PLANS
        print(f"{guarantee}/{ledger} {topic}: {PLANS} outcomes, {repeats} identical repeats")
        if guarantee == "exactly_once":
            assert repeats == 0, f"{topic}: a record seen twice under exactly_once"
    assert reader.records[settings.topic_workflow_failed] == []
    account = PaperAccount.from_file(settings.paper_account or "")
    with PaperBroker(account, state_path=settings.paper_state) as broker:
        orders = broker.list_orders("rs1-")
        positions = {s: broker.get_position_qty(s) for s in SYMBOLS}
    assert len(orders) == PLANS * ORDERS_PER_PLAN
    assert len({o.client_order_id for o in orders}) == len(orders)
    assert {o.status.value for o in orders} == {"filled"}
    assert positions == expected_positions(PLANS)
    assert committed_offsets(kafka_broker, settings) == end_offsets(kafka_broker, settings)
