"""``rebalance-stream run`` as a real subprocess, and a reader of the output topics, for tests
that stop the job with signals (SIGTERM, SIGKILL) and start it again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer  # type: ignore[import-untyped]

from rebalance_stream.streams.settings import Settings

RUN_JOB = "from rebalance_stream.streams.cli import main; main()"
POLL_S = 0.1


def job_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a job process: this one's, minus our settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REBALANCE_STREAM_")}
    for name, value in settings.model_dump(mode="json", exclude_none=True).items():
        if isinstance(value, list):
            value = ",".join(value)
        env[f"REBALANCE_STREAM_{name.upper()}"] = str(value)
    env.update({f"REBALANCE_STREAM_{k.upper()}": v for k, v in extra.items()})
    env["REBALANCE_STREAM_LOG_FORMAT"] = "json"
    env["REBALANCE_STREAM_HEALTH_PORT"] = extra.get("health_port", "0")
    return env


class JobProcess:
    """One ``rebalance-stream run`` process; its log goes to ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self._log_path = log_path
        self._log_start = log_path.stat().st_size if log_path.exists() else 0
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-c", RUN_JOB, "run"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout_s: float) -> int | None:
        """The exit code, or None if it is still running after ``timeout_s``."""
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def wait_for_log(self, event: str, timeout_s: float) -> bool:
        """True once this process logged ``event`` (a structlog event name)."""
        marker = f'"event": "{event}"'.encode()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            with self._log_path.open("rb") as log:
                log.seek(self._log_start)
                if marker in log.read():
                    return True
            time.sleep(POLL_S)
        return False

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def kill(self) -> int:
        self.signal(signal.SIGKILL)
        return self.process.wait()

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self._log.close()


class OutputReader:
    """Reads every record of the output topics from the start, as they arrive."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._consumer = KafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        self.records: dict[str, list[Any]] = defaultdict(list)

    def poll(self) -> None:
        for partition, batch in self._consumer.poll(timeout_ms=200).items():
            self.records[partition.topic].extend(batch)

    def causes(self, topic: str) -> set[str]:
        """The distinct ``causation_id`` values read so far on ``topic``."""
        return {json.loads(r.value)["causation_id"] for r in self.records[topic]}

    def wait_until(self, done: Callable[[OutputReader], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            if done(self):
                return True
            time.sleep(POLL_S)
        self.poll()
        return done(self)

    def close(self) -> None:
        self._consumer.close()
