"""The long-running job: Kafka source, the pipeline, the ledger and the publisher, wired together.

``run()`` blocks until ``stop()`` (SIGINT/SIGTERM in the CLI) or a fatal error. It returns the
process exit code: 0 after a clean stop, 1 when an output could not be published, 2 when the
stream failed (the consumer or the ledger), 3 when startup reconciliation with the broker failed
(the job never consumed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from typing import Any

import structlog
from reactivex import operators as ops
from reactivex.scheduler import ThreadPoolScheduler

from rebalance_stream.brokers.account_reads import AccountReads
from rebalance_stream.brokers.order_watch import OrderWatch
from rebalance_stream.brokers.protocol import Broker
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.ledger.protocol import Ledger, PartitionedLedger, PublishedInputs
from rebalance_stream.ledger.sqlite import SqliteLedger
from rebalance_stream.operators.flow import Disposition, InputRecord, SourcePosition
from rebalance_stream.operators.order_execution import no_checkpoint
from rebalance_stream.operators.order_pool import OrderPool
from rebalance_stream.operators.skip_published import log_settled_duplicates, published_among
from rebalance_stream.sinks.routing import OutputTopics
from rebalance_stream.streams.health import (
    BROKER_REACHABLE,
    PARTITIONS_ASSIGNED,
    RECONCILED,
    Heartbeat,
    Readiness,
)
from rebalance_stream.streams.job_counts import CONSUMED, DEDUPLICATED, JobCounts
from rebalance_stream.streams.kafka_clients import make_consumer
from rebalance_stream.streams.kafka_source import KafkaPlanSource
from rebalance_stream.streams.kill_switch import KillSwitchReader
from rebalance_stream.streams.ledger_changelog import KAFKA_LEDGER, open_kafka_ledger
from rebalance_stream.streams.metrics import JobMetrics
from rebalance_stream.streams.pipeline import (
    PipelineConfig,
    PipelineDependencies,
    process_rebalance_plans,
    utc_now,
)
from rebalance_stream.streams.publishing import (
    AtLeastOncePublishing,
    ExactlyOncePublishing,
    Publishing,
)
from rebalance_stream.streams.reconcile import ReconciliationFailed, reconcile_orders
from rebalance_stream.streams.settings import Settings
from rebalance_stream.streams.source_options import Settle, SourceOptions

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_PUBLISH_FAILED = 1
EXIT_SOURCE_FAILED = 2
EXIT_NOT_READY = 3
HEARTBEAT_SILENCE_S = 60.0
BEFORE_PUBLISH = "before_publish"
BEFORE_COMMIT = "before_commit"
ORDER_THREADS = "job-orders"
"""The name prefix of the threads that run a job's order calls; they end when the job does."""


def _tell_received(publishing: Publishing, metrics: JobMetrics) -> Callable[[InputRecord], None]:
    def received(record: InputRecord) -> None:
        metrics.received()
        publishing.received(record.position)

    return received


def output_topics(settings: Settings) -> OutputTopics:
    return OutputTopics(
        trade_executed=settings.topic_trade_executed,
        workflow_completed=settings.topic_workflow_completed,
        workflow_failed=settings.topic_workflow_failed,
        dead_letter=settings.topic_dead_letter,
    )


IN_MEMORY_LEDGER = ":memory:"


def open_ledger(settings: Settings) -> Ledger:
    """The ledger that REBALANCE_STREAM_LEDGER names: a SQLite file, ``:memory:``, or
    ``kafka`` (a compacted changelog topic, restored per assigned partition)."""
    if settings.ledger == IN_MEMORY_LEDGER:
        log.warning("ledger_in_memory", note="plans are forgotten when the process exits")
        return InMemoryLedger()
    if settings.ledger == KAFKA_LEDGER:
        return open_kafka_ledger(settings)
    return SqliteLedger(settings.ledger, synchronous=settings.ledger_synchronous)


@dataclass
class JobHooks:
    """Optional observers, for the demo and tests.

    ``on_disposition`` sees each disposition as it is handed to the producer; ``checkpoint`` is
    called at named points (order execution, ``before_publish``, ``before_commit``);
    ``order_watch`` follows placed orders (None: REST polling); ``account_reads`` gives the
    positions and buying power orders are sized from (None: read from the broker per plan).
    """

    on_disposition: Callable[[Disposition], None] | None = None
    on_settled: Callable[[Sequence[InputRecord]], None] | None = None
    """Sees the inputs that the source settled as published duplicates: they get no
    Disposition (at_least_once only)."""
    checkpoint: Callable[[str], None] = no_checkpoint
    order_watch: OrderWatch | None = None
    account_reads: AccountReads | None = None


class PlanConsumerJob:
    """Consumes RebalancePlanned from Kafka and publishes each input's outcome.

    The ledger is the caller's: the job reads and writes it, and never closes it.
    """

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        ledger: Ledger,
        hooks: JobHooks | None = None,
    ) -> None:
        self._settings = settings
        self._broker = broker
        self._ledger = ledger
        self._hooks = hooks or JobHooks()
        self._done = threading.Event()
        self._stream_error: BaseException | None = None
        self.counts = JobCounts()
        self.metrics = JobMetrics()
        self.readiness = Readiness()
        self.heartbeat = Heartbeat(max_silence_s=HEARTBEAT_SILENCE_S)
        self._exactly_once = settings.processing_guarantee == "exactly_once"
        self._publishing: Publishing | None = None
        self._settle = self._settler(ledger)
        self.source = KafkaPlanSource(
            lambda: make_consumer(settings),
            settings.topic_input,
            utc_now,
            SourceOptions(
                max_in_flight=settings.max_in_flight,
                shutdown_deadline_s=settings.shutdown_deadline_s,
                before_commit=self._before_commit,
                commit_offsets=not self._exactly_once,
                on_revoked=self._revoked,
                prepare_assigned=self._assigned if isinstance(ledger, PartitionedLedger) else None,
                on_assignment=lambda assigned: self.readiness.mark(
                    PARTITIONS_ASSIGNED, met=assigned
                ),
                on_loop=self.heartbeat.beat,
                on_lag=self.metrics.set_consumer_lag,
                revoke_wait_s=min(settings.shutdown_deadline_s, settings.session_timeout_ms / 2000),
                settle=self._settle,
            ),
        )

    def stop(self) -> None:
        """Thread-safe and signal-safe: finish in-flight plans, commit, then ``run`` returns."""
        self.source.stop()

    def run(self) -> int:
        settings = self._settings
        expired = self._ledger.expire(utc_now() - timedelta(days=settings.ledger_retention_days))
        try:
            reconcile_orders(self._broker, self._ledger)
        except ReconciliationFailed as exc:
            log.error("job_not_ready", reason=str(exc))
            return EXIT_NOT_READY
        self.readiness.set(BROKER_REACHABLE)
        self.readiness.set(RECONCILED)
        publishing = self._open_publishing()
        lanes = ThreadPoolScheduler(settings.account_lanes)
        # Every lane can run its plan's orders at full concurrency at once.
        orders = OrderPool(settings.account_lanes * settings.max_concurrent_orders, ORDER_THREADS)
        deps = PipelineDependencies(
            broker=self._broker,
            ledger=self._ledger,
            kill_switch=KillSwitchReader(settings.kill_switch, settings.kill_switch_file),
            scheduler=lanes,
            checkpoint=self._hooks.checkpoint,
            held_back=self.source.is_held_back,
            order_watch=self._hooks.order_watch,
            order_pool=orders,
            account=self._hooks.account_reads,
        )
        config = replace(
            PipelineConfig.from_settings(settings),
            skip_published_inputs=self._settle is None,
        )
        pipeline = process_rebalance_plans(config, deps)
        log.info(
            "job_started",
            topic=settings.topic_input,
            group_id=settings.group_id,
            guarantee=settings.processing_guarantee,
            ledger_expired=expired,
        )
        subscription = (
            self.source.records()
            .pipe(ops.do_action(_tell_received(publishing, self.metrics)), pipeline)
            .subscribe(
                on_next=lambda disposition: self._publish(publishing, disposition),
                on_error=self._on_stream_error,
                on_completed=self._done.set,
            )
        )
        self._done.wait()
        self.readiness.clear(PARTITIONS_ASSIGNED)
        subscription.dispose()
        publishing.close()
        lanes.executor.shutdown(wait=False)
        orders.shutdown()
        return self._exit_code()

    def _open_publishing(self) -> Publishing:
        settings, topics = self._settings, output_topics(self._settings)
        publishing: Publishing
        if self._exactly_once:
            publishing = ExactlyOncePublishing(
                settings,
                topics,
                self.source,
                self._acknowledged,
                lambda: self._hooks.checkpoint(BEFORE_COMMIT),
            )
        else:
            publishing = AtLeastOncePublishing(settings, topics, self.source, self._acknowledged)
        self._publishing = publishing
        return publishing

    def _before_commit(self) -> None:
        self._hooks.checkpoint(BEFORE_COMMIT)

    def _revoked(self, partitions: list[Any]) -> None:
        if self._publishing is not None:
            self._publishing.revoked(partitions)
        if isinstance(self._ledger, PartitionedLedger):
            self._ledger.forget(self._input_partitions(partitions))

    def _assigned(self, partitions: list[Any]) -> None:
        """A partitioned ledger restores the new partitions, drops what retention says, and
        its open intents are reconciled with the broker, all before their records flow (the
        source keeps them paused meanwhile). Partitions that came straight back were held
        all along: when nothing new was read, there is nothing to reconcile."""
        ledger = self._ledger
        if not isinstance(ledger, PartitionedLedger):
            return
        if not ledger.restore(self._input_partitions(partitions)):
            return
        self._ledger.expire(utc_now() - timedelta(days=self._settings.ledger_retention_days))
        try:
            reconcile_orders(self._broker, self._ledger)
        except ReconciliationFailed as exc:
            # The resumed plans still look each order up by client_order_id before sizing.
            log.warning("ledger_partitions_not_reconciled", reason=str(exc))

    def _input_partitions(self, partitions: list[Any]) -> list[int]:
        topic = self._settings.topic_input
        return sorted(tp.partition for tp in partitions if tp.topic == topic)

    def _publish(self, publishing: Publishing, disposition: Disposition) -> None:
        self.metrics.observe(disposition)
        if disposition.not_started:
            if disposition.owns_outcome and disposition.plan_id is not None:
                self._ledger.release([disposition.plan_id])
            self.source.release(disposition.position)
            return
        self._hooks.checkpoint(BEFORE_PUBLISH)
        publishing.publish(disposition)
        self.counts.count(disposition)
        if self._hooks.on_disposition is not None:
            self._hooks.on_disposition(disposition)

    def _settler(self, ledger: Ledger) -> Settle | None:
        """The source's ``settle`` under at_least_once with a ledger that knows published
        inputs; None otherwise (under exactly_once each offset goes into a transaction)."""
        if self._exactly_once or not isinstance(ledger, PublishedInputs):
            return None
        return partial(self._settle_published, ledger)

    def _settle_published(
        self, store: PublishedInputs, records: Sequence[InputRecord]
    ) -> Collection[SourcePosition]:
        """On the polling thread: the records whose plans are published are duplicates,
        decided from one ledger read, counted, and logged in one line per partition. The
        source acknowledges them without emitting them."""
        published = published_among(store, records)
        if not published:
            return ()
        settled = [record for record in records if record.position in published]
        self.metrics.observe_settled_duplicates(settled, utc_now())
        self.counts.add({CONSUMED: len(settled), DEDUPLICATED: len(settled)})
        log_settled_duplicates(settled)
        if self._hooks.on_settled is not None:
            self._hooks.on_settled(settled)
        return published.keys()

    def _acknowledged(self, disposition: Disposition) -> None:
        """Every output of this input is in Kafka: note it in the ledger, free the offset."""
        if disposition.owns_outcome and disposition.plan_id is not None:
            self._ledger.mark_acknowledged([disposition.plan_id])
        self.source.acknowledge(disposition.position)

    def _on_stream_error(self, error: Exception) -> None:
        log.error("job_stream_failed", error=repr(error))
        self._stream_error = error
        self.source.stop()
        self._done.set()

    def _exit_code(self) -> int:
        if self.source.fatal_error is not None:
            log.error(
                "job_stopped_publish_failed",
                error=repr(self.source.fatal_error),
                counts=self.counts.snapshot(),
            )
            return EXIT_PUBLISH_FAILED
        if self._stream_error is not None:
            return EXIT_SOURCE_FAILED
        log.info("job_stopped", counts=self.counts.snapshot())
        return EXIT_OK
