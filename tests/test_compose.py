"""The deployment files (docker-compose.yml, ops/) checked for what they do, not what they say.

No Docker engine, compose or cluster runs here, so a test that only restated a file's values
(a port, a grace period) could not fail for any reason but an edit. What remains can: the
BQX_* variables the files hand to bqx are settings it reads and accepts, the Flower config is
loaded by Python and by Flower itself, COPY sources exist and are not ignored, and names that
one file gives and another refers to (secrets, volumes, config paths, variables) agree.
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


@pytest.mark.unit
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
        assert "@redis:6379/" in url and "redis" in services  # the host is the compose service
    broker = environment(services["worker"])["BQX_BROKER_URL"]
    backend = environment(services["worker"])["BQX_RESULT_BACKEND"]
    assert broker != backend, "broker and results should use different Redis databases"


@pytest.mark.unit
def test_volumes_are_declared_and_mounted_where_settings_point(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        mounts = named_volume_mounts(service)
        assert set(mounts) <= declared, f"{name} mounts undeclared volumes"
        if "warehouse" in mounts:
            assert environment(service)["BQX_WAREHOUSE"].startswith(mounts["warehouse"][0]), name


@pytest.mark.unit
def test_bqx_services_build_the_image_from_ops_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("worker", "flower", "enqueue"):
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


# --- Dockerfile and .dockerignore ----------------------------------------------------------


@pytest.mark.unit
def test_dockerfile_copies_only_files_that_exist_and_are_not_ignored() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

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


@pytest.mark.unit
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


@pytest.mark.unit
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


@pytest.mark.unit
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


@pytest.mark.integration
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


@pytest.mark.unit
def test_every_variable_on_the_worker_unit_command_line_has_a_default() -> None:
    service = unit_file(WORKER_UNIT)["Service"]
    # systemd has no ${VAR:-default}, and a host's worker.env may leave a variable out: every
    # variable on the command line needs a default in the unit (Environment=).
    defaults = dict(item.split("=", 1) for item in service.get("Environment", []))
    for name in re.findall(r"\$\{?([A-Z0-9_]+)", service["ExecStart"][-1]):
        assert defaults.get(name), f"${{{name}}} has no Environment= default in the unit"


# --- Kubernetes ----------------------------------------------------------------------------


@pytest.mark.unit
def test_worker_deployment_references_resolve() -> None:
    deployment = one_of_kind(k8s_documents("worker-deployment.yaml"), "Deployment")
    secret = one_of_kind(k8s_documents("secret.example.yaml"), "Secret")
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["containers"]
    words = command_words(container.get("command", []) + container.get("args", []))
    env = {item["name"]: item for item in container["env"]}
    for reference in re.findall(r"\$\(([A-Z0-9_]+)\)", " ".join(words)):
        assert reference in env, f"$({reference}) is not defined in the container env"
    for setting in ("BQX_BROKER_URL", "BQX_RESULT_BACKEND"):
        ref = env[setting]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"], ref["key"]
    volumes = {volume["name"] for volume in pod.get("volumes", [])}
    assert {mount["name"] for mount in container.get("volumeMounts", [])} <= volumes
    # the warehouse is BigQuery, read with the pod's identity: nothing is mounted or shared
    assert env["BQX_SOURCE"]["value"] == "bigquery" and env["BQX_BIGQUERY_PROJECT"]["value"]
    account = one_of_kind(k8s_documents("worker-deployment.yaml"), "ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]


@pytest.mark.unit
def test_keda_scales_the_worker_deployment_with_the_secret() -> None:
    deployment = one_of_kind(k8s_documents("worker-deployment.yaml"), "Deployment")
    secret = one_of_kind(k8s_documents("secret.example.yaml"), "Secret")
    documents = k8s_documents("keda-scaledobject.yaml")
    scaled = one_of_kind(documents, "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    assert target["name"] == deployment["metadata"]["name"]
    assert target.get("kind", "Deployment") == "Deployment"
    (trigger,) = scaled["spec"]["triggers"]
    authentication = one_of_kind(documents, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == authentication["metadata"]["name"]
    for ref in authentication["spec"]["secretTargetRef"]:
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"], ref["key"]


# --- bqx settings --------------------------------------------------------------------------


def deployment_settings() -> dict[str, dict[str, str]]:
    """Return the BQX_* variables each deployment file hands to bqx, by file (values as written)."""
    found: dict[str, dict[str, str]] = {}
    for name, service in yaml.safe_load(COMPOSE_FILE.read_text())["services"].items():
        found[f"compose {name}"] = {k: v for k, v in environment(service).items() if k.startswith("BQX_")}
    for document in k8s_documents("worker-deployment.yaml"):
        for container in document.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            found["k8s worker"] = {
                e["name"]: e.get("value", "") for e in container["env"] if e["name"].startswith("BQX_")
            }
    for example in sorted((OPS / "systemd").glob("*.env.example")):
        found[example.name] = {k: v for k, v in env_file(example).items() if k.startswith("BQX_")}
    return found


@pytest.mark.unit
def test_every_bqx_variable_in_the_deployment_files_is_a_setting_bqx_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # pydantic-settings ignores an unknown BQX_* variable: a misspelt one would silently do nothing
    from bqx_queue.config import Settings, load_settings

    found = deployment_settings()
    assert sum(len(variables) for variables in found.values()) > 5
    for where, variables in found.items():
        unknown = [name for name in variables if name.removeprefix("BQX_").lower() not in Settings.model_fields]
        assert not unknown, f"{where}: not bqx settings: {unknown}"
    # and the systemd example's values, as written, are accepted by bqx
    example = found["worker.env.example"]
    for name in [key for key in os.environ if key.startswith("BQX_")]:
        monkeypatch.delenv(name)
    for name, value in example.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    for name, value in example.items():
        assert str(getattr(settings, name.removeprefix("BQX_").lower())) == value, name
