"""Scenario 6, a peer for reference: the same job as the simplest Quix Streams application.

Quix Streams runs on confluent-kafka (librdkafka), which moves several times more records per
second than kafka-python, so its figure is context, not a target. It is not a dependency of
this project: quixstreams pins pydantic below ours, so it lives in a virtualenv of its own
(``.venv-peer``, or REBALANCE_STREAM_PEER_VENV), created once from ``peer_requirements.txt``
plus this project (``--no-deps -e``), and ``peer_app.py`` runs there as a subprocess over the
same kind of backlog as the throughput scenario. A smoke run never creates that virtualenv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import (
    INPUT_PARTITIONS,
    OUTPUTS_PER_PLAN,
    Kafka,
    Workspace,
    new_group,
    preload,
    rate,
)
from bench.throughput import timeout_for
from rebalance_stream.streams.local_kafka import create_topics

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
REQUIREMENTS = HERE / "peer_requirements.txt"
APP = HERE / "peer_app.py"
VENV_ENV = "REBALANCE_STREAM_PEER_VENV"
READY_MARKER = "bench-peer-ready"
INSTALL_TIMEOUT_S = 900.0
CHECK_IMPORTS = "import quixstreams, confluent_kafka, rebalance_stream.contracts.rebalance"
ROLE = "reference, not a target"
TAIL_CHARS = 1500


def venv_dir() -> Path:
    return Path(os.environ.get(VENV_ENV) or REPO_ROOT / ".venv-peer")


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def is_ready(venv: Path) -> bool:
    """Installed by ``prepare`` from the current ``peer_requirements.txt``."""
    marker = venv / READY_MARKER
    return (
        venv_python(venv).is_file()
        and marker.is_file()
        and marker.read_text(encoding="utf-8") == REQUIREMENTS.read_text(encoding="utf-8")
    )


def _step(name: str, command: list[str]) -> str | None:
    """Run one setup command; why it failed, or None."""
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreters and fixed arguments
            command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{name}: {type(exc).__name__}: {exc}"
    if done.returncode != 0:
        return f"{name} exited {done.returncode}: {(done.stderr or done.stdout)[-TAIL_CHARS:]}"
    return None


def prepare(venv: Path) -> str | None:
    """Create and fill the peer's virtualenv unless it is ready; None, or why it is not."""
    if is_ready(venv):
        return None
    pip = [str(venv_python(venv)), "-m", "pip", "install", "-q"]
    steps = (
        ("python -m venv", [sys.executable, "-m", "venv", str(venv)]),
        ("pip install -r", [*pip, "-r", str(REQUIREMENTS)]),
        ("pip install -e", [*pip, "--no-deps", "-e", str(REPO_ROOT)]),
        ("import check", [str(venv_python(venv)), "-I", "-c", CHECK_IMPORTS]),
    )
    for name, command in steps:
        failure = _step(name, command)
        if failure is not None:
            return f"the peer's virtualenv {venv} could not be prepared: {failure}"
    (venv / READY_MARKER).write_text(REQUIREMENTS.read_text(encoding="utf-8"), encoding="utf-8")
    return None


def skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason, "role": ROLE}


def run_app(venv: Path, arguments: list[str], timeout_s: float, cwd: Path) -> dict[str, Any]:
    """Run ``peer_app.py`` with the peer's interpreter; its JSON result."""
    done = subprocess.run(  # noqa: S603 - our own script, with the peer's interpreter
        [str(venv_python(venv)), "-I", str(APP), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=cwd,
    )
    if done.returncode != 0:
        raise RuntimeError(f"peer_app exited {done.returncode}: {done.stderr[-TAIL_CHARS:]}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"peer_app printed nothing: {done.stderr[-TAIL_CHARS:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run(kafka: Kafka, workspace: Workspace, plans: int, smoke: bool = False) -> dict[str, Any]:
    """Pre-load ``plans`` plans, as for throughput, and drain them with the Quix peer."""
    venv = venv_dir()
    if smoke and not is_ready(venv):
        return skipped(
            f"smoke run: the peer's virtualenv {venv} is not there, and a smoke run never "
            "creates it (a full `python -m bench` does)"
        )
    started = time.monotonic()
    why_not = prepare(venv)
    if why_not is not None:
        return skipped(why_not)
    venv_s = time.monotonic() - started
    bootstrap = kafka.bootstrap_servers
    suffix = uuid.uuid4().hex[:8]
    source, sink = f"bench-peer-in-{suffix}", f"bench-peer-out-{suffix}"
    create_topics(bootstrap, [source], INPUT_PARTITIONS)
    create_topics(bootstrap, [sink])
    backlog = preload(bootstrap, source, plans)
    state_dir = workspace.root / f"peer-state-{suffix}"
    state_dir.mkdir()
    arguments = [bootstrap, source, sink, str(plans), new_group("peer")]
    arguments += ["--state-dir", str(state_dir)]
    peer = run_app(venv, arguments, timeout_for(plans), state_dir)
    if peer["plans"] < plans:
        raise RuntimeError(f"the peer processed {peer['plans']} of {plans} plans")
    return {
        "role": ROLE,
        "plans": plans,
        "preload_s": round(backlog.produce_s, 2),
        "preload_plans_per_s": rate(plans, backlog.produce_s),
        **peer,
        "outputs_per_plan": OUTPUTS_PER_PLAN,
        "timing": "first record processed to last offset committed, in the peer's process",
        "venv": str(venv),
        "venv_prepare_s": round(venv_s, 1),
    }
