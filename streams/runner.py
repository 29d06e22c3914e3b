"""The long-running job: Kafka source, the pipeline, and the publisher, wired together.

``run()`` blocks until ``stop()`` (SIGINT/SIGTERM in the CLI) or a fatal publishing error. It
returns the process exit code: 0 after a clean stop, 1 when an output could not be published.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from reactivex.scheduler import ThreadPoolScheduler

from rebalance_stream.brokers.protocol import Broker
from rebalance_stream.operators.dedupe import DedupeStore
from rebalance_stream.operators.flow import Disposition
from rebalance_stream.sinks.kafka_sink import KafkaRecordSender, OutcomePublisher
from rebalance_stream.sinks.routing import OutputTopics
from rebalance_stream.streams.kafka_clients import make_consumer, make_producer
from rebalance_stream.streams.kafka_source import KafkaPlanSource
from rebalance_stream.streams.kill_switch import KillSwitchReader
from rebalance_stream.streams.pipeline import (
    PipelineConfig,
    PipelineDependencies,
    process_rebalance_plans,
    utc_now,
)
from rebalance_stream.streams.settings import Settings

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_PUBLISH_FAILED = 1
EXIT_SOURCE_FAILED = 2
ACCOUNT_LANES = 8


def output_topics(settings: Settings) -> OutputTopics:
    return OutputTopics(
        trade_executed=settings.topic_trade_executed,
        workflow_completed=settings.topic_workflow_completed,
        workflow_failed=settings.topic_workflow_failed,
        dead_letter=settings.topic_dead_letter,
    )


@dataclass
class JobHooks:
    """Optional observers, for the demo and tests: each disposition as it is published."""

    on_disposition: Callable[[Disposition], None] | None = None


class PlanConsumerJob:
    """Consumes RebalancePlanned from Kafka and publishes each input's outcome."""

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        dedupe_store: DedupeStore,
        hooks: JobHooks | None = None,
    ) -> None:
        self._settings = settings
        self._broker = broker
        self._dedupe_store = dedupe_store
        self._hooks = hooks or JobHooks()
        self._done = threading.Event()
        self._stream_error: BaseException | None = None
        self.source = KafkaPlanSource(
            lambda: make_consumer(settings),
            settings.topic_input,
            utc_now,
            max_in_flight=settings.max_in_flight,
            shutdown_deadline_s=settings.shutdown_deadline_s,
        )

    def stop(self) -> None:
        """Thread-safe and signal-safe: finish in-flight plans, commit, then ``run`` returns."""
        self.source.stop()

    def run(self) -> int:
        settings = self._settings
        producer: Any = make_producer(settings)
        publisher = OutcomePublisher(
            KafkaRecordSender(producer),
            output_topics(settings),
            self.source.acknowledge,
            self.source.fail,
            settings.max_input_bytes,
        )
        deps = PipelineDependencies(
            broker=self._broker,
            dedupe_store=self._dedupe_store,
            kill_switch=KillSwitchReader(settings.kill_switch, settings.kill_switch_file),
            scheduler=ThreadPoolScheduler(ACCOUNT_LANES),
        )
        pipeline = process_rebalance_plans(PipelineConfig.from_settings(settings), deps)
        log.info("job_started", topic=settings.topic_input, group_id=settings.group_id)
        subscription = (
            self.source.records()
            .pipe(pipeline)
            .subscribe(
                on_next=lambda disposition: self._publish(publisher, disposition),
                on_error=self._on_stream_error,
                on_completed=self._done.set,
            )
        )
        self._done.wait()
        subscription.dispose()
        producer.flush()
        producer.close()
        return self._exit_code()

    def _publish(self, publisher: OutcomePublisher, disposition: Disposition) -> None:
        publisher.publish(disposition)
        if self._hooks.on_disposition is not None:
            self._hooks.on_disposition(disposition)

    def _on_stream_error(self, error: Exception) -> None:
        log.error("job_stream_failed", error=repr(error))
        self._stream_error = error
        self._done.set()

    def _exit_code(self) -> int:
        if self.source.fatal_error is not None:
            log.error("job_stopped_publish_failed", error=repr(self.source.fatal_error))
            return EXIT_PUBLISH_FAILED
        if self._stream_error is not None:
            return EXIT_SOURCE_FAILED
        log.info("job_stopped")
        return EXIT_OK
