"""The replay's modes and their parts: the read-only ledger reader, the report writer, the
dry run, the audit (recorded outcomes beside the output topics) and the republish.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TextIO

import structlog

from rebalance_stream.contracts.outcomes import WorkflowCompleted, WorkflowFailed
from rebalance_stream.contracts.rebalance import RebalancePlanned
from rebalance_stream.ledger.protocol import ClaimStatus, KnownPlan, decide_claim
from rebalance_stream.ledger.sqlite_schema import SELECT_EVENT_PLAN, SELECT_PLAN, known_plan
from rebalance_stream.operators.dedupe import claim_request
from rebalance_stream.operators.flow import Envelope, Failed
from rebalance_stream.operators.no_trade import needs_no_trades
from rebalance_stream.sinks.kafka_sink import KafkaRecordSender
from rebalance_stream.sinks.records import ProducerRecord
from rebalance_stream.sinks.routing import OutputTopics, event_record
from rebalance_stream.streams.kafka_clients import make_producer
from rebalance_stream.streams.pipeline import utc_now
from rebalance_stream.streams.replay_range import (
    RangeReader,
    ReplayArgumentError,
    ReplayRange,
    resolve_on_kafka,
)
from rebalance_stream.streams.runner import output_topics
from rebalance_stream.streams.settings import Settings

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_ARGUMENTS = 2
EXIT_AUDIT_MISMATCH = 4
SEND_TIMEOUT_S = 60.0
MISSING = "missing on topic"
DIFFERS = "bytes differ"
UNRECORDED = "on topic but not recorded"


class LedgerReader:
    """The SQLite ledger opened read-only (``mode=ro``): it looks plans up and writes nothing.

    In WAL mode SQLite still creates the empty ``-wal`` and ``-shm`` files when they are
    missing; the ledger file itself is never written.
    """

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ReplayArgumentError(f"ledger file {path} not found")
        uri = f"{path.resolve().as_uri()}?mode=ro"
        self._connection = sqlite3.connect(uri, uri=True, check_same_thread=False)

    def plan(self, plan_id: str) -> KnownPlan | None:
        row = self._connection.execute(SELECT_PLAN, (plan_id,)).fetchone()
        return None if row is None else known_plan(plan_id, row)

    def event_plan_id(self, event_id: str) -> str | None:
        found = self._connection.execute(SELECT_EVENT_PLAN, (event_id,)).fetchone()
        return None if found is None else str(found[0])

    def close(self) -> None:
        self._connection.close()


class ReportWriter:
    """The report: one line per record or plan, as text or JSON lines, and a summary."""

    def __init__(self, out: TextIO, json_lines: bool) -> None:
        self._out = out
        self._json = json_lines
        self.echo: Callable[[str], None] = lambda line: print(line, file=out, flush=True)

    def line(self, text: str, **fields: Any) -> None:
        self.echo(json.dumps(fields, sort_keys=True) if self._json else text)


class ReplayMode(Protocol):
    counts: Counter[str]

    def take(self, envelope: Envelope[Any]) -> None: ...

    def finish(self, reader: RangeReader) -> int: ...


def outcome_status(known: KnownPlan | None) -> str:
    """``completed``, ``failed REASON_CODE`` or ``undecided``: a recorded plan at a glance."""
    outputs = known.outputs if known is not None else None
    if outputs is None:
        return "undecided"
    for event in outputs:
        if isinstance(event, WorkflowFailed):
            return f"failed {event.error_details.reason_code}"
    completed = any(isinstance(event, WorkflowCompleted) for event in outputs)
    return "completed" if completed else "no outputs"


_FIXED_VERDICTS = {
    ClaimStatus.RESUME: ("resume", "resume (claimed, no outcome on record: would execute)"),
    ClaimStatus.CONFLICT: ("conflict", "conflict (would fail PLAN_ID_CONFLICT)"),
    ClaimStatus.EVENT_ID_REUSED: (
        "event-id-reused",
        "event_id reused (would fail EVENT_ID_REUSED)",
    ),
}


class DryRun:
    """What the job would do with each record: the job's own decode, validate and claim
    decision (``decide_claim``) against the ledger, plus the claims this replay would add."""

    def __init__(self, ledger: LedgerReader, report: ReportWriter, max_plan_age_s: int) -> None:
        self._ledger = ledger
        self._report = report
        self._max_age = timedelta(seconds=max_plan_age_s)
        self._claimed: dict[str, KnownPlan] = {}
        self._in_flight: set[str] = set()
        self._events: dict[str, str] = {}
        self.counts: Counter[str] = Counter()

    def take(self, envelope: Envelope[Any]) -> None:
        kind, verdict = self.judge(envelope)
        self.counts[kind] += 1
        position, event = envelope.position, envelope.event
        plan_id = event.rebalance_plan.plan_id if event else None
        self._report.line(
            f"{position.partition}:{position.offset} {plan_id or '-'} {verdict}",
            partition=position.partition,
            offset=position.offset,
            plan_id=plan_id,
            event_id=event.event_id if event else envelope.identity.event_id,
            kind=kind,
            verdict=verdict,
        )

    def judge(self, envelope: Envelope[Any]) -> tuple[str, str]:
        """(kind, verdict) for one decoded and validated envelope."""
        payload = envelope.payload
        if not isinstance(payload, RebalancePlanned):
            code = payload.reason_code if isinstance(payload, Failed) else "UNDECIDED"
            return "dead-letter", f"dead-letter ({code})"
        request = claim_request(envelope, payload)
        plan_id = request.plan_id
        known = self._claimed.get(plan_id) or self._ledger.plan(plan_id)
        event_plan_id = self._events.get(request.event_id) or self._ledger.event_plan_id(
            request.event_id
        )
        claim = decide_claim(
            request, known, event_plan_id, in_flight_here=plan_id in self._in_flight
        )
        if claim.status is ClaimStatus.NEW:
            self._claimed[plan_id] = KnownPlan(
                plan_id, request.event_id, request.items_fingerprint, request.received_at
            )
        if claim.status in (ClaimStatus.NEW, ClaimStatus.RESUME):
            self._in_flight.add(plan_id)
        if claim.status is not ClaimStatus.EVENT_ID_REUSED and event_plan_id is None:
            self._events[request.event_id] = plan_id
        return self._verdict(claim.status, known, payload)

    def _verdict(
        self, status: ClaimStatus, known: KnownPlan | None, event: RebalancePlanned
    ) -> tuple[str, str]:
        owned = status in (ClaimStatus.NEW, ClaimStatus.RESUME)
        age = utc_now() - event.rebalance_plan.timestamp
        if owned and self._max_age > timedelta(0) and age > self._max_age:
            return "stale", "stale (would fail PLAN_STALE)"
        if status is ClaimStatus.NEW:
            if needs_no_trades(event):
                return "new", "new plan (would succeed with no trades)"
            return "new", "new plan (would execute)"
        if status in _FIXED_VERDICTS:
            return _FIXED_VERDICTS[status]
        if status is ClaimStatus.REPUBLISH:
            decided = outcome_status(known)
            return "republish", f"republish (decided: {decided}; not acknowledged: would publish)"
        if known is not None and known.plan_id in self._in_flight:
            return "duplicate", "duplicate (of a plan this replay would execute)"
        return "duplicate", f"duplicate (decided: {outcome_status(known)})"

    def finish(self, reader: RangeReader) -> int:
        return EXIT_OK


class _PlansInRange:
    """The plans that the range's records name, each once, in order of first appearance."""

    def __init__(self, ledger: LedgerReader) -> None:
        self._ledger = ledger
        self._plan_ids: dict[str, None] = {}
        self.counts: Counter[str] = Counter()

    def take(self, envelope: Envelope[Any]) -> None:
        if isinstance(envelope.payload, RebalancePlanned):
            self._plan_ids.setdefault(envelope.payload.rebalance_plan.plan_id, None)
        else:
            self.counts["not a plan"] += 1

    def recorded(self, report: ReportWriter) -> list[KnownPlan]:
        """The plans on record in the ledger; the others are counted and reported."""
        self.counts["plans in range"] += len(self._plan_ids)
        plans = []
        for plan_id in self._plan_ids:
            known = self._ledger.plan(plan_id)
            if known is None:
                self.counts["not in the ledger"] += 1
                report.line(
                    f"{plan_id} not in the ledger", plan_id=plan_id, verdict="not in ledger"
                )
            else:
                plans.append(known)
        return plans


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One difference between a plan's recorded outcome and the output topics."""

    plan_id: str
    event_id: str
    topic: str
    problem: str
    acknowledged: bool = True
    """False when the job never saw the plan's outputs acknowledged by Kafka."""


def compare_outcomes(
    plans: Sequence[KnownPlan], found: Sequence[ProducerRecord], topics: OutputTopics
) -> list[Mismatch]:
    """Each plan's recorded outputs (as ``event_record`` builds them) against the records
    found on the topics, matched by event_id header; a found record caused by the plan's first
    event whose event_id is not recorded is flagged too. Pure."""
    by_event: dict[bytes | None, list[ProducerRecord]] = {}
    by_cause: dict[bytes | None, list[ProducerRecord]] = {}
    for record in found:
        by_event.setdefault(record.header("event_id"), []).append(record)
        by_cause.setdefault(record.header("causation_id"), []).append(record)
    mismatches = []
    for plan in plans:
        expected = [event_record(event, topics) for event in plan.outputs or ()]
        for record in expected:
            copies = by_event.get(record.header("event_id"), [])
            problem = MISSING if not copies else DIFFERS if any(c != record for c in copies) else ""
            if problem:
                mismatches.append(_mismatch(plan, record, problem))
        recorded_ids = {record.header("event_id") for record in expected}
        unrecorded = {
            record.header("event_id"): record
            for record in by_cause.get(plan.first_event_id.encode(), [])
            if record.header("event_id") not in recorded_ids
        }
        mismatches += [_mismatch(plan, record, UNRECORDED) for record in unrecorded.values()]
    return mismatches


def _mismatch(plan: KnownPlan, record: ProducerRecord, problem: str) -> Mismatch:
    event_id = (record.header("event_id") or b"").decode("utf-8", "replace")
    return Mismatch(plan.plan_id, event_id, record.topic, problem, plan.acknowledged)


def consumed_record(consumed: Any) -> ProducerRecord:
    """A consumed record as the ProducerRecord that would have produced it."""
    headers = tuple((name, value) for name, value in consumed.headers or ())
    return ProducerRecord(consumed.topic, consumed.key, consumed.value or b"", headers)


class Audit(_PlansInRange):
    """Reads the output topics and compares them with each plan's recorded outcome."""

    def __init__(
        self, ledger: LedgerReader, report: ReportWriter, topics: OutputTopics, lookback_s: int
    ) -> None:
        super().__init__(ledger)
        self._report = report
        self._topics = topics
        self._lookback = timedelta(seconds=lookback_s)

    def finish(self, reader: RangeReader) -> int:
        plans = self.recorded(self._report)
        if not plans:
            return EXIT_OK
        earliest = min(plan.first_received_at for plan in plans)
        if reader.earliest_ms is not None:
            earliest = min(earliest, datetime.fromtimestamp(reader.earliest_ms / 1000, UTC))
        since = earliest - self._lookback
        wanted = {p.first_event_id.encode() for p in plans}
        wanted |= {e.event_id.encode() for p in plans for e in p.outputs or ()}
        found = self._read_outputs(reader, since, wanted)
        mismatches = compare_outcomes(plans, found, self._topics)
        self.counts["plans audited"] += len(plans)
        self.counts["undecided"] += sum(1 for plan in plans if plan.outputs is None)
        self.counts["mismatches"] += len(mismatches)
        for m in mismatches:
            note = "" if m.acknowledged else " (never acknowledged: --republish publishes it)"
            self._report.line(
                f"{m.plan_id} {m.event_id} {m.topic}: {m.problem}{note}",
                plan_id=m.plan_id,
                event_id=m.event_id,
                topic=m.topic,
                problem=m.problem,
                acknowledged=m.acknowledged,
            )
        return EXIT_AUDIT_MISMATCH if mismatches else EXIT_OK

    def _read_outputs(
        self, reader: RangeReader, since: datetime, wanted: set[bytes]
    ) -> list[ProducerRecord]:
        t = self._topics
        names = sorted({t.trade_executed, t.workflow_completed, t.workflow_failed})
        from_since = ReplayRange(start=since)
        spans = [s for name in names for s in resolve_on_kafka(reader.consumer, name, from_since)]
        log.info("replay_audit_reading_outputs", topics=names, since=since.isoformat())
        found = (consumed_record(consumed) for consumed in reader.read(spans))
        return [r for r in found if {r.header("event_id"), r.header("causation_id")} & wanted]


class Republish(_PlansInRange):
    """Publishes each recorded outcome again, byte for byte, with an idempotent producer."""

    def __init__(self, ledger: LedgerReader, report: ReportWriter, settings: Settings) -> None:
        super().__init__(ledger)
        self._report = report
        self._settings = settings

    def finish(self, reader: RangeReader) -> int:
        topics = output_topics(self._settings)
        records: list[ProducerRecord] = []
        for plan in self.recorded(self._report):
            if plan.outputs is None:
                self.counts["skipped: no recorded outcome"] += 1
                self._report.line(
                    f"{plan.plan_id} skipped: no recorded outcome",
                    plan_id=plan.plan_id,
                    verdict="skipped: no recorded outcome",
                )
                continue
            records += [event_record(event, topics) for event in plan.outputs]
            self.counts["plans republished"] += 1
            self._report.line(
                f"{plan.plan_id} republished {len(plan.outputs)} records",
                plan_id=plan.plan_id,
                verdict="republished",
                records=len(plan.outputs),
            )
        failures = send_all(self._settings, records)
        self.counts["records republished"] += len(records) - len(failures)
        self.counts["records failed"] += len(failures)
        return EXIT_FAILED if failures else EXIT_OK


def send_all(settings: Settings, records: Sequence[ProducerRecord]) -> list[BaseException]:
    """Send the records as the job's sink does, wait for every one; return the failures."""
    if not records:
        return []
    failures: list[BaseException] = []
    landed = threading.Semaphore(0)

    def delivered(error: BaseException | None) -> None:
        if error is not None:
            failures.append(error)
        landed.release()

    producer = make_producer(settings)
    try:
        sender = KafkaRecordSender(producer)
        for record in records:
            sender.send(record, delivered)
        producer.flush(timeout=SEND_TIMEOUT_S)
        for _ in records:
            if not landed.acquire(timeout=SEND_TIMEOUT_S):
                failures.append(TimeoutError("a republished record was not acknowledged"))
                break
    finally:
        producer.close()
    return failures
