"""Prometheus metrics of one job, kept in a registry of its own.

Never the process-wide default registry: two jobs in one process (tests, the demo) must not
collide. ``observe(disposition)`` moves everything that a Disposition tells, in memory only.
The rest is set by the parts that know it: ``received()`` by the source's records, the lag by
the polling thread, the broker calls by the broker adapter through ``broker_calls(name)``.

    received() x3, observe(completed), observe(duplicate)
    ->  inputs_consumed_total 2, outcomes_total{status="skipped"} 1, inputs_in_flight 1

All methods are thread-safe (prometheus-client's values are) and do no I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from rebalance_stream.contracts.outcomes import TradeExecuted
from rebalance_stream.operators.flow import Disposition, InputRecord
from rebalance_stream.streams.job_counts import (
    COMPLETED,
    DEAD_LETTERED,
    DEDUPLICATED,
    FAILED,
    MIS_KEYED,
    kinds_of,
)

NAMESPACE = "rebalance_stream"
SKIPPED = "skipped"
OTHER = "other"

OUTCOME_STATUSES = (COMPLETED, FAILED, SKIPPED, DEAD_LETTERED)
"""One per decided input: its outcome event, or skipped (a duplicate), or dead_lettered (the
dead-letter record alone, when no WorkflowFailed could be addressed)."""

ORDER_STATUSES = (
    "new",
    "partially_filled",
    "filled",
    "canceled",
    "rejected",
    "expired",
    "skipped",
    "error",
    "unknown",
)
"""BrokerOrderStatus values and the statuses execution gives orders that got no broker order.
Any other status is counted as ``other``, so that a venue cannot grow the label set."""

BROKER_OUTCOMES = (
    "ok",
    "client_error",
    "rate_limited",
    "server_error",
    "timeout",
    "connection_error",
)
"""The ``outcome`` label of broker requests; anything else is counted as ``other``."""

LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
"""Plan latency buckets: a duplicate takes milliseconds, a plan that waits on fills a minute."""

_HTTP_OK_FIRST, _HTTP_CLIENT_ERROR_FIRST, _HTTP_SERVER_ERROR_FIRST = 200, 400, 500
_HTTP_TOO_MANY_REQUESTS = 429


class PartitionLike(Protocol):
    """kafka-python's TopicPartition, or anything with its two fields."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


P = TypeVar("P", bound=PartitionLike)
M = TypeVar("M", Counter, Histogram)


def outcome_status(kinds: list[str]) -> str:
    """The one outcome of an input, from ``kinds_of`` its disposition."""
    for status in (COMPLETED, FAILED):
        if status in kinds:
            return status
    if DEDUPLICATED in kinds:
        return SKIPPED
    return DEAD_LETTERED if DEAD_LETTERED in kinds else OTHER


def order_status_label(status: str) -> str:
    """An order's status as a bounded label value."""
    return status if status in ORDER_STATUSES else OTHER


def http_outcome(status_code: int) -> str:
    """A broker HTTP response as a ``BROKER_OUTCOMES`` value: 429 -> rate_limited, 503 ->
    server_error, 404 -> client_error, 200 -> ok."""
    if status_code == _HTTP_TOO_MANY_REQUESTS:
        return "rate_limited"
    if status_code >= _HTTP_SERVER_ERROR_FIRST:
        return "server_error"
    if status_code >= _HTTP_CLIENT_ERROR_FIRST:
        return "client_error"
    return "ok" if status_code >= _HTTP_OK_FIRST else OTHER


@dataclass(frozen=True, slots=True)
class BrokerCalls:
    """The broker-call counters of one broker, for its adapter: ``request(outcome)`` once per
    API request sent, ``retry()`` once per request that is sent again."""

    _requests: Counter
    _retries: Counter
    broker: str

    def request(self, outcome: str) -> None:
        label = outcome if outcome in BROKER_OUTCOMES else OTHER
        self._requests.labels(broker=self.broker, outcome=label).inc()

    def retry(self) -> None:
        self._retries.labels(broker=self.broker).inc()


class JobMetrics:
    """Every metric of one job, in ``registry`` (a new CollectorRegistry when none is given).

    Registering a second JobMetrics on the same registry raises ValueError (duplicated
    timeseries): give each job its own registry.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lag_lock = threading.Lock()
        self._lag_partitions: set[tuple[str, str]] = set()
        self._define_input_metrics()
        self._define_source_and_broker_metrics()

    def _counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, labels, namespace=NAMESPACE, registry=self.registry)

    def _gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, namespace=NAMESPACE, registry=self.registry)

    def _define_input_metrics(self) -> None:
        self.consumed = self._counter("inputs_consumed", "Input records decided.")
        self.deduplicated = self._counter(
            "inputs_deduplicated", "Inputs skipped as duplicates of a plan already decided."
        )
        self.dead_lettered = self._counter(
            "inputs_dead_lettered", "Inputs whose original bytes went to the dead-letter topic."
        )
        self.mis_keyed = self._counter(
            "inputs_mis_keyed", "Inputs whose record key was not their plan's account_id."
        )
        self.outcomes = self._counter(
            "outcomes", "Decided inputs by outcome: one per input.", ("status",)
        )
        self.orders = self._counter(
            "orders", "Orders in published TradeExecuted events, by terminal status.", ("status",)
        )
        self.plan_latency = Histogram(
            "plan_latency_seconds",
            "Seconds from an input's receipt to its decision, by outcome.",
            ("outcome",),
            namespace=NAMESPACE,
            registry=self.registry,
            buckets=LATENCY_BUCKETS_S,
        )
        self.in_flight = self._gauge("inputs_in_flight", "Inputs received and not yet decided.")
        # Each series looked up once: labels() costs more than the increment it leads to.
        self._outcome_series = {s: self.outcomes.labels(status=s) for s in OUTCOME_STATUSES}
        self._latency_series = {s: self.plan_latency.labels(outcome=s) for s in OUTCOME_STATUSES}
        self._order_series = {s: self.orders.labels(status=s) for s in ORDER_STATUSES}

    def _define_source_and_broker_metrics(self) -> None:
        self.consumer_lag = self._gauge(
            "consumer_lag",
            "Records between the consumer's position and the partition's end offset.",
            ("topic", "partition"),
        )
        self.broker_requests = self._counter(
            "broker_requests",
            "Broker API requests sent, by broker and outcome.",
            ("broker", "outcome"),
        )
        self.broker_retries = self._counter(
            "broker_retries", "Broker API requests sent again, by broker.", ("broker",)
        )

    def received(self) -> None:
        """One input arrived from the source; ``observe`` of its disposition undoes it."""
        self.in_flight.inc()

    def observe(self, disposition: Disposition) -> None:
        """Count one decided input: call it once per disposition, ``not_started`` ones too.

        A not-started input (held back by a shutdown, redelivered later) only leaves the
        in-flight gauge. A redelivered plan's recorded outcome is counted again, as published.
        """
        self.in_flight.dec()
        if disposition.not_started:
            return
        kinds = kinds_of(disposition)
        self.consumed.inc()
        for kind, counter in (
            (DEDUPLICATED, self.deduplicated),
            (DEAD_LETTERED, self.dead_lettered),
            (MIS_KEYED, self.mis_keyed),
        ):
            if kind in kinds:
                counter.inc(kinds.count(kind))
        outcome = outcome_status(kinds)
        latency_s = (disposition.decided_at - disposition.record.received_at).total_seconds()
        self._series(self._outcome_series, self.outcomes, "status", outcome).inc()
        latency = self._series(self._latency_series, self.plan_latency, "outcome", outcome)
        latency.observe(max(0.0, latency_s))
        for output in disposition.outputs:
            if isinstance(output, TradeExecuted):
                for order in output.execution_data.orders:
                    label = order_status_label(order.status)
                    self._series(self._order_series, self.orders, "status", label).inc()

    def observe_settled_duplicates(
        self, records: Sequence[InputRecord], decided_at: datetime
    ) -> None:
        """Count inputs that the source settled as duplicates without emitting them: they
        were never in flight, and each counts as ``observe`` counts a skipped input."""
        count = len(records)
        self.consumed.inc(count)
        self.deduplicated.inc(count)
        self._series(self._outcome_series, self.outcomes, "status", SKIPPED).inc(count)
        latency = self._series(self._latency_series, self.plan_latency, "outcome", SKIPPED)
        for record in records:
            latency.observe(max(0.0, (decided_at - record.received_at).total_seconds()))

    @staticmethod
    def _series(known: dict[str, M], metric: M, label: str, value: str) -> M:
        """The series of ``metric`` for ``label=value``, looked up once."""
        series = known.get(value)
        if series is None:
            series = known.setdefault(value, metric.labels(**{label: value}))
        return series

    def set_consumer_lag(
        self, end_offsets: Mapping[P, int | None], positions: Mapping[P, int]
    ) -> None:
        """Lag of each assigned partition: its end offset minus the consumer's position.

        ``end_offsets`` names the whole assignment: a partition missing from it (revoked) loses
        its series, ``{}`` clears them all. A None end offset, or a partition without a
        position, keeps its last value. The lag is never negative.
        """
        assigned = {(tp.topic, str(tp.partition)) for tp in end_offsets}
        with self._lag_lock:
            for labels in self._lag_partitions - assigned:
                self.consumer_lag.remove(*labels)
            self._lag_partitions &= assigned
            for tp, end in end_offsets.items():
                position = positions.get(tp)
                if end is None or position is None:
                    continue
                labels = (tp.topic, str(tp.partition))
                self.consumer_lag.labels(*labels).set(max(0, end - position))
                self._lag_partitions.add(labels)

    def broker_calls(self, broker: str) -> BrokerCalls:
        """The counters that the adapter of ``broker`` (``paper``, ``alpaca``) increments; its
        outcome series start at zero, so that rates exist before the first error."""
        for outcome in BROKER_OUTCOMES:
            self.broker_requests.labels(broker=broker, outcome=outcome)
        self.broker_retries.labels(broker=broker)
        return BrokerCalls(self.broker_requests, self.broker_retries, broker)
