"""Reading the deployment files: the compose files as `docker compose -f ... -f ...` merges them,
the Kubernetes manifests, the Dockerfile, and the code's own configuration (Settings,
config/agents.yaml, the secrets template, the README) they are checked against.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import AliasChoices

from reynolds.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
KUBERNETES_VERSION = "1.31.0"
BASE, OVERRIDE, PROD = (
    "docker-compose.yml",
    "docker-compose.override.yml",
    "docker-compose.prod.yml",
)
COMPOSE_SETUPS = ([BASE, OVERRIDE], [BASE, PROD])
K8S_FILES = sorted((ROOT / "k8s").glob("*.yaml"))
SEED_VARIABLES = {
    "AGENT_MEMORY_LIMIT_SOFT",
    "AGENT_MEMORY_LIMIT_HARD",
    "CPU_THRESHOLD_SCALE_UP",
    "MEMORY_THRESHOLD_SCALE_UP",
    "QUEUE_THRESHOLD_SCALE_UP",
}
# Variables for the Python runtime in the image, not for Reynolds.
RUNTIME_VARIABLES = {"PATH", "PYTHONPATH", "PYTHONDEVMODE", "PYTHONUNBUFFERED"}
RUNTIME_VARIABLES |= {
    "PYTHONDONTWRITEBYTECODE",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
}
SECRETS_DIR = "/run/secrets"
PASSWORD_IN_URL = re.compile(r"://[^/\s:@]+:[^@\s/]+@")
SERVE = ["reynolds", "serve"]
LOOPBACK_URL = re.compile(r"\bhttps?://(?:127\.0\.0\.1|localhost|\[::1\]):(\d+)(/[^'\"\s]*)?")
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


# ------------------------------------------------------------------------------------------
# Files


def text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def load(name: str) -> Any:
    return yaml.safe_load(text(name))


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    tool = BIN / name
    assert tool.exists(), f"{tool} is missing: install the dev extra (pip install -e '.[dev]')"
    return subprocess.run(
        [str(tool), *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


# ------------------------------------------------------------------------------------------
# Compose


def _merge(base: Any, over: Any, key: str = "") -> Any:
    """Compose's merge of an overlay: mappings merge, sequences append, `command` replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for k, v in over.items():
            merged[k] = _merge(base[k], v, k) if k in base else v
        return merged
    if isinstance(base, list) and isinstance(over, list) and key not in ("command", "entrypoint"):
        return base + over
    return over


def compose(*names: str) -> dict[str, Any]:
    """The services of the compose files as `docker compose -f ... -f ...` combines them."""
    project: dict[str, Any] = {}
    for name in names:
        project = _merge(project, load(name))
    services: dict[str, Any] = project["services"]
    return services


def reynolds_services(services: dict[str, Any]) -> dict[str, Any]:
    return {n: s for n, s in services.items() if s.get("image", "").startswith("reynolds:")}


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "write environment as a mapping"
    return {k: str(v) for k, v in env.items()}


def effective_compose_environment(service: dict[str, Any]) -> dict[str, str]:
    """What the container sees: the image's ENV, then the service's environment."""
    env = dockerfile_env() if service.get("image", "").startswith("reynolds:") else {}
    return env | compose_environment(service)


def command_of(service: dict[str, Any]) -> list[str]:
    """A Reynolds service's command (Compose `command`, Kubernetes `args`: each replaces the
    image's CMD and keeps its ENTRYPOINT), the image's CMD when it names none."""
    command: list[str] = (
        service.get("command")
        or service.get("args")
        or json.loads(dockerfile_instructions("CMD")[0])
    )
    return command


def published(port: str) -> tuple[str, range, int]:
    """'127.0.0.1:8081-8083:8080' → ('127.0.0.1', range(8081, 8084), 8080)."""
    *host, target = str(port).split(":")
    address = host[0] if len(host) == 2 else ""
    first, _, last = host[-1].partition("-")
    return address, range(int(first), int(last or first) + 1), int(target)


# ------------------------------------------------------------------------------------------
# Kubernetes


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


@cache
def _k8s_documents() -> tuple[dict[str, Any], ...]:
    return tuple(doc for path in K8S_FILES for doc in documents(path))


def k8s_objects(kind: str | None = None) -> list[dict[str, Any]]:
    return [doc for doc in _k8s_documents() if kind is None or doc["kind"] == kind]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in k8s_objects(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_specs() -> Iterator[dict[str, Any]]:
    for doc in k8s_objects():
        if doc["kind"] in ("Deployment", "StatefulSet"):
            yield doc["spec"]["template"]["spec"]


def k8s_environment(container: dict[str, Any]) -> dict[str, str]:
    """What a Reynolds container sees: the image's ENV, its ConfigMaps, then its own env."""
    env = dockerfile_env() if container["image"].startswith("reynolds:") else {}
    for source in container.get("envFrom", []):
        env |= k8s_object("ConfigMap", source["configMapRef"]["name"])["data"]
    for item in container.get("env", []):
        assert "value" in item, f"{container['name']}: {item['name']} is not a literal value"
        env[item["name"]] = str(item["value"])
    return env


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port, by number or by the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert len(numbers) == 1, f"{container['name']} has no port named {port}"
    return int(numbers[0])


def kubernetes_secret_mounts(spec: dict[str, Any]) -> set[str]:
    files: set[str] = set()
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            assert volume["secret"]["secretName"] == "reynolds-secrets"
            for item in volume["secret"]["items"]:
                assert item["path"] == item["key"]
                files.add(item["key"])
    return files


# ------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions(instruction: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text("Dockerfile"))
    prefix = f"{instruction} "
    return [line[len(prefix) :].strip() for line in joined.splitlines() if line.startswith(prefix)]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in dockerfile_instructions("ENV"):
        env.update(pair.split("=", 1) for pair in args.split())
    return env


# ------------------------------------------------------------------------------------------
# The code's configuration: Settings, agents.yaml, the secrets template, the README


def pools() -> dict[str, Any]:
    pools_: dict[str, Any] = load("config/agents.yaml")["pools"]
    return pools_


def agent_command(pool: str) -> list[str]:
    return ["reynolds", "agent", "--type", pool, "--concurrency", "1"]


def settings_default(field: str) -> Any:
    return Settings.model_fields[field].default


def settings_variables() -> set[str]:
    """Every environment name Settings reads, plus the seed's tuning variables."""
    return {name for names in names_by_field().values() for name in names} | SEED_VARIABLES


def names_by_field() -> dict[str, set[str]]:
    prefix = Settings.model_config.get("env_prefix", "")
    out: dict[str, set[str]] = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            out[field] = {c.upper() for c in alias.choices if isinstance(c, str)}
        elif isinstance(alias, str):
            out[field] = {alias.upper()}
        else:
            out[field] = {f"{prefix}{field}".upper()}
    return out


def template_entries() -> dict[str, str]:
    """`NAME=` lines of config/secrets.env.template: lower case secrets, upper case variables."""
    lines = text("config/secrets.env.template").splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Za-z_]+=", line))


def template_secrets() -> set[str]:
    return {name for name in template_entries() if name.islower()}


def readme_deployment_section() -> str:
    readme = text("README.md")
    start = readme.index("\n## Deployment\n")
    return readme[start : readme.index("\n## ", start + 1)]


# ------------------------------------------------------------------------------------------
# Monitoring


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load("config/alerts.yml")["groups"] for rule in group["rules"]]


DASHBOARDS_DIR = "config/grafana/dashboards"


def dashboards() -> dict[str, dict[str, Any]]:
    """File name → the dashboard JSON, for every dashboard Grafana provisions."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((ROOT / DASHBOARDS_DIR).glob("*.json"))
    }


def dashboard_targets() -> list[tuple[str, str]]:
    """(dashboard file: panel title, PromQL) for every query of every panel."""
    return [
        (f"{name}: {panel['title']}", target["expr"])
        for name, board in dashboards().items()
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def dashboard_variables() -> list[tuple[str, dict[str, Any]]]:
    """(dashboard file, template variable) for every variable of every dashboard."""
    return [
        (name, variable)
        for name, board in dashboards().items()
        for variable in board.get("templating", {}).get("list", [])
    ]


def dashboard_queries() -> list[str]:
    """Every query string of every dashboard: panel targets and template variables."""
    queries: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "query", "definition") and isinstance(value, str):
                    queries.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(list(dashboards().values()))
    return queries


# ------------------------------------------------------------------------------------------
# Workers: each pool's worker as compose or Kubernetes deploys it


def health_port_of(command: list[str], env: dict[str, str]) -> int:
    """A worker's health port: `--health-port`, else REYNOLDS_AGENT_HEALTH_PORT (0: none)."""
    if "--health-port" in command:
        return int(command[command.index("--health-port") + 1])
    return int(env.get("REYNOLDS_AGENT_HEALTH_PORT", "0"))


class Worker(NamedTuple):
    """One pool's worker as deployed, compose service or Kubernetes Deployment alike."""

    setup: str  # "docker-compose.yml+docker-compose.prod.yml", ... or "k8s"
    name: str
    command: list[str]
    env: dict[str, str]
    # Path in the container → where the file comes from (compose secret or Secret key).
    secret_files: dict[str, str]
    # (which check, port, path) of every HTTP health check on the container itself.
    health_checks: list[tuple[str, int, str]]

    @property
    def where(self) -> str:
        return f"{self.setup}: {self.name}"


def worker_services(services: dict[str, Any]) -> dict[str, Any]:
    return {n: s for n, s in services.items() if s.get("command", [])[:2] == ["reynolds", "agent"]}


def compose_orchestrator(services: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    found = [(n, s) for n, s in reynolds_services(services).items() if command_of(s) == SERVE]
    assert len(found) == 1, f"expected one service running {SERVE}, found {len(found)}"
    return found[0]


def compose_workers(services: dict[str, Any]) -> dict[str, Any]:
    """Every Reynolds service but the orchestrator: each must be a pool's worker."""
    return {n: s for n, s in reynolds_services(services).items() if command_of(s) != SERVE}


def compose_secret_files(service: dict[str, Any]) -> dict[str, str]:
    # A secret with a relative target is mounted at /run/secrets/<target>.
    return {f"{SECRETS_DIR}/{s['target']}": s["source"] for s in service.get("secrets", [])}


def compose_health_checks(service: dict[str, Any]) -> list[tuple[str, int, str]]:
    test = service.get("healthcheck", {}).get("test", [])
    line = " ".join(test) if isinstance(test, list) else str(test)
    return [("healthcheck", int(port), path) for port, path in LOOPBACK_URL.findall(line)]


def k8s_reynolds_deployments() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Deployment name → (its pod spec, its one Reynolds container)."""
    found: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for doc in k8s_objects("Deployment"):
        spec = doc["spec"]["template"]["spec"]
        ours = [c for c in spec["containers"] if c["image"].startswith("reynolds:")]
        if ours:
            (container,) = ours
            found[doc["metadata"]["name"]] = (spec, container)
    return found


def k8s_orchestrator() -> tuple[str, dict[str, Any]]:
    """(Deployment name, container) of the one Deployment running `reynolds serve`."""
    deployments = k8s_reynolds_deployments().items()
    found = [(name, c) for name, (_, c) in deployments if command_of(c) == SERVE]
    assert len(found) == 1, f"expected one Deployment running {SERVE}, found {len(found)}"
    return found[0]


def k8s_secret_files(spec: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    volumes = {v["name"]: v["secret"] for v in spec.get("volumes", []) if "secret" in v}
    files: dict[str, str] = {}
    for mount in container.get("volumeMounts", []):
        if mount["name"] in volumes:
            secret = volumes[mount["name"]]
            for item in secret["items"]:
                files[f"{mount['mountPath']}/{item['path']}"] = (
                    f"{secret['secretName']}/{item['key']}"
                )
    return files


def k8s_health_checks(container: dict[str, Any]) -> list[tuple[str, int, str]]:
    checks: list[tuple[str, int, str]] = []
    for kind in PROBES:
        if kind in container:
            get = container[kind].get("httpGet")
            assert get, f"{container['name']}: its {kind} is not an HTTP GET"
            checks.append((kind, container_port(container, get["port"]), get["path"]))
    return checks


def workers() -> Iterator[Worker]:
    for files in COMPOSE_SETUPS:
        for name, service in compose_workers(compose(*files)).items():
            yield Worker(
                "+".join(files),
                name,
                command_of(service),
                effective_compose_environment(service),
                compose_secret_files(service),
                compose_health_checks(service),
            )
    for name, (spec, container) in k8s_reynolds_deployments().items():
        if command_of(container) != SERVE:
            yield Worker(
                "k8s",
                name,
                command_of(container),
                k8s_environment(container),
                k8s_secret_files(spec, container),
                k8s_health_checks(container),
            )


SETUPS = [*("+".join(files) for files in COMPOSE_SETUPS), "k8s"]
