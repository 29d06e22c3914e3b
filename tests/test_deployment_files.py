"""The deployment files: docker-compose.yml, read back through docker-compose's own parser, and
the Dockerfile. Both must agree with Settings: the variable names, the topics and the deadline.

No Docker engine is needed: `docker-compose config` only validates and normalizes the file.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from rebalance_stream.streams.settings import CONFIG_FILE_VARIABLE, Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_PREFIX = "REBALANCE_STREAM_"
ENV_NAME = re.compile(rf"\b{ENV_PREFIX}[A-Z0-9_]+\b")
STATE_DIR = "/var/lib/rebalance-stream"
JOB = "rebalance-stream"


def default_topics() -> dict[str, str]:
    """Settings' topic fields and their default names, whatever the environment says."""
    return {
        name: str(field.default)
        for name, field in Settings.model_fields.items()
        if name.startswith("topic_")
    }


def unknown_variables(names: set[str]) -> list[str]:
    """The REBALANCE_STREAM_* names among `names` that Settings does not read."""
    return sorted(
        name
        for name in names
        if name != CONFIG_FILE_VARIABLE
        and name.removeprefix(ENV_PREFIX).lower() not in Settings.model_fields
    )


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def seconds(duration: str) -> float:
    """A compose duration such as 45s, 1m30s or 1m."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", duration)
    assert parts is not None
    assert any(parts.groups()), duration
    minutes, secs = parts.groups()
    return int(minutes or 0) * 60 + float(secs or 0)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as docker-compose (v1) validates and normalizes it."""
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.fail(
            "docker-compose is not installed; .ci/run installs it "
            "(apt-get install docker-compose), or install it the same way to run this test"
        )
    result = subprocess.run(  # noqa: S603 - a fixed argv, no shell
        [executable, "-f", COMPOSE_FILE.name, "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert {"kafka", "topics", JOB} <= set(found)
    return dict(found)


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    assert services["kafka"]["image"].startswith("apache/kafka:")
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"
        assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"{name}: {image} is not a release tag"


def test_the_job_reaches_kafka_inside_the_compose_network(
    services: dict[str, dict[str, Any]],
) -> None:
    env = environment_of(services[JOB])
    assert env[f"{ENV_PREFIX}KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    advertised = environment_of(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "PLAINTEXT://kafka:9092" in advertised


def test_every_rebalance_stream_variable_is_a_setting(
    services: dict[str, dict[str, Any]],
) -> None:
    in_environments = {
        name
        for service in services.values()
        for name in environment_of(service)
        if name.startswith(ENV_PREFIX)
    }
    assert f"{ENV_PREFIX}LEDGER" in in_environments
    assert unknown_variables(in_environments) == []
    # The comments too: whatever the file tells a user to set must exist.
    mentioned = set(ENV_NAME.findall(COMPOSE_FILE.read_text(encoding="utf-8")))
    assert unknown_variables(mentioned) == []


def test_the_job_keeps_its_state_on_a_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    job = services[JOB]
    mounts = {str(volume).split(":")[1]: str(volume).split(":")[0] for volume in job["volumes"]}
    assert mounts[STATE_DIR] in compose["volumes"]
    env = environment_of(job)
    for name in ("LEDGER", "PAPER_STATE"):
        assert env[f"{ENV_PREFIX}{name}"].startswith(f"{STATE_DIR}/")


def test_stop_grace_period_outlasts_the_shutdown_deadline(
    services: dict[str, dict[str, Any]],
) -> None:
    deadline = Settings.model_fields["shutdown_deadline_s"].default
    override = environment_of(services[JOB]).get(f"{ENV_PREFIX}SHUTDOWN_DEADLINE_S")
    if override:
        deadline = float(override)
    assert seconds(str(services[JOB]["stop_grace_period"])) > deadline


def test_start_order_waits_for_a_healthy_broker_and_the_topics(
    services: dict[str, dict[str, Any]],
) -> None:
    assert "healthcheck" in services["kafka"]
    assert services["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert services[JOB]["depends_on"] == {
        "topics": {"condition": "service_completed_successfully"}
    }


def test_topics_service_creates_exactly_the_default_topics(
    services: dict[str, dict[str, Any]],
) -> None:
    command = services["topics"]["command"]
    script = "\n".join(command) if isinstance(command, list) else str(command)
    creates = [line for line in script.splitlines() if "--create" in line]
    assert creates
    created = []
    for line in creates:
        assert "kafka-topics.sh" in line
        assert "--if-not-exists" in line
        assert "--bootstrap-server kafka:9092" in line
        created.extend(re.findall(r"--topic\s+(\S+)", line))
    assert sorted(created) == sorted(default_topics().values())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def test_dockerfile_runs_the_job_pinned_and_unprivileged() -> None:
    instructions = dockerfile_instructions()
    bases = [arguments.split()[0] for keyword, arguments in instructions if keyword == "FROM"]
    assert bases
    for base in bases:
        _, _, tag = base.partition(":")
        assert tag, f"FROM {base} has no tag"
        assert "latest" not in tag, base
        assert re.match(r"\d+\.\d+", tag), f"FROM {base} is not pinned to a version"

    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users, "the image must not run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}

    entrypoints = [arguments for keyword, arguments in instructions if keyword == "ENTRYPOINT"]
    assert [json.loads(entry) for entry in entrypoints][-1:] == [["rebalance-stream"]]
    runs_install = [arguments for keyword, arguments in instructions if keyword == "RUN"]
    assert any("pip install --no-cache-dir ." in arguments for arguments in runs_install)

    mentioned = set(ENV_NAME.findall(DOCKERFILE.read_text(encoding="utf-8")))
    assert f"{ENV_PREFIX}LOG_FORMAT" in mentioned
    assert unknown_variables(mentioned) == []
