"""``rebalance-stream replay`` on the real local Kafka, after the real job decided the plans.

One module-scoped run of the job (SqliteLedger, paper broker) records the outcomes; each test
replays its inputs read-only and checks what the replay selected, reported or published.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # type: ignore[import-untyped]
from plan_factory import Trade, planned
from structlog.testing import capture_logs
from support import paper_account
from test_job_on_kafka import run_job_until

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.contracts.wire import format_timestamp
from rebalance_stream.ledger.protocol import decode_outputs
from rebalance_stream.ledger.sqlite import SqliteLedger
from rebalance_stream.sinks.routing import event_record
from rebalance_stream.streams.local_kafka import create_topics
from rebalance_stream.streams.replay import (
    EXIT_AUDIT_MISMATCH,
    EXIT_BAD_ARGUMENTS,
    EXIT_OK,
    ReplayOptions,
    ReplayReport,
    replay_main,
    run_replay,
)
from rebalance_stream.streams.replay_modes import DIFFERS, MISSING, UNRECORDED
from rebalance_stream.streams.runner import EXIT_OK as JOB_EXIT_OK
from rebalance_stream.streams.runner import output_topics
from rebalance_stream.streams.settings import Settings

pytestmark = pytest.mark.kafka

PLANS = 6
PARTITIONS = 2
STEP_MS = 1000
OUTPUT_KINDS = ("te", "wc", "wf")
READ_TIMEOUT_S = 10


@dataclass(frozen=True)
class Published:
    partition: int
    offset: int
    timestamp_ms: int
    plan_id: str | None


@dataclass(frozen=True)
class Decided:
    """The job's run: its settings, its ledger file, and the inputs as published."""

    settings: Settings
    ledger: Path
    inputs: list[Published]
    broker: PaperBroker


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_topics(kafka_broker: str, *prefixes: str, partitions: int = 1) -> list[str]:
    names = [unique(prefix) for prefix in prefixes]
    create_topics(kafka_broker, names, partitions)
    return names


def produce(
    kafka_broker: str, topic: str, messages: list[tuple[int, int | None, bytes | None, bytes]]
) -> list[int]:
    """Send (partition, timestamp_ms or None for now, key, value) in order; return the offsets."""
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks="all")
    futures = [
        producer.send(topic, key=key, value=value, partition=partition, timestamp_ms=ts_ms)
        for partition, ts_ms, key, value in messages
    ]
    producer.flush()
    offsets = [future.get(timeout=10).offset for future in futures]
    producer.close()
    return offsets


def encoded(document: dict[str, Any]) -> tuple[bytes, bytes]:
    return document["rebalance_plan"]["account_id"].encode(), json.dumps(document).encode()


@pytest.fixture(scope="module")
def decided(kafka_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Decided]:
    """Six plans and a risk breach decided by the real job, plus an undecodable record; the
    inputs alternate partitions and carry timestamps one second apart, ten minutes ago."""
    [input_topic] = new_topics(kafka_broker, "in", partitions=PARTITIONS)
    te, wc, wf, dlq = new_topics(kafka_broker, *OUTPUT_KINDS, "dlq")
    ledger_path = tmp_path_factory.mktemp("replay") / "ledger.sqlite"
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker,
        group_id=unique("group"),
        session_timeout_ms=6000,
        topic_input=input_topic,
        topic_trade_executed=te,
        topic_workflow_completed=wc,
        topic_workflow_failed=wf,
        topic_dead_letter=dlq,
        max_plan_age_s=0,
        ledger=str(ledger_path),
    )
    plans = [
        planned(f"plan-{i}", [Trade("VTI", "BUY", "250.00", 1)], account_id=f"acct-{i % 3}")
        for i in range(PLANS)
    ]
    plans.append(planned("plan-risk", [Trade("VTI", "BUY", "200000.00", 1)], account_id="acct-0"))
    values: list[tuple[str | None, bytes | None, bytes]] = [
        (p["rebalance_plan"]["plan_id"], *encoded(p)) for p in plans
    ]
    values.insert(3, (None, b"acct-1", b"{not json"))
    base_ms = int((datetime.now(UTC) - timedelta(minutes=10)).timestamp() * 1000)
    messages: list[tuple[int, int | None, bytes | None, bytes]] = [
        (i % PARTITIONS, base_ms + i * STEP_MS, key, value)
        for i, (_, key, value) in enumerate(values)
    ]
    offsets = produce(kafka_broker, input_topic, messages)
    inputs = [
        Published(partition, offset, ts_ms or 0, plan_id)
        for (partition, ts_ms, _, _), offset, (plan_id, _, _) in zip(
            messages, offsets, values, strict=True
        )
    ]
    broker = PaperBroker(paper_account(cash="100000.00"))
    broker.start()
    ledger = SqliteLedger(ledger_path)
    code, _, _ = run_job_until(settings, broker, len(inputs), ledger)
    ledger.close()
    assert code == JOB_EXIT_OK
    yield Decided(settings, ledger_path, inputs, broker)
    broker.close()


def replay(settings: Settings, **options: Any) -> tuple[ReplayReport, list[dict[str, Any]]]:
    """Run the replay with a JSON report; return the report and the JSON lines but the last
    (the summary)."""
    out = io.StringIO()
    report = run_replay(
        settings, ReplayOptions(json_lines=True, progress_bar=False, **options), out
    )
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[-1] == {"summary": report.counts, "records": report.records}
    return report, lines[:-1]


def positions(lines: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return sorted((line["partition"], line["offset"]) for line in lines)


def committed(
    kafka_broker: str, group_id: str, topic: str, partitions: int = PARTITIONS
) -> dict[int, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker, group_id=group_id)
    found = {p: consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    consumer.close()
    return found


def ledger_state(path: Path) -> tuple[str, int, dict[str, int]]:
    """The file's sha256 and mtime, and the row count of each table."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    tables = ("plans", "events", "intents", "terminals")
    rows = {t: connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # noqa: S608
    connection.close()
    return digest, path.stat().st_mtime_ns, rows


def recorded_outputs(path: Path) -> dict[str, Any]:
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    rows = connection.execute("SELECT plan_id, outputs FROM plans").fetchall()
    connection.close()
    return {plan_id: decode_outputs(outputs) for plan_id, outputs in rows}


def read_all(kafka_broker: str, topic: str, expected: int) -> list[Any]:
    """The records of a one-partition topic, which must hold exactly ``expected``; stops as
    soon as they are read (read_committed)."""
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker, isolation_level="read_committed")
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    assert consumer.end_offsets([partition])[partition] == expected, topic
    records: list[Any] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
    consumer.close()
    assert len(records) == expected, topic
    return records


def as_sent(record: Any) -> tuple[str, bytes | None, bytes, tuple[tuple[str, bytes], ...]]:
    return record.topic, record.key, record.value, tuple(tuple(h) for h in record.headers)


def with_outputs(settings: Settings, kafka_broker: str) -> Settings:
    te, wc, wf = new_topics(kafka_broker, *OUTPUT_KINDS)
    return settings.model_copy(
        update={
            "topic_trade_executed": te,
            "topic_workflow_completed": wc,
            "topic_workflow_failed": wf,
        }
    )


def test_replay_by_offset_selects_exactly_those_records_and_commits_only_when_asked(
    kafka_broker: str, decided: Decided
) -> None:
    settings = decided.settings
    group = unique("replay-group")
    live_before = committed(kafka_broker, settings.group_id, settings.topic_input)

    report, lines = replay(settings, from_offset="0:1,1:1", to_offset="0:3", commit=group)

    expected = [
        (p.partition, p.offset)
        for p in decided.inputs
        if (p.partition == 0 and 1 <= p.offset < 3) or (p.partition == 1 and p.offset >= 1)
    ]
    ends = {1: max(p.offset for p in decided.inputs if p.partition == 1) + 1}
    assert report.exit_code == EXIT_OK
    assert positions(lines) == sorted(expected)
    assert committed(kafka_broker, group, settings.topic_input) == {0: 3, 1: ends[1]}
    assert committed(kafka_broker, settings.group_id, settings.topic_input) == live_before


def test_replay_by_timestamp_selects_exactly_the_records_in_the_half_open_interval(
    decided: Decided,
) -> None:
    first, last = decided.inputs[2].timestamp_ms, decided.inputs[6].timestamp_ms
    as_iso = [datetime.fromtimestamp(ms / 1000, UTC).isoformat() for ms in (first, last)]

    with capture_logs() as logs:
        report, lines = replay(
            decided.settings, from_time=as_iso[0], to_time=as_iso[1], progress_every=2
        )

    expected = [(p.partition, p.offset) for p in decided.inputs if first <= p.timestamp_ms < last]
    assert len(expected) == 4
    assert positions(lines) == sorted(expected)
    assert report.records == len(expected)
    progress = [e["records"] for e in logs if e["event"] == "replay_progress"]
    assert progress == [2, 4]
    assert [e["records"] for e in logs if e["event"] == "replay_finished"] == [4]


def test_replay_dry_run_reports_what_the_job_would_do_and_claims_nothing(
    kafka_broker: str, decided: Decided
) -> None:
    [topic] = new_topics(kafka_broker, "in-dry")
    settings = decided.settings.model_copy(update={"topic_input": topic, "max_plan_age_s": 3600})
    plan_0 = planned("plan-0", [Trade("VTI", "BUY", "250.00", 1)], account_id="acct-0")
    conflicting = planned("plan-1", [Trade("VTI", "BUY", "999.00", 1)], event_id="evt-x")
    # The replay judges staleness by the wall clock: the fresh plan is timed now.
    now = format_timestamp(datetime.now(UTC))
    fresh = planned("plan-fresh", [Trade("VTI", "BUY", "250.00", 1)], timestamp=now)
    old = planned("plan-old", [Trade("VTI", "BUY", "250.00", 1)], timestamp="2026-01-02T00:00:00Z")
    invalid = planned("plan-bad", [Trade("VTI", "BUY", "-5.00", 1)])
    documents = [plan_0, {**plan_0, "event_id": "evt-plan-0-again"}, conflicting, fresh, fresh, old]
    values = [encoded(d) for d in documents] + [(b"acct-1", b"{not json"), encoded(invalid)]
    produce(kafka_broker, topic, [(0, None, key, value) for key, value in values])
    ledger_before = ledger_state(decided.ledger)
    outputs = [settings.topic_trade_executed, settings.topic_workflow_completed]
    ends_before = end_offsets(kafka_broker, outputs)
    orders_before = decided.broker.list_orders("rs1-")

    report, lines = replay(settings, from_offset="0", dry_run=True)

    assert [line["verdict"] for line in lines] == [
        "duplicate (decided: completed)",
        "duplicate (decided: completed)",
        "conflict (would fail PLAN_ID_CONFLICT)",
        "new plan (would execute)",
        "duplicate (of a plan this replay would execute)",
        "stale (would fail PLAN_STALE)",
        "dead-letter (MALFORMED_JSON)",
        "dead-letter (SCHEMA_INVALID)",
    ]
    assert report.counts == {"conflict": 1, "dead-letter": 2, "duplicate": 3, "new": 1, "stale": 1}
    assert ledger_state(decided.ledger) == ledger_before
    assert end_offsets(kafka_broker, outputs) == ends_before
    assert decided.broker.list_orders("rs1-") == orders_before
    assert committed(kafka_broker, settings.group_id, topic, partitions=1) == {0: None}


def end_offsets(kafka_broker: str, topics: list[str]) -> dict[str, int]:
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker)
    ends = consumer.end_offsets([TopicPartition(t, 0) for t in topics])
    consumer.close()
    return {tp.topic: offset for tp, offset in ends.items()}


def test_replay_audit_of_the_job_outputs_passes(decided: Decided) -> None:
    report, lines = replay(decided.settings, from_offset="0", audit=True)

    assert report.exit_code == EXIT_OK
    assert lines == []
    assert report.counts == {"not a plan": 1, "plans audited": PLANS + 1, "plans in range": 7}


def test_replay_audit_flags_planted_mismatches_and_exits_4(
    kafka_broker: str, decided: Decided, capsys: pytest.CaptureFixture[str]
) -> None:
    original = decided.settings
    settings = with_outputs(original, kafka_broker)
    traded = read_all(kafka_broker, original.topic_trade_executed, PLANS + 1)
    completed = read_all(kafka_broker, original.topic_workflow_completed, PLANS)
    failed = read_all(kafka_broker, original.topic_workflow_failed, 1)
    tampered = traded[0]
    dropped = completed[0]
    planted_id = str(uuid.uuid4()).encode()
    headers = dict(tampered.headers)
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks="all")
    copies = [(settings.topic_trade_executed, r) for r in traded[1:]]
    copies += [(settings.topic_workflow_completed, r) for r in completed[1:]]
    copies += [(settings.topic_workflow_failed, r) for r in failed]
    for topic, record in copies:
        producer.send(topic, key=record.key, value=record.value, headers=record.headers)
    producer.send(
        settings.topic_trade_executed,
        key=tampered.key,
        value=tampered.value + b" ",
        headers=tampered.headers,
    )
    producer.send(
        settings.topic_workflow_failed,
        key=tampered.key,
        value=b"{}",
        headers=[("event_id", planted_id), ("causation_id", headers["causation_id"])],
    )
    producer.flush()
    producer.close()

    report, lines = replay(settings, from_offset="0", audit=True)
    code = replay_main(settings, ReplayOptions(from_offset="0", audit=True, progress_bar=False))

    assert (report.exit_code, code) == (EXIT_AUDIT_MISMATCH, EXIT_AUDIT_MISMATCH)
    found = {(line["event_id"].encode(), line["problem"]) for line in lines}
    assert found == {
        (headers["event_id"], DIFFERS),
        (dict(dropped.headers)["event_id"], MISSING),
        (planted_id, UNRECORDED),
    }
    assert report.counts["mismatches"] == len(found)
    assert "on topic but not recorded" in capsys.readouterr().out


def published(kafka_broker: str, settings: Settings) -> Counter[tuple[Any, ...]]:
    """Every record on the three output topics, as (kind, key, value, headers)."""
    found: Counter[tuple[Any, ...]] = Counter()
    for kind, count in (("trade_executed", PLANS + 1), ("workflow_completed", PLANS)):
        records = read_all(kafka_broker, getattr(settings, f"topic_{kind}"), count)
        found.update((kind, *as_sent(r)[1:]) for r in records)
    records = read_all(kafka_broker, settings.topic_workflow_failed, 1)
    found.update(("workflow_failed", *as_sent(r)[1:]) for r in records)
    return found


def test_replay_republish_is_byte_identical_to_the_recorded_outcomes(
    kafka_broker: str, decided: Decided
) -> None:
    settings = with_outputs(decided.settings, kafka_broker)
    topics = output_topics(settings)
    kinds = {
        settings.topic_trade_executed: "trade_executed",
        settings.topic_workflow_completed: "workflow_completed",
        settings.topic_workflow_failed: "workflow_failed",
    }
    recorded = Counter(
        (kinds[r.topic], r.key, r.value, r.headers)
        for outputs in recorded_outputs(decided.ledger).values()
        for r in (event_record(event, topics) for event in outputs)
    )

    report, _ = replay(settings, from_offset="0", republish=True)
    audit, _ = replay(settings, from_offset="0", audit=True)

    assert report.exit_code == EXIT_OK
    assert report.counts["records republished"] == sum(recorded.values()) == 2 * (PLANS + 1)
    assert published(kafka_broker, settings) == recorded
    assert published(kafka_broker, decided.settings) == recorded
    assert audit.exit_code == EXIT_OK


def test_replay_bad_arguments_exit_2_before_touching_kafka(decided: Decided) -> None:
    assert replay_main(decided.settings, ReplayOptions()) == EXIT_BAD_ARGUMENTS
    assert replay_main(decided.settings, ReplayOptions(from_offset="0:1", to_offset="0:0")) == 2
    missing_ledger = decided.settings.model_copy(update={"ledger": "/nonexistent/ledger.sqlite"})
    assert replay_main(missing_ledger, ReplayOptions(from_offset="0")) == EXIT_BAD_ARGUMENTS
    for unreadable in (":memory:", "kafka"):
        no_file = decided.settings.model_copy(update={"ledger": unreadable})
        assert replay_main(no_file, ReplayOptions(from_offset="0")) == EXIT_BAD_ARGUMENTS
