"""The deployment files: docker-compose.yml, read back through docker-compose's own parser, the
Dockerfile, and the Kubernetes manifest in deploy/kubernetes. All must agree with Settings: the
variable names, the topics, the health port and the shutdown deadline.

No Docker engine is needed: `docker-compose config` only validates and normalizes the file. No
cluster is needed either: the manifest is read with pyyaml and checked by its structure (kubectl
cannot validate without an API server, and no offline schema validator is installed).
"""

from __future__ import annotations

import json
import re
import shlex
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
KAFKA_UI = "kafka-ui"
MANIFEST = ROOT / "deploy" / "kubernetes" / "rebalance-stream.yaml"
JOB_UID = 10001
ALPACA_SECRETS = ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY")
SECRET_LOOKING = re.compile(r"SECRET|PASSWORD|TOKEN|KEY_ID|PRIVATE")
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what a container's health server must listen on


def default_topics() -> dict[str, str]:
    """Settings' topic fields and their default names, whatever the environment says. The
    Kafka ledger's changelog is left out: the job creates it, compacted, with ledger=kafka."""
    return {
        name: str(field.default)
        for name, field in Settings.model_fields.items()
        if name.startswith("topic_") and name != "topic_ledger_changelog"
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
        # Release tags, with the "v" some projects put in front (provectuslabs/kafka-ui:v0.7.2).
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not a release tag"


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


def dockerfile_env() -> dict[str, str]:
    """The ENV of the Dockerfile's last stage, in its KEY=value form."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    env: dict[str, str] = {}
    for keyword, arguments in instructions[last_from:]:
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_dockerfile_serves_health_on_all_interfaces() -> None:
    port = Settings.model_fields["health_port"].default
    assert dockerfile_env()[f"{ENV_PREFIX}HEALTH_HOST"] == ALL_INTERFACES
    exposed = [
        arguments.split() for keyword, arguments in dockerfile_instructions() if keyword == "EXPOSE"
    ]
    assert str(port) in {entry.split("/")[0] for ports in exposed for entry in ports}


# docker-compose.yml: the health endpoints and the Kafka UI.


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """Host port -> container port, from the long form (normalized) or the short form."""
    ports: dict[int, int] = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports[int(entry["published"])] = int(entry["target"])
        else:
            host, _, container = str(entry).rpartition(":")
            ports[int(host.rpartition(":")[2])] = int(container.split("/")[0])
    return ports


def test_the_job_serves_health_on_a_published_port(
    services: dict[str, dict[str, Any]],
) -> None:
    env = environment_of(services[JOB])
    assert env[f"{ENV_PREFIX}HEALTH_HOST"] == ALL_INTERFACES
    port = int(env.get(f"{ENV_PREFIX}HEALTH_PORT") or Settings.model_fields["health_port"].default)
    assert port in published_ports(services[JOB]).values()


def test_the_job_is_healthy_when_ready(services: dict[str, dict[str, Any]]) -> None:
    env = environment_of(services[JOB])
    port = int(env.get(f"{ENV_PREFIX}HEALTH_PORT") or Settings.model_fields["health_port"].default)
    check = services[JOB]["healthcheck"]
    test = check["test"]
    assert isinstance(test, list)
    assert test[0] in {"CMD", "CMD-SHELL"}
    command = " ".join(test[1:])
    assert f"127.0.0.1:{port}/readyz" in command
    # The slim image has Python, not curl or wget.
    assert command.startswith("python ")
    assert "curl" not in command
    assert "wget" not in command
    assert int(check["retries"]) > 1, "/readyz is 503 for a moment during every rebalance"


def test_kafka_ui_watches_the_compose_broker(services: dict[str, dict[str, Any]]) -> None:
    ui = services[KAFKA_UI]
    assert ui["image"].startswith("provectuslabs/kafka-ui:")
    env = environment_of(ui)
    assert env["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == "kafka:9092"
    assert published_ports(ui) == {8081: 8080}
    assert ui["depends_on"] == {"kafka": {"condition": "service_healthy"}}


# deploy/kubernetes/rebalance-stream.yaml, read with pyyaml.

Manifest = list[dict[str, Any]]


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    documents = [
        document
        for document in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8"))
        if document is not None
    ]
    for document in documents:
        assert isinstance(document, dict)
        assert {"apiVersion", "kind", "metadata"} <= set(document)
    return documents


def only(manifest: Manifest, kind: str) -> dict[str, Any]:
    found = [document for document in manifest if document["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


@pytest.fixture(scope="module")
def statefulset(manifest: Manifest) -> dict[str, Any]:
    return only(manifest, "StatefulSet")


@pytest.fixture(scope="module")
def pod(statefulset: dict[str, Any]) -> dict[str, Any]:
    """The StatefulSet's pod template spec."""
    spec: dict[str, Any] = statefulset["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def env_entries(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's `env` by name (each entry has `value` or `valueFrom`)."""
    entries = container.get("env") or []
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names)), "an env name is set twice"
    return {entry["name"]: entry for entry in entries}


def config_maps_of(manifest: Manifest, container: dict[str, Any]) -> list[dict[str, Any]]:
    """The ConfigMaps of the container's envFrom, each of them in this manifest."""
    maps = {doc["metadata"]["name"]: doc for doc in manifest if doc["kind"] == "ConfigMap"}
    found = []
    for source in container.get("envFrom") or []:
        assert "prefix" not in source
        if "configMapRef" in source:
            found.append(maps[source["configMapRef"]["name"]])
    return found


def literal_env(manifest: Manifest, container: dict[str, Any]) -> dict[str, str]:
    """What the pod's environment holds as plain values: its ConfigMaps, then its own `env`
    (which wins, as in Kubernetes). Values from fieldRef or secretKeyRef are left out."""
    env: dict[str, str] = {}
    for config_map in config_maps_of(manifest, container):
        env.update({str(key): str(value) for key, value in config_map["data"].items()})
    for name, entry in env_entries(container).items():
        if "value" in entry:
            env[name] = str(entry["value"])
        else:
            env.pop(name, None)
    return env


def pod_settings(manifest: Manifest, container: dict[str, Any]) -> Settings:
    """Settings as the pod would read them: the manifest's plain values over the defaults. Every
    field is given, so the test process's own REBALANCE_STREAM_* variables do not leak in."""
    values: dict[str, Any] = {
        name: field.get_default(call_default_factory=True)
        for name, field in Settings.model_fields.items()
    }
    values.update(
        (name.removeprefix(ENV_PREFIX).lower(), value)
        for name, value in literal_env(manifest, container).items()
        if name.startswith(ENV_PREFIX)
    )
    return Settings.model_validate(values)


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = selector["matchLabels"]
    return bool(wanted) and set(selector) == {"matchLabels"} and wanted.items() <= labels.items()


def test_manifest_is_namespace_agnostic_and_holds_no_secret(manifest: Manifest) -> None:
    kinds = sorted(document["kind"] for document in manifest)
    assert kinds == ["ConfigMap", "PodDisruptionBudget", "Service", "StatefulSet"]
    for document in manifest:
        assert "namespace" not in document["metadata"], document["metadata"]["name"]
    # The Secret is created apart, so that applying the manifest again never overwrites real
    # keys with placeholders; the manifest carries it only as a commented template.
    assert "Secret" not in kinds
    assert "# kind: Secret" in MANIFEST.read_text(encoding="utf-8")


def test_statefulset_starts_its_pods_in_parallel(
    manifest: Manifest, statefulset: dict[str, Any]
) -> None:
    spec = statefulset["spec"]
    assert statefulset["apiVersion"] == "apps/v1"
    assert spec["podManagementPolicy"] == "Parallel"
    assert int(spec["replicas"]) >= 1
    labels = spec["template"]["metadata"]["labels"]
    assert matches(spec["selector"], labels)
    service = only(manifest, "Service")
    assert spec["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= labels.items()


def test_each_pod_is_its_own_group_member(manifest: Manifest, container: dict[str, Any]) -> None:
    name = f"{ENV_PREFIX}GROUP_INSTANCE_ID"
    entry = env_entries(container)[name]
    assert "value" not in entry
    assert entry["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    for config_map in config_maps_of(manifest, container):
        assert name not in config_map["data"], "one instance id for every pod"


def named_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    numbers = {entry["name"]: int(entry["containerPort"]) for entry in container["ports"]}
    return numbers[port]


def test_probes_ask_healthz_and_readyz_on_the_health_port(
    manifest: Manifest, statefulset: dict[str, Any], container: dict[str, Any]
) -> None:
    settings = pod_settings(manifest, container)
    assert settings.health_host == ALL_INTERFACES
    health_port = settings.health_port
    paths = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}
    for probe_name, path in paths.items():
        if probe_name == "startupProbe" and probe_name not in container:
            continue
        probe = container[probe_name]["httpGet"]
        assert probe["path"] == path, probe_name
        assert named_port(container, probe["port"]) == health_port, probe_name
    # /readyz is 503 for a moment during every rebalance: one miss must not unready the pod.
    readiness = container["readinessProbe"]
    tolerated_s = int(readiness["failureThreshold"]) * int(readiness.get("periodSeconds", 10))
    assert int(readiness["failureThreshold"]) > 1
    assert tolerated_s * 1000 >= settings.session_timeout_ms
    annotations = statefulset["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == health_port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_every_rebalance_stream_variable_in_the_manifest_is_a_setting(
    manifest: Manifest, container: dict[str, Any]
) -> None:
    named = set(env_entries(container))
    for config_map in config_maps_of(manifest, container):
        named |= set(config_map["data"])
    in_use = {name for name in named if name.startswith(ENV_PREFIX)}
    assert {f"{ENV_PREFIX}LEDGER", f"{ENV_PREFIX}KAFKA_BOOTSTRAP_SERVERS"} <= in_use
    assert unknown_variables(in_use) == []
    # The comments too, the commented Secret template among them.
    mentioned = set(ENV_NAME.findall(MANIFEST.read_text(encoding="utf-8")))
    assert unknown_variables(mentioned) == []
    # And the values parse: Settings accepts what the pod would read.
    pod_settings(manifest, container)


def test_secrets_come_from_secret_references(
    manifest: Manifest, pod: dict[str, Any], container: dict[str, Any]
) -> None:
    assert set(ALPACA_SECRETS) <= set(env_entries(container))
    for each in [*pod.get("initContainers", []), *pod["containers"]]:
        for name, entry in env_entries(each).items():
            if name in ALPACA_SECRETS or SECRET_LOOKING.search(name):
                assert "value" not in entry, f"{name} is written into the StatefulSet"
                reference = entry["valueFrom"]["secretKeyRef"]
                assert reference["name"]
                assert reference["key"]
    for config_map in (document for document in manifest if document["kind"] == "ConfigMap"):
        assert not [key for key in config_map["data"] if SECRET_LOOKING.search(key)]


def test_grace_period_outlasts_the_shutdown_deadline(
    manifest: Manifest, pod: dict[str, Any], container: dict[str, Any]
) -> None:
    grace = int(pod["terminationGracePeriodSeconds"])
    assert grace > pod_settings(manifest, container).shutdown_deadline_s
    assert grace > Settings.model_fields["shutdown_deadline_s"].default


def test_pods_run_unprivileged_on_a_read_only_root(
    pod: dict[str, Any], container: dict[str, Any]
) -> None:
    pod_context = pod["securityContext"]
    assert pod_context["runAsNonRoot"] is True
    assert pod_context["runAsUser"] == JOB_UID
    assert pod_context["fsGroup"] == JOB_UID, "the volume must be writable by the job's user"
    context = container["securityContext"]
    assert context.get("runAsNonRoot", True) is True
    assert context.get("runAsUser", JOB_UID) == JOB_UID
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    users = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "USER"]
    assert users[-1].split(":")[0] == str(JOB_UID)


def test_the_ledger_is_on_the_pods_own_volume(
    manifest: Manifest, statefulset: dict[str, Any], container: dict[str, Any]
) -> None:
    claims = {
        template["metadata"]["name"]: template["spec"]
        for template in statefulset["spec"]["volumeClaimTemplates"]
    }
    mounts = {
        mount["mountPath"].rstrip("/"): mount
        for mount in container["volumeMounts"]
        if mount["name"] in claims
    }
    assert STATE_DIR in mounts
    settings = pod_settings(manifest, container)
    for path in (settings.ledger, str(settings.paper_state)):
        directory = str(Path(path).parent)
        assert directory in mounts, f"{path} is not on a volume claim"
        assert not mounts[directory].get("readOnly", False)
        assert claims[mounts[directory]["name"]]["accessModes"] == ["ReadWriteOnce"]


def test_pods_have_resources_and_a_disruption_budget(
    manifest: Manifest, statefulset: dict[str, Any], container: dict[str, Any]
) -> None:
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind
    budget = only(manifest, "PodDisruptionBudget")
    assert budget["apiVersion"] == "policy/v1"
    assert matches(
        budget["spec"]["selector"], statefulset["spec"]["template"]["metadata"]["labels"]
    )
    assert {"maxUnavailable", "minAvailable"} & set(budget["spec"])


def test_manifest_image_is_pinned(container: dict[str, Any]) -> None:
    repository, _, tag = container["image"].rpartition(":")
    assert repository
    assert "/" not in tag
    assert tag != "latest"
    assert container.get("args") == ["run"]
