"""The job under measure: pinned settings, and a driver that runs ``PlanConsumerJob`` on a
thread of its own and reports what it has decided."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient  # type: ignore[import-untyped]

from bench.common import (
    GROUP_OFFSETS_POLL_S,
    JOB_POLL_S,
    SESSION_TIMEOUT_MS,
    STOP_TIMEOUT_S,
    JobTopics,
)
from rebalance_stream.ledger.protocol import Ledger
from rebalance_stream.operators.flow import Disposition, InputRecord
from rebalance_stream.streams.runner import EXIT_OK, JobHooks, PlanConsumerJob
from rebalance_stream.streams.settings import Settings


def job_settings(
    bootstrap: str,
    topics: JobTopics,
    group_id: str,
    ledger: Path,
    synchronous: str = "FULL",
) -> Settings:
    """The pinned job configuration; everything not named here is the service's default."""
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        group_id=group_id,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        topic_input=topics.input,
        topic_trade_executed=topics.trade_executed,
        topic_workflow_completed=topics.workflow_completed,
        topic_workflow_failed=topics.workflow_failed,
        topic_dead_letter=topics.dead_letter,
        processing_guarantee="at_least_once",
        transactional_id=f"{group_id}.bench",
        broker="paper",
        ledger=str(ledger),
        ledger_synchronous=synchronous,
    )


class JobDriver:
    """The real PlanConsumerJob, in this process, on its own thread, watched from outside."""

    def __init__(self, settings: Settings, broker: Any, ledger: Ledger) -> None:
        self._lock = threading.Lock()
        self.dispositions = 0
        self.first_received_s: float | None = None
        self.kinds: dict[str, int] = {}
        hooks = JobHooks(self._seen, on_settled=self._settled)
        self.job = PlanConsumerJob(settings, broker, ledger, hooks)
        self._settings = settings
        self._transactional = settings.processing_guarantee == "exactly_once"
        self._admin: Any = None
        self._offsets: dict[Any, int] = {}
        self._offsets_read_at = -GROUP_OFFSETS_POLL_S
        self._exit: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name="bench-job", daemon=True)

    def _seen(self, disposition: Disposition) -> None:
        self._received(disposition.record)

    def _settled(self, records: Sequence[InputRecord]) -> None:
        for record in records:
            self._received(record)

    def _received(self, record: InputRecord) -> None:
        """One input decided: a disposition, or a duplicate that the source settled."""
        received_s = record.received_at.timestamp()
        with self._lock:
            self.dispositions += 1
            if self.first_received_s is None or received_s < self.first_received_s:
                self.first_received_s = received_s

    def _run(self) -> None:
        self._exit["code"] = self.job.run()

    def start(self) -> None:
        self._thread.start()

    def committed_all(self, ends: dict[Any, int]) -> bool:
        committed = self._group_offsets() if self._transactional else self.job.source.committed
        return all(committed.get(tp, 0) >= offset for tp, offset in ends.items())

    def _group_offsets(self) -> dict[Any, int]:
        """Under exactly_once the transactions commit the offsets, not the source: ask Kafka,
        at most every GROUP_OFFSETS_POLL_S."""
        now = time.monotonic()
        if now - self._offsets_read_at >= GROUP_OFFSETS_POLL_S:
            if self._admin is None:
                self._admin = KafkaAdminClient(
                    bootstrap_servers=self._settings.kafka_bootstrap_servers
                )
            group = self._settings.group_id
            found = self._admin.list_group_offsets({group: None}).get(group, {})
            self._offsets = {tp: meta.offset for tp, meta in found.items()}
            self._offsets_read_at = now
        return self._offsets

    def _close_admin(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def wait_committed(
        self,
        ends: dict[Any, int],
        timeout_s: float,
        on_tick: Callable[[JobDriver], None] | None = None,
    ) -> float:
        """Wall time (time.time()) once every offset up to ``ends`` is committed."""
        deadline = time.monotonic() + timeout_s
        while not self.committed_all(ends):
            if not self._thread.is_alive():
                raise RuntimeError(f"the job stopped early with exit code {self._exit}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not all committed after {timeout_s} s")
            if on_tick is not None:
                on_tick(self)
            time.sleep(JOB_POLL_S)
        return time.time()

    def stop(self) -> int:
        """Stop the job (it finishes in-flight plans and commits) and return its exit code."""
        self._close_admin()
        self.job.stop()
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            raise RuntimeError("the job did not stop")
        code = self._exit.get("code", -1)
        if code != EXIT_OK:
            raise RuntimeError(f"the job exited with {code}")
        self.kinds = self.job.counts.snapshot()
        return code

    def abort(self) -> None:
        """After a failure elsewhere: stop the job if it still runs; never raises."""
        self._close_admin()
        if self._thread.is_alive():
            self.job.stop()
            self._thread.join(STOP_TIMEOUT_S)
