"""The deployment files (docker-compose.yml, ops/) checked by parsing them.

No Docker engine was available where these files were written, so `docker compose config` and
`docker build` cannot run here; these tests hold the properties that matter for running the
queue safely: workers that scale and shut down warm, a Redis that keeps its data and is not
exposed, Flower that never runs without a password, and files that agree with each other.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
OPS = ROOT / "ops"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = OPS / "Dockerfile"
FLOWER_CONFIG = OPS / "flower" / "flowerconfig.py"
WORKER_UNIT = OPS / "systemd" / "bqx-worker@.service"
FLOWER_UNIT = OPS / "systemd" / "bqx-flower.service"
K8S = OPS / "k8s"

REQUIRED_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+):\?[^}]+\}")


# --- helpers -------------------------------------------------------------------------------


def command_words(command: str | list[str]) -> list[str]:
    """Return a compose/k8s command as a list of words, whichever form it was written in."""
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def option_value(words: list[str], short: str, long: str) -> str:
    """Return the value of `-n VALUE`, `--hostname=VALUE` style options in a word list."""
    for index, word in enumerate(words):
        if word in (short, long):
            return words[index + 1]
        if word.startswith(long + "="):
            return word.split("=", 1)[1]
    raise AssertionError(f"no {short}/{long} option in {words}")


def environment(service: dict[str, Any]) -> dict[str, str]:
    """Return a compose service's environment as a dict (it may be written as a list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def named_volume_mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Return {volume name: (container path, read_only)} for a service's named-volume mounts."""
    mounts = {}
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            if entry.get("type", "volume") == "volume":
                mounts[entry["source"]] = (entry["target"], bool(entry.get("read_only")))
            continue
        source, target, *mode = entry.split(":")
        if not source.startswith((".", "/", "~", "$")):  # a bind mount starts with a path
            mounts[source] = (target, "ro" in (mode[0].split(",") if mode else []))
    return mounts


def seconds(duration: str | int) -> float:
    """Return a compose or systemd duration ('10m', '1m30s', '600', '10min') in seconds."""
    text = str(duration).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"h": 3600, "min": 60, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(h|min|ms|us|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text.replace(" ", ""), text
    return sum(float(number) * units[unit] for number, unit in parts)


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs, with continuation lines joined and comments gone."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def unit_file(path: Path) -> dict[str, dict[str, list[str]]]:
    """Return a systemd unit as {section: {key: [values...]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} before any [Section]"
        assert "=" in line, f"{path.name}: not a Key=value line: {line!r}"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def env_file(path: Path) -> dict[str, str]:
    """Return the KEY=value assignments of an environment file."""
    assignments = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assignments[key] = value
    return assignments


def k8s_documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def one_of_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matching = [doc for doc in documents if doc["kind"] == kind]
    assert len(matching) == 1, f"expected one {kind}, found {len(matching)}"
    return matching[0]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


# --- docker-compose.yml --------------------------------------------------------------------


def test_compose_declares_the_services(services: dict[str, dict[str, Any]]) -> None:
    assert {"redis", "worker", "flower", "enqueue"} <= set(services)


def test_worker_command_is_the_celery_worker_with_unique_node_names(
    services: dict[str, dict[str, Any]],
) -> None:
    words = command_words(services["worker"]["command"])
    assert words[:4] == ["celery", "-A", "bqx_queue", "worker"]
    assert "--concurrency=${BQX_CONCURRENCY:-8}" in words
    node_name = option_value(words, "-n", "--hostname")
    # %h is the container hostname, unique per replica: two replicas never share a node name.
    assert "%h" in node_name and node_name.split("@")[0].startswith("worker")
    assert "--loglevel=INFO" in words


def test_worker_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker, "a fixed container name breaks --scale worker=N"
    assert "ports" not in worker, "a fixed host port breaks --scale worker=N"
    assert "hostname" not in worker, "a fixed hostname would give every replica one node name"


def test_worker_shuts_down_warm_and_is_bounded(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert seconds(worker["stop_grace_period"]) >= 300
    memory = worker.get("mem_limit") or worker["deploy"]["resources"]["limits"]["memory"]
    assert str(memory).strip()
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["restart"] == "unless-stopped"
    probe = " ".join(command_words(worker["healthcheck"]["test"]))
    assert "celery -A bqx_queue inspect ping" in probe
    assert "--timeout" in probe or " -t " in probe


def test_redis_keeps_its_data_and_is_not_published(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    words = command_words(redis["command"])
    assert words[0] == "redis-server"
    command = " ".join(words)
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    password = option_value(words, "--requirepass", "--requirepass")
    assert REQUIRED_VARIABLE.fullmatch(password), "the Redis password must be required (:?)"
    assert "ports" not in redis, "Redis must stay on the compose network"
    assert any(target == "/data" for target, _ in named_volume_mounts(redis).values())
    probe = " ".join(command_words(redis["healthcheck"]["test"]))
    assert "redis-cli" in probe
    # The healthcheck must authenticate: with -a, or through redis-cli's REDISCLI_AUTH variable.
    assert " -a " in probe or environment(redis).get("REDISCLI_AUTH") == password


def test_flower_requires_basic_auth(services: dict[str, dict[str, Any]]) -> None:
    flower = services["flower"]
    words = command_words(flower["command"])
    assert words[:4] == ["celery", "-A", "bqx_queue", "flower"]
    assert "--port=5555" in words
    credentials = option_value(words, "--basic-auth", "--basic-auth")
    # user:password, where either may be a ${VAR:?message} that itself contains a colon.
    split = re.fullmatch(r"(?P<user>\$\{[^}]+\}|[^:$]+):(?P<password>.+)", credentials)
    assert split, f"--basic-auth is not user:password: {credentials}"
    user, password = split["user"], split["password"]
    assert REQUIRED_VARIABLE.fullmatch(password), f"password must use ${{VAR:?msg}}: {password}"
    assert REQUIRED_VARIABLE.fullmatch(user) or user.isidentifier()
    env = environment(flower)
    assert "FLOWER_UNAUTHENTICATED_API" not in env
    # flowerconfig.py reads the same variables; they must be the required form there too.
    for name in ("FLOWER_USER", "FLOWER_PASSWORD"):
        if name in env:
            assert REQUIRED_VARIABLE.fullmatch(env[name]), name


def test_flower_publishes_5555_and_checks_its_health(services: dict[str, dict[str, Any]]) -> None:
    flower = services["flower"]
    assert any(str(port).endswith(":5555") or str(port) == "5555" for port in flower["ports"])
    probe = " ".join(command_words(flower["healthcheck"]["test"]))
    assert "/healthcheck" in probe and "5555" in probe


def test_every_service_gets_the_same_broker_and_backend(
    services: dict[str, dict[str, Any]],
) -> None:
    for setting in ("BQX_BROKER_URL", "BQX_RESULT_BACKEND"):
        values = {
            name: environment(service)[setting] for name, service in services.items() if setting in environment(service)
        }
        assert {"worker", "flower", "enqueue"} <= set(values), setting
        assert len(set(values.values())) == 1, f"{setting} differs between services: {values}"
        url = next(iter(values.values()))
        assert url.startswith("redis://") and "@redis:6379/" in url
        assert REQUIRED_VARIABLE.search(url), f"{setting} must require the Redis password"
    broker = environment(services["worker"])["BQX_BROKER_URL"]
    backend = environment(services["worker"])["BQX_RESULT_BACKEND"]
    assert broker != backend, "broker and results should use different Redis databases"


def test_volumes_are_declared_and_mounted_where_settings_point(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose.get("volumes") or {})
    assert {"warehouse", "redis-data"} <= declared
    assert "runs" not in declared, "run folders live in a bucket, not a volume"
    for name, service in services.items():
        mounts = named_volume_mounts(service)
        assert set(mounts) <= declared, f"{name} mounts undeclared volumes"
        env = environment(service)
        if "BQX_RUNS_DIR" in env:
            # a required bucket URL: compose refuses to start without one
            assert re.fullmatch(r"\$\{BQX_RUNS_DIR:\?[^}]*(gs|s3)://[^}]*\}", env["BQX_RUNS_DIR"]), name
            # bucket credentials pass through from the environment, never written here
            assert {"GOOGLE_APPLICATION_CREDENTIALS", "AWS_ACCESS_KEY_ID"} <= set(env), name
            assert env["GOOGLE_APPLICATION_CREDENTIALS"] in ("None", ""), name
        if "warehouse" in mounts:
            assert env["BQX_WAREHOUSE"].startswith(mounts["warehouse"][0]), name
    worker_mounts = named_volume_mounts(services["worker"])
    assert worker_mounts["warehouse"] == ("/data/warehouse", True), "workers read it read-only"


def test_enqueue_is_a_one_shot_in_a_profile(services: dict[str, dict[str, Any]]) -> None:
    enqueue = services["enqueue"]
    assert "enqueue" in enqueue["profiles"]
    words = command_words(enqueue["command"])
    assert words[0] == "bqx-enqueue"
    assert option_value(words, "--pairs", "--pairs") == "all"
    assert "--wait" in words
    assert enqueue.get("restart", "no") == "no"


def test_only_flower_and_monitoring_publish_ports(services: dict[str, dict[str, Any]]) -> None:
    published = {name for name, service in services.items() if service.get("ports")}
    assert published <= {"flower", "prometheus"}


def test_bqx_services_build_the_image_from_ops_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("worker", "flower", "enqueue"):
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


# --- Dockerfile and .dockerignore ----------------------------------------------------------


def test_dockerfile_runs_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions(DOCKERFILE)
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_installs_dependencies_before_copying_the_source() -> None:
    instructions = dockerfile_instructions(DOCKERFILE)

    def first(predicate: Any) -> int:
        return next(i for i, instruction in enumerate(instructions) if predicate(*instruction))

    copy_pyproject = first(lambda k, a: k == "COPY" and "pyproject.toml" in a.split())
    install_deps = first(lambda k, a: k == "RUN" and "pip install" in a and "--no-deps" not in a)
    copy_source = first(lambda k, a: k == "COPY" and "bqx_queue" in a)
    install_package = first(lambda k, a: k == "RUN" and "pip install --no-deps" in a)
    assert copy_pyproject < install_deps < copy_source < install_package
    # Nothing from the package may be copied before the dependency layer, or every code edit
    # would reinstall the dependencies.
    copied_before = [a for k, a in instructions[:install_deps] if k in ("COPY", "ADD")]
    assert all("bqx_queue" not in arguments for arguments in copied_before)


def test_dockerfile_copies_only_files_that_exist_and_are_not_ignored() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for required in (".venv", ".git", "runs", "__pycache__", "*.duckdb"):
        assert any(p == required or p.endswith("/" + required) for p in patterns), required

    def ignored(path: str) -> bool:
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        for pattern in patterns:
            variants = [pattern, pattern[3:]] if pattern.startswith("**/") else [pattern]
            if any(fnmatch(prefix, v) for prefix in prefixes for v in variants):
                return True
        return False

    sources = []
    for keyword, arguments in dockerfile_instructions(DOCKERFILE):
        if keyword == "COPY" and "--from" not in arguments:
            sources += [word for word in arguments.split()[:-1] if not word.startswith("--")]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"
        assert not ignored(source), f"COPY {source}: excluded by .dockerignore"


def test_flower_config_path_agrees_across_files(services: dict[str, dict[str, Any]]) -> None:
    installed = [
        arguments.split()[-1]
        for keyword, arguments in dockerfile_instructions(DOCKERFILE)
        if keyword == "COPY" and "flowerconfig.py" in arguments
    ]
    assert len(installed) == 1
    compose_conf = option_value(command_words(services["flower"]["command"]), "--conf", "--conf")
    unit_conf = option_value(shlex.split(unit_file(FLOWER_UNIT)["Service"]["ExecStart"][0]), "--conf", "--conf")
    assert compose_conf == unit_conf == installed[0]


# --- Flower config -------------------------------------------------------------------------


@pytest.fixture
def no_flower_credentials(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("FLOWER_BASIC_AUTH", "FLOWER_USER", "FLOWER_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_flowerconfig_refuses_to_load_without_credentials(
    no_flower_credentials: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SystemExit, match="FLOWER_PASSWORD"):
        runpy.run_path(str(FLOWER_CONFIG))
    no_flower_credentials.setenv("FLOWER_USER", "admin")  # a user without a password
    with pytest.raises(SystemExit):
        runpy.run_path(str(FLOWER_CONFIG))
    no_flower_credentials.setenv("FLOWER_BASIC_AUTH", "admin")  # an entry without a password
    with pytest.raises(SystemExit):
        runpy.run_path(str(FLOWER_CONFIG))


def test_flowerconfig_takes_credentials_from_the_environment(
    no_flower_credentials: pytest.MonkeyPatch,
) -> None:
    no_flower_credentials.setenv("FLOWER_USER", "admin")
    no_flower_credentials.setenv("FLOWER_PASSWORD", "s3cret")
    assert runpy.run_path(str(FLOWER_CONFIG))["basic_auth"] == ["admin:s3cret"]
    no_flower_credentials.setenv("FLOWER_BASIC_AUTH", "a:1, b:2")
    settings = runpy.run_path(str(FLOWER_CONFIG))
    assert settings["basic_auth"] == ["a:1", "b:2"]
    assert settings["persistent"] is True
    assert 0 < settings["max_tasks"] <= 100_000
    assert settings["purge_offline_workers"] > 0


def test_flower_accepts_every_setting_in_flowerconfig() -> None:
    """Load the file the way Flower does (Tornado), in a fresh process: names and types must fit.

    Tornado ignores unknown names in a config file, so a misspelt setting would do nothing.
    """
    script = f"""
import json, runpy
from flower.options import options
path = {str(FLOWER_CONFIG)!r}
public = [n for n, v in runpy.run_path(path).items()
          if not n.startswith("_") and not callable(v) and type(v).__name__ != "module"]
unknown = [n for n in public if n not in options]
options.parse_config_file(path, final=False)
print(json.dumps({{"unknown": unknown, "basic_auth": options.basic_auth,
                  "persistent": options.persistent, "max_tasks": options.max_tasks}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    env.update(FLOWER_USER="admin", FLOWER_PASSWORD="s3cret")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["unknown"] == [], f"not Flower options: {loaded['unknown']}"
    assert loaded["basic_auth"] == ["admin:s3cret"]
    assert loaded["persistent"] is True
    assert loaded["max_tasks"] > 0


# --- systemd -------------------------------------------------------------------------------


def test_worker_unit_stops_warm_and_restarts_on_failure() -> None:
    assert WORKER_UNIT.name.endswith("@.service"), "a template: bqx-worker@1, bqx-worker@2..."
    service = unit_file(WORKER_UNIT)["Service"]
    assert seconds(service["TimeoutStopSec"][-1]) >= 300
    assert service["KillSignal"][-1] == "SIGTERM"
    # SIGTERM to the main process only: the prefork children reset SIGTERM to "die now".
    assert service["KillMode"][-1] == "mixed"
    assert service["Restart"][-1] == "on-failure"
    assert service["MemoryMax"][-1]
    assert "/etc/bqx-queue/worker.env" in service["EnvironmentFile"]


def test_worker_unit_runs_the_celery_worker_from_the_venv() -> None:
    service = unit_file(WORKER_UNIT)["Service"]
    words = shlex.split(service["ExecStart"][-1])
    assert words[:4] == ["/opt/bqx-queue/.venv/bin/celery", "-A", "bqx_queue", "worker"]
    node_name = option_value(words, "-n", "--hostname")
    assert "%i" in node_name and node_name.endswith("@%H")
    # systemd has no ${VAR:-default}, and a host's worker.env may leave a variable out: every
    # variable on the command line needs a default in the unit (Environment=).
    defaults = dict(item.split("=", 1) for item in service.get("Environment", []))
    for name in re.findall(r"\$\{?([A-Z0-9_]+)", service["ExecStart"][-1]):
        assert defaults.get(name), f"${{{name}}} has no Environment= default in the unit"
    example = env_file(OPS / "systemd" / "worker.env.example")
    for setting in ("BQX_BROKER_URL", "BQX_RESULT_BACKEND", "BQX_RUNS_DIR", "BQX_WAREHOUSE"):
        assert setting in example, setting


def test_flower_unit_requires_its_credentials_file() -> None:
    service = unit_file(FLOWER_UNIT)["Service"]
    words = shlex.split(service["ExecStart"][-1])
    assert words[:4] == ["/opt/bqx-queue/.venv/bin/celery", "-A", "bqx_queue", "flower"]
    files = service["EnvironmentFile"]
    assert "/etc/bqx-queue/worker.env" in files
    # No leading "-": a missing credentials file stops the unit instead of being skipped.
    assert "/etc/bqx-queue/flower.env" in files
    example = env_file(OPS / "systemd" / "flower.env.example")
    assert {"FLOWER_USER", "FLOWER_PASSWORD"} <= set(example)


# --- Kubernetes ----------------------------------------------------------------------------


def test_k8s_manifests_parse_as_named_objects() -> None:
    names = sorted(path.name for path in K8S.glob("*.yaml"))
    assert {"worker-deployment.yaml", "keda-scaledobject.yaml", "secret.example.yaml"} <= set(names)
    for name in names:
        documents = k8s_documents(name)
        assert documents, name
        for doc in documents:
            assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], name


def test_worker_deployment_uses_the_secret_and_stops_warm() -> None:
    deployment = one_of_kind(k8s_documents("worker-deployment.yaml"), "Deployment")
    secret = one_of_kind(k8s_documents("secret.example.yaml"), "Secret")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 300
    assert pod["securityContext"]["runAsNonRoot"] is True
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["containers"]
    words = command_words(container.get("command", []) + container.get("args", []))
    assert words[:4] == ["celery", "-A", "bqx_queue", "worker"]
    assert "%h" in option_value(words, "-n", "--hostname")
    env = {item["name"]: item for item in container["env"]}
    for reference in re.findall(r"\$\(([A-Z0-9_]+)\)", " ".join(words)):
        assert reference in env, f"$({reference}) is not defined in the container env"
    for setting in ("BQX_BROKER_URL", "BQX_RESULT_BACKEND"):
        ref = env[setting]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] == "bqx-redis"
        assert ref["key"] in secret["stringData"], ref["key"]
    assert container["resources"]["limits"]["memory"]
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts["/data/warehouse"].get("readOnly") is True
    # run folders in a bucket, credentials from workload identity (no key, no runs volume)
    assert env["BQX_RUNS_DIR"]["value"].startswith(("gs://", "s3://"))
    assert not any(path.startswith(env["BQX_RUNS_DIR"]["value"]) for path in mounts)
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in env
    account = one_of_kind(k8s_documents("worker-deployment.yaml"), "ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert "iam.gke.io/gcp-service-account" in account["metadata"]["annotations"]


def test_keda_scales_the_worker_deployment_on_the_celery_list() -> None:
    deployment = one_of_kind(k8s_documents("worker-deployment.yaml"), "Deployment")
    secret = one_of_kind(k8s_documents("secret.example.yaml"), "Secret")
    documents = k8s_documents("keda-scaledobject.yaml")
    scaled = one_of_kind(documents, "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    assert target["name"] == deployment["metadata"]["name"]
    assert target.get("kind", "Deployment") == "Deployment"
    # KEDA cannot see running pairs; never scale to zero under a run.
    assert scaled["spec"]["minReplicaCount"] >= 1
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == "celery"
    assert int(trigger["metadata"]["listLength"]) >= 1
    authentication = one_of_kind(documents, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == authentication["metadata"]["name"]
    for ref in authentication["spec"]["secretTargetRef"]:
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"], ref["key"]


# --- Prometheus ----------------------------------------------------------------------------


def test_prometheus_scrapes_flower_metrics(services: dict[str, dict[str, Any]]) -> None:
    config = yaml.safe_load((OPS / "prometheus" / "prometheus.yml").read_text())
    targets = [
        (job.get("metrics_path", "/metrics"), target)
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert ("/metrics", "flower:5555") in targets
    assert "flower" in services
