"""HealthServer over real HTTP: /metrics, /healthz, /readyz; Readiness and Heartbeat."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import structlog
from plan_factory import Trade, planned
from prometheus_client.parser import text_string_to_metric_families
from reactivex.scheduler import ThreadPoolScheduler
from support import FixedClock, record

from rebalance_stream.brokers.paper import PaperBroker
from rebalance_stream.ledger.memory import InMemoryLedger
from rebalance_stream.operators.risk import KillSwitch
from rebalance_stream.streams.health import (
    BROKER_REACHABLE,
    PARTITIONS_ASSIGNED,
    RECONCILED,
    HealthServer,
    Heartbeat,
    Readiness,
)
from rebalance_stream.streams.metrics import JobMetrics
from rebalance_stream.streams.pipeline import PipelineConfig, PipelineDependencies
from rebalance_stream.streams.simulate import run_in_process

METRIC_NAMES = [
    "rebalance_stream_inputs_consumed_total",
    "rebalance_stream_inputs_deduplicated_total",
    "rebalance_stream_inputs_dead_lettered_total",
    "rebalance_stream_inputs_mis_keyed_total",
    "rebalance_stream_outcomes_total",
    "rebalance_stream_orders_total",
    "rebalance_stream_plan_latency_seconds_bucket",
    "rebalance_stream_inputs_in_flight",
    "rebalance_stream_consumer_lag",
    "rebalance_stream_broker_requests_total",
    "rebalance_stream_broker_retries_total",
]


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def get(url: str) -> Response:
    """GET over real HTTP; an error status is a Response too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - our loopback URL
            return Response(reply.status, reply.headers["Content-Type"], reply.read())
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, error.headers["Content-Type"], error.read())


@dataclass
class Alive:
    """A liveness callback that the test switches."""

    alive: bool = True
    calls: list[bool] = field(default_factory=list)

    def __call__(self) -> bool:
        self.calls.append(self.alive)
        return self.alive


@dataclass(frozen=True)
class Partition:
    """A TopicPartition stand-in: what set_consumer_lag reads."""

    topic: str
    partition: int


@dataclass
class Served:
    server: HealthServer
    metrics: JobMetrics
    readiness: Readiness
    liveness: Alive


@pytest.fixture
def served() -> Iterator[Served]:
    metrics, readiness, liveness = JobMetrics(), Readiness(), Alive()
    with HealthServer(metrics.registry, readiness, liveness) as server:
        yield Served(server, metrics, readiness, liveness)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_endpoint_serves_every_metric_name(served: Served) -> None:
    partition = Partition("rebalance.planned", 0)
    served.metrics.set_consumer_lag({partition: 5}, {partition: 2})
    served.metrics.broker_calls("paper").request("ok")

    response = get(served.server.url + "/metrics")

    assert response.status == 200
    assert response.content_type.startswith("text/plain; version=")
    text = response.body.decode()
    for name in METRIC_NAMES:
        assert f"\n{name}" in text, name


def test_metrics_endpoint_counters_match_the_inputs_sent(
    served: Served, paper: PaperBroker, clock: FixedClock
) -> None:
    plans = [
        planned("plan-a", [Trade("VTI", "BUY", "500.00", 1)]),
        planned("plan-b", [Trade("GLD", "BUY", "380.00", 1)]),
    ]
    records = [record(plans[0], 0), record(plans[1], 1), record(plans[0], 2), record(b"{", 3)]
    deps = PipelineDependencies(
        broker=paper,
        ledger=InMemoryLedger(),
        kill_switch=lambda: KillSwitch.ACTIVE,
        clock=clock,
        sleep=clock.advance,
        scheduler=ThreadPoolScheduler(2),
    )
    for disposition in run_in_process(records, PipelineConfig(), deps):
        served.metrics.received()
        served.metrics.observe(disposition)

    values = samples(get(served.server.url + "/metrics").body.decode())

    assert values[("rebalance_stream_inputs_consumed_total", ())] == 4
    assert values[("rebalance_stream_inputs_deduplicated_total", ())] == 1
    assert values[("rebalance_stream_inputs_dead_lettered_total", ())] == 1
    assert values[("rebalance_stream_outcomes_total", (("status", "workflow_completed"),))] == 2
    assert values[("rebalance_stream_outcomes_total", (("status", "skipped"),))] == 1
    assert values[("rebalance_stream_outcomes_total", (("status", "dead_lettered"),))] == 1
    assert values[("rebalance_stream_orders_total", (("status", "filled"),))] == 2
    assert values[("rebalance_stream_inputs_in_flight", ())] == 0


def test_readyz_is_503_with_unmet_conditions_until_all_are_set(served: Served) -> None:
    url = served.server.url + "/readyz"

    initially = get(url)
    served.readiness.set(PARTITIONS_ASSIGNED)
    partly = get(url)
    served.readiness.set(BROKER_REACHABLE)
    served.readiness.set(RECONCILED)
    ready = get(url)
    served.readiness.clear(BROKER_REACHABLE)
    lost = get(url)

    assert (initially.status, initially.content_type) == (503, "application/json")
    assert initially.json() == {
        "ready": False,
        "unmet": ["partitions_assigned", "broker_reachable", "reconciled"],
        "conditions": {
            "partitions_assigned": False,
            "broker_reachable": False,
            "reconciled": False,
        },
    }
    assert partly.status == 503
    assert partly.json()["unmet"] == ["broker_reachable", "reconciled"]  # type: ignore[index]
    assert ready.status == 200
    assert ready.json()["ready"] is True  # type: ignore[index]
    assert ready.json()["unmet"] == []  # type: ignore[index]
    assert lost.status == 503
    assert lost.json()["unmet"] == ["broker_reachable"]  # type: ignore[index]


def test_healthz_follows_the_liveness_callback(served: Served) -> None:
    url = served.server.url + "/healthz"

    alive = get(url)
    served.liveness.alive = False
    dead = get(url)

    assert (alive.status, alive.json()) == (200, {"status": "alive"})
    assert (dead.status, dead.json()) == (503, {"status": "not_alive"})
    assert served.liveness.calls == [True, False]


def test_healthz_liveness_that_raises_is_503() -> None:
    def broken() -> bool:
        raise RuntimeError("loop state unreadable")

    with HealthServer(JobMetrics().registry, Readiness(), broken) as server:
        response = get(server.url + "/healthz")

    assert response.status == 503


def test_unknown_path_is_404_and_query_strings_are_ignored(served: Served) -> None:
    assert get(served.server.url + "/nope").status == 404
    assert get(served.server.url + "/healthz?verbose=1").status == 200


def test_requests_log_nothing_and_write_nothing_to_stderr(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    with structlog.testing.capture_logs() as logs:
        for path in ("/metrics", "/healthz", "/readyz", "/nope"):
            get(served.server.url + path)

    assert logs == []
    assert capsys.readouterr().err == ""


def test_readiness_logs_one_line_per_change_and_none_for_repeats() -> None:
    readiness = Readiness()

    with structlog.testing.capture_logs() as logs:
        readiness.set(RECONCILED)
        readiness.set(RECONCILED)
        readiness.set(PARTITIONS_ASSIGNED)
        readiness.set(BROKER_REACHABLE)
        readiness.clear(PARTITIONS_ASSIGNED)
        readiness.clear(PARTITIONS_ASSIGNED)

    assert [(e["event"], e["condition"], e["met"], e["ready"]) for e in logs] == [
        ("readiness_changed", "reconciled", True, False),
        ("readiness_changed", "partitions_assigned", True, False),
        ("readiness_changed", "broker_reachable", True, True),
        ("readiness_changed", "partitions_assigned", False, False),
    ]
    assert logs[-1]["unmet"] == ["partitions_assigned"]


def test_readiness_unknown_condition_raises() -> None:
    readiness = Readiness()

    with pytest.raises(ValueError, match="unknown readiness condition 'partition_assigned'"):
        readiness.set("partition_assigned")
    assert readiness.unmet() == ["partitions_assigned", "broker_reachable", "reconciled"]


def test_heartbeat_is_alive_until_silent_for_too_long() -> None:
    now = [100.0]
    heartbeat = Heartbeat(max_silence_s=30.0, clock=lambda: now[0])

    now[0] = 130.0
    at_limit = heartbeat()
    now[0] = 130.5
    silent = heartbeat()
    heartbeat.beat()
    revived = heartbeat()

    assert (at_limit, silent, revived) == (True, False, True)


def test_two_servers_serve_their_own_registries() -> None:
    first, second = JobMetrics(), JobMetrics()
    first.received()
    first.received()
    second.received()

    with (
        HealthServer(first.registry, Readiness(), Alive()) as one,
        HealthServer(second.registry, Readiness(), Alive()) as two,
    ):
        urls = {one.url, two.url}
        first_values = samples(get(one.url + "/metrics").body.decode())
        second_values = samples(get(two.url + "/metrics").body.decode())

    assert len(urls) == 2
    assert first_values[("rebalance_stream_inputs_in_flight", ())] == 2
    assert second_values[("rebalance_stream_inputs_in_flight", ())] == 1


def test_health_server_stop_releases_the_port_and_start_twice_raises() -> None:
    server = HealthServer(JobMetrics().registry, Readiness(), Alive())
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url

    server.start()
    port = server.port
    with pytest.raises(RuntimeError, match="already started"):
        server.start()
    server.stop()
    server.stop()

    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass


def test_health_server_on_all_interfaces_reports_a_loopback_url() -> None:
    any_interface = "0.0.0.0"  # noqa: S104 - the case under test

    with HealthServer(JobMetrics().registry, Readiness(), Alive(), host=any_interface) as server:
        url = server.url
        response = get(url + "/healthz")

    assert url == f"http://127.0.0.1:{server_port(url)}"
    assert response.status == 200


def server_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])
