"""A local single-node Apache Kafka (KRaft) that the project starts itself.

Needs only Java 17+ and Maven: ``fetch_jars`` resolves the broker's jars from Maven Central once,
into a cache, and ``LocalKafka`` formats a data directory and runs the broker from it.

    python -m rebalance_stream.streams.local_kafka start --data-dir .kafka-local --port 9092
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib.resources import as_file, files
from pathlib import Path
from typing import Self

import structlog
from kafka import KafkaAdminClient  # type: ignore[import-untyped]
from kafka.errors import KafkaError, TopicAlreadyExistsError  # type: ignore[import-untyped]

from rebalance_stream.streams.local_kafka_config import (
    HOST,
    JAAS_OPTION,
    broker_properties,
    check_sasl_users,
    free_ports,
    random_cluster_id,
    scram_format_arguments,
    write_jaas,
    write_properties,
)
from rebalance_stream.streams.logs import configure_logging

KAFKA_VERSION = "4.1.1"
KAFKA_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
CACHE_ENV = "REBALANCE_STREAM_KAFKA_CACHE"
LOG_TAIL_LINES = 40
POLL_S = 0.25
ATTEMPT_TIMEOUT_S = 5.0
FORMAT_TIMEOUT_S = 60.0
KILL_WAIT_S = 5.0
# C1 only and the serial GC: on 2 CPUs the broker answers in about 5 s instead of 12 s.
# slf4j-simple writes to stderr, which goes to broker.log; timestamps make a failed start readable.
JVM_OPTIONS = (
    "-Xmx512m",
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSZ",
)

log = structlog.get_logger(__name__)


class LocalKafkaError(RuntimeError):
    """The jars could not be fetched, or the broker did not start."""


def default_cache_dir() -> Path:
    """$REBALANCE_STREAM_KAFKA_CACHE, else ~/.cache/rebalance-stream."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path.home() / ".cache" / "rebalance-stream"


def fetch_jars(cache_dir: Path | None = None) -> Path:
    """Return the directory of Kafka 4.1.1's jars, ``<cache_dir>/kafka-4.1.1/libs``.

    Runs mvn only when that directory lacks the kafka_2.13-4.1.1 jar. mvn writes into a temporary
    sibling that is renamed into place once complete, so a half-done download is never used.
    Raises LocalKafkaError when mvn is missing or fails.
    """
    libs = (cache_dir or default_cache_dir()) / f"kafka-{KAFKA_VERSION}" / "libs"
    if (libs / KAFKA_JAR).is_file():
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=libs.parent, prefix=".libs-") as staging:
        staged = Path(staging) / "libs"
        _copy_dependencies(staged)
        _move_into_place(staged, libs)
    return libs


def _copy_dependencies(output_dir: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError("mvn is not on PATH: Maven 3 is needed to fetch the Kafka jars")
    log.info("kafka_jars_fetching", version=KAFKA_VERSION, output_dir=str(output_dir))
    started = time.monotonic()
    with as_file(files("rebalance_stream.streams") / "kafka_pom.xml") as pom:
        goal = ["dependency:copy-dependencies", f"-DoutputDirectory={output_dir}"]
        _run_checked([mvn, "-q", "-B", "-f", str(pom), *goal], timeout_s=None)
    log.info("kafka_jars_fetched", elapsed_s=round(time.monotonic() - started, 1))


def _move_into_place(staged: Path, libs: Path) -> None:
    if libs.exists() and not (libs / KAFKA_JAR).is_file():
        shutil.rmtree(libs)  # incomplete: it lacks the one jar that marks a finished copy
    try:
        staged.rename(libs)
    except OSError:
        if not (libs / KAFKA_JAR).is_file():
            raise
        # Another process finished the same download first; its copy is as good as ours.


def create_topics(bootstrap_servers: str, names: Iterable[str], partitions: int = 1) -> None:
    """Create each topic with replication factor 1 and wait until it has a leader.

    Idempotent: a topic that already exists is left as it is, whatever its partition count.
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        for name in names:
            spec = {name: {"num_partitions": partitions, "replication_factor": 1}}
            try:
                admin.create_topics(spec, wait_for_metadata=True)
            except TopicAlreadyExistsError:
                log.debug("kafka_topic_exists", topic=name)
    finally:
        admin.close()


class LocalKafka:
    """One KRaft node (broker and controller in one JVM) listening on 127.0.0.1.

    The constructor only stores configuration; ``start()`` formats ``data_dir`` on first use and
    launches the broker, ``stop()`` ends it. ``data_dir`` holds server.properties, ``logs/`` (the
    topic data, kept across restarts), broker.log (the JVM's output) and kafka.pid while it runs.

    ``sasl_users`` (name to password) adds a SASL_PLAINTEXT listener on ``sasl_port``: PLAIN
    checks the users of a JAAS file written into ``data_dir``, and SCRAM-SHA-256/512 the same
    users, created when the storage is formatted (so on a fresh ``data_dir`` only).
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        jars: Path | None = None,
        transaction_max_timeout_ms: int | None = None,
        java: str | None = None,
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        """Store the configuration; None picks a free port, fetch_jars() and the java on PATH."""
        if sasl_users is not None:
            check_sasl_users(sasl_users)
        self.data_dir = data_dir
        self._port = port
        self._sasl_users = dict(sasl_users) if sasl_users is not None else None
        self._sasl_port: int | None = None
        self._jars = jars
        self._transaction_max_timeout_ms = transaction_max_timeout_ms
        self._java = java
        self.pid_file = data_dir / "kafka.pid"
        self.log_file = data_dir / "broker.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def port(self) -> int:
        """The PLAINTEXT port; known once start() has chosen it."""
        if self._port is None:
            raise LocalKafkaError("no port yet: start() picks a free one")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:<port>"``."""
        return f"{HOST}:{self.port}"

    @property
    def sasl_port(self) -> int:
        """The SASL_PLAINTEXT port; known once start() has chosen it, with ``sasl_users`` only."""
        if self._sasl_port is None:
            raise LocalKafkaError("no SASL port: pass sasl_users, then start()")
        return self._sasl_port

    @property
    def sasl_bootstrap_servers(self) -> str:
        """``"127.0.0.1:<sasl_port>"``."""
        return f"{HOST}:{self.sasl_port}"

    def start(self, timeout_s: float = 60.0) -> None:
        """Launch the broker in its own process group; return once it answers a metadata request.

        On failure, stop the process and raise LocalKafkaError with the last lines of broker.log.
        """
        if running_pid(self.pid_file) is not None:
            raise LocalKafkaError(f"a broker already runs from {self.data_dir}")
        jars = self._jars or fetch_jars()
        java = self._java or shutil.which("java")
        if java is None:
            raise LocalKafkaError("java is not on PATH: Kafka 4.1 needs Java 17 or later")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        options = list(JVM_OPTIONS)
        if self._sasl_users is not None:
            options.append(f"{JAAS_OPTION}={write_jaas(self.data_dir, self._sasl_users)}")
        if not (self.data_dir / "logs" / "meta.properties").is_file():
            _format_storage(java, jars, config, scram_format_arguments(self._sasl_users or {}))
        with self.log_file.open("ab") as out:
            self._log_offset = out.tell()
            command = [java, *options, "-cp", f"{jars}/*", "kafka.Kafka", str(config)]
            self._process = subprocess.Popen(  # noqa: S603 - a fixed argv, never a shell
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )
        self.pid_file.write_text(f"{self._process.pid}\n")
        log.info("kafka_broker_starting", pid=self._process.pid, port=self.port)
        try:
            self._wait_until_ready(self._process, timeout_s)
        except BaseException:  # a timeout, or Ctrl-C while waiting: leave no broker behind
            self.stop()
            raise
        log.info("kafka_broker_ready", pid=self._process.pid, bootstrap=self.bootstrap_servers)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the broker, SIGKILL it if it still runs after timeout_s; return once it is gone.

        Works from another process too, through kafka.pid. A no-op when no broker runs.
        """
        pid = self._process.pid if self._process is not None else running_pid(self.pid_file)
        if pid is not None and self._is_running(pid):
            with contextlib.suppress(ProcessLookupError):  # it may exit by itself meanwhile
                os.kill(pid, signal.SIGTERM)
                if not self._wait_gone(pid, timeout_s):
                    log.warning("kafka_broker_killed", pid=pid, after_s=timeout_s)
                    os.kill(pid, signal.SIGKILL)
                    self._wait_gone(pid, KILL_WAIT_S)
            log.info("kafka_broker_stopped", pid=pid)
        self.pid_file.unlink(missing_ok=True)
        self._process = None

    def create_topics(self, names: Iterable[str], partitions: int = 1) -> None:
        """``create_topics(self.bootstrap_servers, names, partitions)``."""
        create_topics(self.bootstrap_servers, names, partitions)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _write_config(self) -> Path:
        taken = {self._port, self._sasl_port}
        candidates = [free for free in free_ports(3) if free not in taken]
        port = self._port if self._port is not None else candidates.pop()
        controller_port = candidates.pop()
        self._port = port
        if self._sasl_users is not None and self._sasl_port is None:
            self._sasl_port = candidates.pop()  # kept across restarts, like the PLAINTEXT port
        properties = broker_properties(self.data_dir, port, controller_port, self._sasl_port)
        if self._transaction_max_timeout_ms is not None:
            properties["transaction.max.timeout.ms"] = str(self._transaction_max_timeout_ms)
        return write_properties(self.data_dir / "server.properties", properties)

    def _wait_until_ready(self, process: subprocess.Popen[bytes], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while (remaining_s := deadline - time.monotonic()) > 0:
            if process.poll() is not None:
                raise LocalKafkaError(self._failure(f"the broker exited with {process.returncode}"))
            if _answers(self.port, min(remaining_s, ATTEMPT_TIMEOUT_S)):
                return
            time.sleep(POLL_S)
        raise LocalKafkaError(self._failure(f"the broker did not answer within {timeout_s} s"))

    def _failure(self, reason: str) -> str:
        """reason, this start's first ERROR (its shutdown buries it) and broker.log's last lines."""
        with self.log_file.open("rb") as out:
            out.seek(self._log_offset)
            lines = out.read().decode(errors="replace").splitlines()
        first = next((i for i, line in enumerate(lines) if " ERROR " in line), len(lines))
        parts = [reason, *lines[first : first + 2], f"last lines of {self.log_file}:"]
        return "\n".join([*parts, *lines[-LOG_TAIL_LINES:]])

    def _is_running(self, pid: int) -> bool:
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        return _is_broker(pid)

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        if self._process is not None and self._process.pid == pid:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout_s)  # also reaps it, so the PID is free afterwards
            return self._process.poll() is not None
        deadline = time.monotonic() + timeout_s
        while _is_broker(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_S)
        return True


def running_pid(pid_file: Path) -> int | None:
    """The PID in pid_file if that process is still a running Kafka broker, else None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _is_broker(pid) else None


def _is_broker(pid: int) -> bool:
    # Where /proc exists, a reused PID or a zombie (empty cmdline) is not our broker.
    proc = Path("/proc")
    if (proc / "self").exists():
        try:
            return b"kafka.Kafka" in (proc / str(pid) / "cmdline").read_bytes()
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except OSError:  # gone, or another user's process, which cannot be our broker
        return False
    return True


def _format_storage(java: str, jars: Path, config: Path, extra: Sequence[str] = ()) -> None:
    cluster_id = random_cluster_id()
    tool = [java, *JVM_OPTIONS, "-cp", f"{jars}/*", "kafka.tools.StorageTool"]
    format_command = [*tool, "format", "-t", cluster_id, "-c", str(config), *extra]
    _run_checked(format_command, FORMAT_TIMEOUT_S)
    log.info("kafka_storage_formatted", cluster_id=cluster_id, config=str(config))


def _run_checked(command: list[str], timeout_s: float | None) -> None:
    result = subprocess.run(  # noqa: S603 - a fixed argv built here, never a shell
        command, capture_output=True, text=True, check=False, timeout=timeout_s
    )
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-LOG_TAIL_LINES:])
        raise LocalKafkaError(f"{Path(command[0]).name} exited with {result.returncode}:\n{output}")


def _answers(port: int, timeout_s: float) -> bool:
    # kafka-python 3.0.12 leaks an I/O thread per KafkaAdminClient that fails to bootstrap, so
    # a plain TCP connect comes first; Kafka opens its listeners only at the end of startup.
    timeout_ms = int(timeout_s * 1000)
    try:
        socket.create_connection((HOST, port), timeout=1.0).close()
        admin = KafkaAdminClient(
            bootstrap_servers=f"{HOST}:{port}",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except (KafkaError, OSError):
        return False
    try:
        admin.list_topics()
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``kafka-local {fetch,start,stop}``: fetch the jars, start a detached broker, or stop it."""
    parser = argparse.ArgumentParser(prog="kafka-local", description=main.__doc__)
    parser.add_argument("command", choices=("fetch", "start", "stop"))
    parser.add_argument("--data-dir", type=Path, default=Path(".kafka-local"))
    parser.add_argument("--port", type=int, default=9092)
    args = parser.parse_args(argv)
    configure_logging(level="info", stream=sys.stderr)
    broker = LocalKafka(args.data_dir.resolve(), args.port)
    try:
        if args.command == "fetch":
            print(fetch_jars())
        elif args.command == "start":
            broker.start()
            print(broker.bootstrap_servers)
        else:
            broker.stop()
    except LocalKafkaError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
