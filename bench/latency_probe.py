"""The latency scenario's publisher and reader, in a process of their own.

``python -m bench.latency_probe`` sends records at a steady rate and tails a read_committed
topic until each shows, then prints one JSON document: the latencies in ms and, for plans,
each WorkflowCompleted's ``workflow_duration_ms``. In its own process, its clients do not
share the job's GIL, so that what it measures is the job's latency, not the wait for a turn
at the interpreter. Two modes:

* ``round-trip``: trivial records to one topic, read back from it (the broker's own latency);
* ``plans``: one warm-up plan per account, then the plans, each followed to its
  WorkflowCompleted (whose ``causation_id`` header names the plan's event_id).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.baseline import SteadyPublisher, TailReader, bare_producer
from bench.common import ACCOUNTS, MS_PER_S, plan_record, utc_timestamp

WARMUP_TIMEOUT_S = 60.0
DRAIN_LIMIT_S = 120.0
CAUSATION_HEADER = "causation_id"


@dataclass(frozen=True, slots=True)
class ProbeRun:
    """What to send and where to read it back; for plans, ``beside`` names a topic for a
    round trip of trivial records at the same rate, at the same time."""

    bootstrap: str
    send_to: str
    read_from: str
    per_s: float
    count: int
    beside: str | None = None


def _causation(record: Any) -> str | None:
    for name, value in record.headers or ():
        if name == CAUSATION_HEADER:
            return bytes(value).decode()
    return None


class CompletionWatch:
    """Reads WorkflowCompleted as it becomes visible; keeps when each plan's showed."""

    def __init__(self, reader: TailReader) -> None:
        self._reader = reader
        self.seen_s: dict[str, float] = {}
        self.created_s: dict[str, float] = {}
        """When the job handed each WorkflowCompleted to its producer (the record's timestamp)."""
        self.durations_ms: list[int] = []

    def until(self, event_ids: Sequence[str], timeout_s: float) -> int:
        """Poll until every event_id showed, or timeout_s passed; return how many showed."""
        wanted = set(event_ids)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not wanted <= self.seen_s.keys():
            for record, seen_s in self._reader.poll():
                causation = _causation(record)
                if causation is not None and causation not in self.seen_s:
                    self.seen_s[causation] = seen_s
                    self.created_s[causation] = record.timestamp / MS_PER_S
                    self.durations_ms.append(json.loads(record.value)["workflow_duration_ms"])
        return len(wanted & self.seen_s.keys())


def _read_back(
    reader: TailReader, publisher: SteadyPublisher, count: int, timeout_s: float
) -> list[float]:
    """The latencies of the first ``count`` of the publisher's records read back, in ms."""
    latencies_ms: list[float] = []
    deadline = time.monotonic() + timeout_s
    while len(latencies_ms) < count and time.monotonic() < deadline:
        for record, seen_s in reader.poll():
            sent_s = publisher.sent_s.get(record.value.decode())
            if sent_s is not None:
                latencies_ms.append((seen_s - sent_s) * MS_PER_S)
    return latencies_ms


class RoundTrip:
    """Trivial records sent at a steady rate and read back: the broker's own latency.

    ``warm`` sends as many records as the plans' warm-up, unmeasured (the first sends pay for
    connections and metadata, and would otherwise be the p99 of a thousand); ``start`` then
    sends ``count`` at ``per_s`` and reads them back on a thread of its own, so that it can run
    beside the plans, under the same conditions."""

    def __init__(self, bootstrap: str, topic: str, producer: Any, count: int) -> None:
        self._reader = TailReader(bootstrap, topic)
        self._count = count
        self._warm = min(ACCOUNTS, count)
        records = [(b"k", str(i).encode(), str(i)) for i in range(self._warm + count)]
        self._warmup = SteadyPublisher(producer, topic, records[: self._warm])
        self._publisher = SteadyPublisher(producer, topic, records[self._warm :])
        self._reading: threading.Thread | None = None
        self.latencies_ms: list[float] = []

    def warm(self) -> None:
        self._warmup.start(float("inf"))
        _read_back(self._reader, self._warmup, self._warm, WARMUP_TIMEOUT_S)

    def start(self, per_s: float) -> None:
        timeout_s = self._count / per_s + DRAIN_LIMIT_S
        self._publisher.start(per_s)
        self._reading = threading.Thread(
            target=lambda: self.latencies_ms.extend(
                _read_back(self._reader, self._publisher, self._count, timeout_s)
            ),
            daemon=True,
        )
        self._reading.start()

    def finish(self) -> list[float]:
        """Wait for every record (or the time limit); the latencies in ms."""
        self._publisher.join()
        if self._reading is not None:
            self._reading.join()
        self._reader.close()
        return self.latencies_ms


def round_trip(run: ProbeRun) -> dict[str, Any]:
    """Trivial records at ``per_s``; each one's latency until visible."""
    producer = bare_producer(run.bootstrap, linger_ms=0)
    try:
        probe = RoundTrip(run.bootstrap, run.read_from, producer, run.count)
        probe.warm()
        probe.start(run.per_s)
        latencies_ms = probe.finish()
    finally:
        producer.close()
    return {"latencies_ms": latencies_ms, "durations_ms": [], "completed": len(latencies_ms)}


def plans(run: ProbeRun) -> dict[str, Any]:
    """One warm-up plan per account, then ``count`` plans at ``per_s``; each plan's latency
    from its send to its WorkflowCompleted showing. With ``beside``, a round trip runs at the
    same rate meanwhile (its latencies are ``beside_ms``)."""
    reader = TailReader(run.bootstrap, run.read_from)
    watch = CompletionWatch(reader)
    producer = bare_producer(run.bootstrap, linger_ms=0)
    beside = RoundTrip(run.bootstrap, run.beside, producer, run.count) if run.beside else None
    run_id = uuid.uuid4().hex[:8]
    try:
        warm = min(ACCOUNTS, run.count)
        warmup = [plan_record(f"warm-{run_id}", i, utc_timestamp()) for i in range(warm)]
        SteadyPublisher(producer, run.send_to, warmup).start(float("inf"))
        warmed = watch.until([name for _, _, name in warmup], WARMUP_TIMEOUT_S)
        if warmed < len(warmup):
            message = f"{warmed} of {len(warmup)} warm-up plans completed in {WARMUP_TIMEOUT_S} s"
            raise TimeoutError(message)
        if beside is not None:
            beside.warm()
        records = [plan_record(run_id, i, utc_timestamp()) for i in range(run.count)]
        publisher = SteadyPublisher(producer, run.send_to, records)
        watch.durations_ms.clear()
        publisher.start(run.per_s)
        if beside is not None:
            beside.start(run.per_s)
        names = [name for _, _, name in records]
        completed = watch.until(names, run.count / run.per_s + DRAIN_LIMIT_S)
        publisher.join()
        beside_ms = beside.finish() if beside is not None else []
    finally:
        producer.close()
        reader.close()
    shown = [name for name in names if name in watch.seen_s]
    return {
        "beside_ms": beside_ms,
        "latencies_ms": [(watch.seen_s[n] - publisher.sent_s[n]) * MS_PER_S for n in shown],
        "to_producer_ms": [(watch.created_s[n] - publisher.sent_s[n]) * MS_PER_S for n in shown],
        "durations_ms": watch.durations_ms,
        "completed": completed,
        "warmup_plans": len(warmup),
    }


MODES = {"round-trip": round_trip, "plans": plans}


def in_subprocess(mode: str, run: ProbeRun) -> dict[str, Any]:
    """Run the probe in a new interpreter and return the document it printed."""
    command = [
        sys.executable,
        "-m",
        "bench.latency_probe",
        mode,
        run.bootstrap,
        run.send_to,
        run.read_from,
        str(run.per_s),
        str(run.count),
        *(["--beside", run.beside] if run.beside else []),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"the latency probe failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_probe")
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("bootstrap")
    parser.add_argument("send_to")
    parser.add_argument("read_from")
    parser.add_argument("per_s", type=float)
    parser.add_argument("count", type=int)
    parser.add_argument("--beside", default=None, help="a topic for a round trip meanwhile")
    args = parser.parse_args(argv)
    run = ProbeRun(
        args.bootstrap, args.send_to, args.read_from, args.per_s, args.count, args.beside
    )
    json.dump(MODES[args.mode](run), sys.stdout)


if __name__ == "__main__":
    main()
