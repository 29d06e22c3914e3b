"""``rebalance-stream replay``: read a range of the input topic again, then stop by itself.

The replay reads with no consumer group (``assign`` and ``seek``, ``read_committed``), so the
live group's offsets never move unless ``--commit`` names a group. It executes no plan and
never writes the ledger: the SQLite file is opened read-only, and reflects what the live job
has written so far (the job buffers claims and acknowledgements briefly).

Flags (the fields of ``ReplayOptions``; the range is ``replay_range``'s):

  --from-offset P:O[,P:O...] | O   start at these offsets; a single O: every partition
  --from-time ISO8601              start at the first record at or after this time
  --to-offset P:O[,P:O...] | O     stop before these offsets (exclusive)
  --to-time ISO8601                stop before the first record at or after this time
                                   (default end: the end offsets when the replay starts)
  --dry-run                        (default) what the job would do with each record, given the
                                   ledger; executes, publishes and claims nothing
  --audit                          each recorded outcome beside the output topics, matched by
                                   the event_id header: missing, bytes differ, not recorded
  --republish                      publish the recorded outcomes again, byte for byte
  --commit GROUP                   when done, commit the end positions for GROUP (a group with
                                   no active member: stop the live job first)
  --json                           (json_lines) the report as JSON lines (default: text)
  --progress/--no-progress         (progress_bar) the bar; default: when stderr is a terminal
  --progress-every N               without a terminal, a progress log line every N records
  --idle-timeout-s S               fail when no partition advances for S seconds (30)
  --audit-lookback-s S             audit: read outputs published from S seconds before the
                                   earliest input or plan of the range (3600)

Exit codes: 0 done; 1 failed (Kafka, the ledger, a republished record that did not land);
2 bad arguments; 4 audit mismatches.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import reactivex
import structlog
from kafka import KafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from kafka.errors import KafkaError  # type: ignore[import-untyped]
from kafka.structs import OffsetAndMetadata  # type: ignore[import-untyped]
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from rebalance_stream.operators.decode import decode
from rebalance_stream.operators.flow import Envelope, InputRecord, SourcePosition
from rebalance_stream.operators.validate import validate
from rebalance_stream.streams.kafka_clients import client_config
from rebalance_stream.streams.ledger_changelog import KAFKA_LEDGER
from rebalance_stream.streams.pipeline import utc_now
from rebalance_stream.streams.replay_modes import (
    EXIT_AUDIT_MISMATCH,
    EXIT_BAD_ARGUMENTS,
    EXIT_FAILED,
    EXIT_OK,
    Audit,
    DryRun,
    LedgerReader,
    ReplayMode,
    ReportWriter,
    Republish,
)
from rebalance_stream.streams.replay_range import (
    PartitionSpan,
    RangeReader,
    ReplayArgumentError,
    ReplayRange,
    ReplayStalled,
    make_replay_consumer,
    parse_range,
    resolve_on_kafka,
)
from rebalance_stream.streams.runner import IN_MEMORY_LEDGER, output_topics
from rebalance_stream.streams.settings import Settings

__all__ = [
    "EXIT_AUDIT_MISMATCH",
    "EXIT_BAD_ARGUMENTS",
    "EXIT_FAILED",
    "EXIT_OK",
    "ReplayOptions",
    "ReplayReport",
    "replay_main",
    "run_replay",
]

log = structlog.get_logger(__name__)

MODES = ("dry-run", "audit", "republish")


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """The replay's flags, one field each (see the module docstring); typer-friendly."""

    from_offset: str | None = None
    from_time: str | None = None
    to_offset: str | None = None
    to_time: str | None = None
    dry_run: bool = False
    audit: bool = False
    republish: bool = False
    commit: str | None = None
    json_lines: bool = False
    progress_every: int = 1000
    idle_timeout_s: float = 30.0
    audit_lookback_s: int = 3600
    progress_bar: bool | None = None
    """None: a bar when stderr is a terminal, else log lines."""

    def mode(self) -> str:
        """``dry-run`` (the default), ``audit`` or ``republish``; raises when several are set."""
        flags = (self.dry_run, self.audit, self.republish)
        chosen = [mode for mode, on in zip(MODES, flags, strict=True) if on]
        if len(chosen) > 1:
            raise ReplayArgumentError("give one of --dry-run, --audit, --republish")
        return chosen[0] if chosen else MODES[0]

    def checked_range(self) -> ReplayRange:
        """The range; raises ReplayArgumentError for any unusable flag."""
        if self.progress_every < 1 or self.idle_timeout_s <= 0 or self.audit_lookback_s < 0:
            raise ReplayArgumentError(
                "--progress-every and --idle-timeout-s must be positive, --audit-lookback-s >= 0"
            )
        if self.commit is not None and not self.commit.strip():
            raise ReplayArgumentError("--commit needs a group id")
        self.mode()
        return parse_range(self.from_offset, self.from_time, self.to_offset, self.to_time)


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay did: counts by verdict, records read, and its exit code."""

    mode: str
    records: int
    counts: dict[str, int]
    exit_code: int


def commit_ends(settings: Settings, group_id: str, spans: Sequence[PartitionSpan]) -> None:
    """Commit each span's end for ``group_id``; logs the offsets it replaces."""
    consumer = KafkaConsumer(**client_config(settings), group_id=group_id, enable_auto_commit=False)
    try:
        offsets = {
            TopicPartition(s.topic, s.partition): OffsetAndMetadata(s.end, "", -1) for s in spans
        }
        before = {str(tp): consumer.committed(tp) for tp in offsets}
        consumer.commit(offsets=offsets)
        after = {str(tp): meta.offset for tp, meta in offsets.items()}
        log.info("replay_committed", group_id=group_id, before=before, after=after)
    finally:
        consumer.close(autocommit=False)


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- rec/s" if speed is None else f"{speed:,.0f} rec/s")


@contextmanager
def progress_of(
    total: int, options: ReplayOptions, report: ReportWriter, out: TextIO
) -> Iterator[Callable[[], None]]:
    """Yield ``advance()``: a bar on a terminal (records, rate, ETA), else a log line every
    ``progress_every`` records. With a bar, report lines for the terminal print above it."""
    bar = options.progress_bar if options.progress_bar is not None else sys.stderr.isatty()
    started = time.monotonic()
    if bar:
        columns = (TextColumn("replay"), BarColumn(), MofNCompleteColumn(), _RateColumn())
        with Progress(
            *columns,
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            redirect_stdout=False,
            redirect_stderr=False,
        ) as progress:
            if out.isatty():
                report.echo = lambda line: progress.console.print(
                    line, markup=False, highlight=False, soft_wrap=True
                )
            task = progress.add_task("replay", total=total)
            yield lambda: progress.advance(task)
        return
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        if done % options.progress_every == 0:
            rate = done / max(time.monotonic() - started, 1e-9)
            eta_s = round(max(total - done, 0) / rate, 1)
            log.info(
                "replay_progress", records=done, total=total, rate_per_s=round(rate), eta_s=eta_s
            )

    yield advance


def _input_record(consumed: Any) -> InputRecord:
    position = SourcePosition(consumed.topic, consumed.partition, consumed.offset)
    headers = tuple((name, value) for name, value in consumed.headers or ())
    return InputRecord(position, consumed.key, consumed.value or b"", headers, utc_now())


def _mode_for(
    settings: Settings, options: ReplayOptions, ledger: LedgerReader, report: ReportWriter
) -> ReplayMode:
    mode = options.mode()
    if mode == "audit":
        return Audit(ledger, report, output_topics(settings), options.audit_lookback_s)
    if mode == "republish":
        return Republish(ledger, report, settings)
    return DryRun(ledger, report, settings.max_plan_age_s)


def _open_ledger(settings: Settings) -> LedgerReader:
    if settings.ledger in (IN_MEMORY_LEDGER, KAFKA_LEDGER):
        raise ReplayArgumentError(
            f"replay reads a SQLite ledger file; REBALANCE_STREAM_LEDGER is {settings.ledger}"
        )
    return LedgerReader(Path(settings.ledger))


def _feed(
    records: Iterator[Any], settings: Settings, mode: ReplayMode, advance: Callable[[], None]
) -> int:
    """Decode and validate as the job does (the same operators), hand each envelope to the
    mode; return how many records were read. Raises what reading raised."""
    read = 0
    errors: list[Exception] = []

    def take(envelope: Envelope[Any]) -> None:
        nonlocal read
        read += 1
        mode.take(envelope)
        advance()

    reactivex.from_iterable(_input_record(r) for r in records).pipe(
        decode(settings.max_input_bytes), validate()
    ).subscribe(on_next=take, on_error=errors.append)
    if errors:
        raise errors[0]
    return read


def run_replay(settings: Settings, options: ReplayOptions, out: TextIO) -> ReplayReport:
    """Replay the range and write the report to ``out``. Raises ReplayArgumentError, KafkaError,
    sqlite3.Error or ReplayStalled; ``replay_main`` turns them into exit codes."""
    replay_range = options.checked_range()
    if not settings.kafka_bootstrap_servers:
        raise ReplayArgumentError("REBALANCE_STREAM_KAFKA_BOOTSTRAP_SERVERS is not set")
    report = ReportWriter(out, options.json_lines)
    with ExitStack() as stack:
        ledger = _open_ledger(settings)
        stack.callback(ledger.close)
        try:
            consumer = make_replay_consumer(settings)
        except ValueError as exc:  # client_config: the Kafka settings do not fit together
            raise ReplayArgumentError(str(exc)) from exc
        stack.callback(consumer.close, autocommit=False)
        handler = _mode_for(settings, options, ledger, report)
        spans = resolve_on_kafka(consumer, settings.topic_input, replay_range)
        total = sum(span.size for span in spans)
        log.info(
            "replay_started",
            mode=options.mode(),
            topic=settings.topic_input,
            spans={s.partition: [s.start, s.end] for s in spans},
            records_at_most=total,
        )
        reader = RangeReader(consumer, options.idle_timeout_s)
        with progress_of(total, options, report, out) as advance:
            read = _feed(reader.read(spans), settings, handler, advance)
        code = handler.finish(reader)
        if options.commit is not None and code != EXIT_FAILED:
            commit_ends(settings, options.commit.strip(), spans)
    counts = {kind: n for kind, n in sorted(handler.counts.items()) if n}
    summary = ", ".join(f"{kind} {n}" for kind, n in counts.items()) or "nothing"
    report.line(f"replay {options.mode()}: {read} records; {summary}", summary=counts, records=read)
    log.info("replay_finished", mode=options.mode(), records=read, counts=counts, exit_code=code)
    return ReplayReport(options.mode(), read, counts, code)


def replay_main(settings: Settings, options: ReplayOptions) -> int:
    """The CLI entry: run the replay, report on stdout, return the exit code (0, 1, 2 or 4)."""
    try:
        return run_replay(settings, options, sys.stdout).exit_code
    except ReplayArgumentError as exc:
        log.error("replay_bad_arguments", reason=str(exc))
        return EXIT_BAD_ARGUMENTS
    except (KafkaError, sqlite3.Error, ReplayStalled, OSError) as exc:
        log.error("replay_failed", error=repr(exc))
        return EXIT_FAILED
