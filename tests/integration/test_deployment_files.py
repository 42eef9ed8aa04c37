"""The deployment files, checked without a container engine or a cluster.

Schemas: the compose files against the compose specification shipped in check-jsonschema, the
Kubernetes manifests against the schemas shipped in kubernetes-validate (both offline). Then
every service, port, secret, variable, metric and image they name is checked against the code's
own configuration: Settings, config/agents.yaml, the server's /metrics and the `reynolds` CLI.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import AliasChoices

from reynolds.core.pools import parse_bytes
from reynolds.entrypoints.http import create_app
from reynolds.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
KUBERNETES_VERSION = "1.31.0"
BASE, OVERRIDE, PROD = (
    "docker-compose.yml",
    "docker-compose.override.yml",
    "docker-compose.prod.yml",
)
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
METRIC = re.compile(r"\breynolds_[a-z0-9_]+")
AGENT_TYPE_SELECTOR = re.compile(r"agent_type\s*=~?\s*\"([^\"]*)\"")
SERVE = ["reynolds", "serve"]
LOOPBACK_URL = re.compile(r"\bhttps?://(?:127\.0\.0\.1|localhost|\[::1\]):(\d+)(/[^'\"\s]*)?")
NOT_AVAILABLE = re.compile(r"not\s+(?:yet\s+)?available|exits?\s+at\s+once", re.IGNORECASE)
ABOUT_WORKERS = re.compile(r"\bagents?\b|celery|worker", re.IGNORECASE)


# ------------------------------------------------------------------------------------------
# Reading the files


def text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def load(name: str) -> Any:
    return yaml.safe_load(text(name))


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


def pools() -> dict[str, Any]:
    pools_: dict[str, Any] = load("config/agents.yaml")["pools"]
    return pools_


def settings_default(field: str) -> Any:
    return Settings.model_fields[field].default


def settings_variables() -> set[str]:
    """Every environment name Settings reads, plus the seed's tuning variables."""
    return {name for names in _names_by_field().values() for name in names} | SEED_VARIABLES


def _names_by_field() -> dict[str, set[str]]:
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


def dockerfile_instructions(instruction: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text("Dockerfile"))
    prefix = f"{instruction} "
    return [line[len(prefix) :].strip() for line in joined.splitlines() if line.startswith(prefix)]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in dockerfile_instructions("ENV"):
        env.update(pair.split("=", 1) for pair in args.split())
    return env


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "write environment as a mapping"
    return {k: str(v) for k, v in env.items()}


def effective_compose_environment(service: dict[str, Any]) -> dict[str, str]:
    """What the container sees: the image's ENV, then the service's environment."""
    env = dockerfile_env() if service.get("image", "").startswith("reynolds:") else {}
    return env | compose_environment(service)


def command_of(service: dict[str, Any]) -> list[str]:
    """A Reynolds service's command, the image's CMD when it names none."""
    command: list[str] = service.get("command") or json.loads(dockerfile_instructions("CMD")[0])
    return command


def k8s_environment(container: dict[str, Any]) -> dict[str, str]:
    """What a Reynolds container sees: the image's ENV, its ConfigMaps, then its own env."""
    env = dockerfile_env() if container["image"].startswith("reynolds:") else {}
    for source in container.get("envFrom", []):
        env |= k8s_object("ConfigMap", source["configMapRef"]["name"])["data"]
    for item in container.get("env", []):
        assert "value" in item, f"{container['name']}: {item['name']} is not a literal value"
        env[item["name"]] = str(item["value"])
    return env


def health_port_of(command: list[str], env: dict[str, str]) -> int:
    """A worker's health port: `--health-port`, else REYNOLDS_AGENT_HEALTH_PORT (0: none)."""
    if "--health-port" in command:
        return int(command[command.index("--health-port") + 1])
    return int(env.get("REYNOLDS_AGENT_HEALTH_PORT", "0"))


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    tool = BIN / name
    assert tool.exists(), f"{tool} is missing: install the dev extra (pip install -e '.[dev]')"
    return subprocess.run(
        [str(tool), *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


@pytest.fixture(scope="module")
def exported_metrics(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every series name the server's GET /metrics can produce, from its TYPE lines."""
    home = tmp_path_factory.mktemp("metrics")
    settings = Settings(home=home / "home", secrets_dir=home / "secrets")
    with TestClient(create_app(settings)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    suffixes = {"counter": [""], "gauge": [""], "histogram": ["_bucket", "_count", "_sum"]}
    names: set[str] = set()
    for line in response.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name + suffix for suffix in suffixes.get(kind, [""])}
    return names


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load("config/alerts.yml")["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
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

    walk(json.loads(text("config/grafana/reynolds-dashboard.json")))
    return queries


# ------------------------------------------------------------------------------------------
# Schemas


@pytest.mark.parametrize("name", [BASE, OVERRIDE, PROD])
def test_each_compose_file_is_valid_against_the_compose_specification(name: str) -> None:
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_kubernetes_manifest_validates_strictly_against_a_shipped_schema() -> None:
    files = [str(path.relative_to(ROOT)) for path in K8S_FILES]
    result = run_tool("kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION, *files)
    out = result.stdout + result.stderr
    # An unknown kind is only a WARN with exit 0: it counts as a failure here.
    problems = [line for line in out.splitlines() if not line.startswith("INFO")]
    assert result.returncode == 0 and not problems, out
    for path in K8S_FILES:
        for doc in documents(path):
            resource = f"{doc['kind'].lower()}/{doc['metadata']['name']}"
            assert f"{path.relative_to(ROOT)} passed for resource {resource} " in out


def test_the_seed_readme_kubernetes_commands_name_existing_files() -> None:
    namespace = documents(ROOT / "k8s/reynolds-namespace.yaml")
    assert [doc["kind"] for doc in namespace] == ["Namespace"]
    kinds = {doc["kind"] for doc in documents(ROOT / "k8s/reynolds-deployment.yaml")}
    assert kinds == {"Deployment", "Service"}


def test_every_kubernetes_object_lives_in_the_reynolds_namespace() -> None:
    (namespace,) = k8s_objects("Namespace")
    for doc in k8s_objects():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace["metadata"]["name"], doc


def test_the_secrets_manifest_holds_no_object_so_applying_the_folder_keeps_real_values() -> None:
    assert documents(ROOT / "k8s/secrets.yaml") == []
    assert not k8s_objects("Secret")


# ------------------------------------------------------------------------------------------
# Variables


def test_every_reynolds_variable_a_deployment_file_names_is_a_setting() -> None:
    known = settings_variables()
    names = [BASE, OVERRIDE, PROD, "Dockerfile", "config/reynolds.env.example"]
    names += ["config/secrets.env.template", *(str(p.relative_to(ROOT)) for p in K8S_FILES)]
    for name in names:
        unknown = set(re.findall(r"\bREYNOLDS_[A-Z0-9_]+\b", text(name))) - known
        assert not unknown, f"{name} names variables Settings does not read: {sorted(unknown)}"


def test_every_variable_given_to_a_reynolds_container_is_a_setting_or_for_python() -> None:
    allowed = settings_variables() | RUNTIME_VARIABLES
    given = {"Dockerfile": set(dockerfile_env())}
    for files in ([BASE, OVERRIDE], [BASE, PROD]):
        for name, service in reynolds_services(compose(*files)).items():
            given[f"{'+'.join(files)}: {name}"] = set(compose_environment(service))
    given["k8s reynolds-config"] = set(k8s_object("ConfigMap", "reynolds-config")["data"])
    for where, names in given.items():
        assert names <= allowed, f"{where}: {sorted(names - allowed)}"


def test_the_secrets_template_names_every_setting_and_only_settings() -> None:
    entries = template_entries()
    variables = {name for name in entries if not name.islower()}
    for field, names in _names_by_field().items():
        assert names & variables, f"config/secrets.env.template lacks {field} ({names})"
    assert variables <= settings_variables()
    assert all(value == "" for value in entries.values()), "the template must hold no values"


def test_the_env_example_only_documents_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in settings_variables():
        monkeypatch.delenv(name, raising=False)
    example = ROOT / "config/reynolds.env.example"
    documented = Settings(_env_file=example)
    defaults = Settings(_env_file=None)
    assert documented.model_dump() == defaults.model_dump()
    contract = ["HOST", "PORT", "HOME", "DATABASE_URL", "REDIS_URL", "BACKEND", "API_TOKEN"]
    contract += ["ALLOWED_ORIGINS", "PERSONALITY"]
    content = example.read_text(encoding="utf-8")
    for name in [f"REYNOLDS_{n}" for n in contract] + sorted(SEED_VARIABLES):
        assert name in content, f"config/reynolds.env.example does not mention {name}"


# ------------------------------------------------------------------------------------------
# Pools


def agent_command(pool: str) -> list[str]:
    return ["reynolds", "agent", "--type", pool, "--concurrency", "1"]


def worker_services(services: dict[str, Any]) -> dict[str, Any]:
    return {n: s for n, s in services.items() if s.get("command", [])[:2] == ["reynolds", "agent"]}


def test_there_is_one_worker_service_per_pool_named_by_one_of_its_aliases() -> None:
    workers = worker_services(compose(BASE))
    assert set(workers) == {f"{pool}-agent" for pool in pools()}
    for pool, spec in pools().items():
        assert f"{pool}-agent" in spec["aliases"]


def test_each_worker_service_runs_its_pool_at_the_initial_replicas() -> None:
    services = compose(BASE)
    for pool, spec in pools().items():
        service = services[f"{pool}-agent"]
        assert service["command"] == agent_command(pool)
        assert service["deploy"]["replicas"] == spec["replicas"]["initial"], pool


def test_production_runs_each_pool_at_its_maximum_replicas() -> None:
    services = compose(BASE, PROD)
    for pool, spec in pools().items():
        assert services[f"{pool}-agent"]["deploy"]["replicas"] == spec["replicas"]["max"], pool


def test_each_pool_deploys_at_initial_replicas_and_autoscales_between_min_and_max() -> None:
    threshold = str(settings_default("queue_threshold_scale_up"))
    for pool, spec in pools().items():
        deployment = k8s_object("Deployment", f"{pool}-agent")
        assert deployment["spec"]["replicas"] == spec["replicas"]["initial"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == agent_command(pool)
        hpa = k8s_object("HorizontalPodAutoscaler", f"{pool}-agent")["spec"]
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": f"{pool}-agent",
        }
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (
            spec["replicas"]["min"],
            spec["replicas"]["max"],
        )
        queue = [
            m["external"]
            for m in hpa["metrics"]
            if m["type"] == "External" and m["external"]["metric"]["name"] == "reynolds_queue_depth"
        ]
        assert len(queue) == 1, f"{pool}: no autoscaling on reynolds_queue_depth"
        assert queue[0]["metric"]["selector"]["matchLabels"] == {"agent_type": pool}
        assert queue[0]["target"] == {"type": "AverageValue", "averageValue": threshold}


def published(port: str) -> tuple[str, range, int]:
    """'127.0.0.1:8081-8083:8080' → ('127.0.0.1', range(8081, 8084), 8080)."""
    *host, target = str(port).split(":")
    address = host[0] if len(host) == 2 else ""
    first, _, last = host[-1].partition("-")
    return address, range(int(first), int(last or first) + 1), int(target)


def test_development_publishes_a_host_port_per_worker_in_each_pools_own_range() -> None:
    services = compose(BASE, OVERRIDE)
    server_port = settings_default("port")
    taken: set[int] = {server_port}
    for pool, spec in pools().items():
        service = services[f"{pool}-agent"]
        (port,) = service["ports"]
        address, hosts, target = published(port)
        assert address == "127.0.0.1"
        health_port = health_port_of(service["command"], effective_compose_environment(service))
        assert target == health_port, f"{pool}: the health endpoint listens on {health_port}"
        assert len(hosts) >= spec["replicas"]["initial"], f"{pool}: fewer ports than replicas"
        assert not taken & set(hosts), f"{pool}: its ports overlap another service's"
        taken |= set(hosts)


# ------------------------------------------------------------------------------------------
# Workers: how each pool's worker reaches the broker and the orchestrator


COMPOSE_SETUPS = ([BASE, OVERRIDE], [BASE, PROD])
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


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


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port, by number or by the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert len(numbers) == 1, f"{container['name']} has no port named {port}"
    return int(numbers[0])


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


def test_every_worker_runs_reynolds_agent_for_a_pool_in_agents_yaml() -> None:
    found = list(workers())
    for worker in found:
        command = worker.command
        assert command[:3] == ["reynolds", "agent", "--type"], f"{worker.where}: {command}"
        assert command[3] in pools(), f"{worker.where}: {command[3]} is not a pool"
        assert worker.name == f"{command[3]}-agent", f"{worker.where} serves {command[3]}"
    for setup in SETUPS:
        names = sorted(w.name for w in found if w.setup == setup)
        assert names == sorted(f"{pool}-agent" for pool in pools()), setup


def test_every_worker_reports_to_the_orchestrators_service_and_port() -> None:
    for files in COMPOSE_SETUPS:
        services = compose(*files)
        name, server = compose_orchestrator(services)
        server_env = effective_compose_environment(server)
        assert server_env["REYNOLDS_HOST"] == "0.0.0.0", "the orchestrator must answer workers"
        for worker_name, service in compose_workers(services).items():
            url = urlsplit(effective_compose_environment(service)["REYNOLDS_ORCHESTRATOR_URL"])
            assert (url.scheme, url.path.strip("/")) == ("http", ""), worker_name
            assert url.hostname == name, f"{worker_name} reports to {url.hostname}, not {name}"
            assert url.port == int(server_env["REYNOLDS_PORT"]), worker_name
    deployment, server = k8s_orchestrator()
    server_env = k8s_environment(server)
    assert server_env["REYNOLDS_HOST"] == "0.0.0.0", "the orchestrator must answer workers"
    pod_labels = k8s_object("Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
    (namespace,) = k8s_objects("Namespace")
    for worker in workers():
        if worker.setup != "k8s":
            continue
        url = urlsplit(worker.env["REYNOLDS_ORCHESTRATOR_URL"])
        assert (url.scheme, url.path.strip("/")) == ("http", ""), worker.where
        assert url.hostname and url.port, f"{worker.where}: name the Service and its port"
        # `reynolds`, or `reynolds.<namespace>[.svc[.cluster.local]]`
        service_name, *domain = url.hostname.split(".")
        assert domain[:1] in ([], [namespace["metadata"]["name"]]), worker.where
        service = k8s_object("Service", service_name)["spec"]
        assert service["selector"].items() <= pod_labels.items(), (
            f"{worker.where}: the Service {service_name} does not select {deployment}"
        )
        targets = [p["targetPort"] for p in service["ports"] if p["port"] == url.port]
        assert len(targets) == 1, f"{worker.where}: {service_name} has no port {url.port}"
        port = container_port(server, targets[0])
        assert port == int(server_env["REYNOLDS_PORT"]), f"{worker.where}: port {port}"


def orchestrator_token_sources() -> dict[str, str]:
    """Setup → where the orchestrator's api_token.txt comes from."""
    sources: dict[str, str] = {}
    for files in COMPOSE_SETUPS:
        _, server = compose_orchestrator(compose(*files))
        path = f"{effective_compose_environment(server)['REYNOLDS_SECRETS_DIR']}/api_token.txt"
        sources["+".join(files)] = compose_secret_files(server)[path]
    name, server = k8s_orchestrator()
    spec, _ = k8s_reynolds_deployments()[name]
    path = f"{k8s_environment(server)['REYNOLDS_SECRETS_DIR']}/api_token.txt"
    sources["k8s"] = k8s_secret_files(spec, server)[path]
    return sources


def test_every_worker_has_the_api_token_the_orchestrator_checks_and_no_database_password() -> None:
    expected = orchestrator_token_sources()
    for worker in workers():
        path = f"{worker.env['REYNOLDS_SECRETS_DIR']}/api_token.txt"
        source = worker.secret_files.get(path)
        assert source == expected[worker.setup], f"{worker.where}: {path} comes from {source}"
        # A token in the environment would win over the file and show in `docker inspect`.
        assert "REYNOLDS_API_TOKEN" not in worker.env, worker.where
        assert not any(p.endswith("/db_password.txt") for p in worker.secret_files), worker.where


def test_every_worker_health_check_targets_the_port_it_serves_health_on() -> None:
    for worker in workers():
        port = health_port_of(worker.command, worker.env)
        assert port, f"{worker.where}: no health port"
        assert worker.env["REYNOLDS_AGENT_HEALTH_PORT"] == str(port), worker.where
        assert worker.env["REYNOLDS_HOST"] == "0.0.0.0", f"{worker.where}: health on loopback"
        kinds = {kind for kind, _, _ in worker.health_checks}
        wanted = {"readinessProbe", "livenessProbe"} if worker.setup == "k8s" else {"healthcheck"}
        assert wanted <= kinds, f"{worker.where}: no HTTP {sorted(wanted - kinds)}"
        for kind, checked, path in worker.health_checks:
            assert (checked, path) == (port, "/health"), f"{worker.where} {kind}: {checked}{path}"
    for name, (_, container) in k8s_reynolds_deployments().items():
        if command_of(container) == SERVE:
            continue
        port = health_port_of(command_of(container), k8s_environment(container))
        assert port in [p["containerPort"] for p in container["ports"]], name
        for service_port in k8s_object("Service", name)["spec"]["ports"]:
            assert container_port(container, service_port["targetPort"]) == port, name


def test_each_compose_healthcheck_of_a_worker_runs_a_program_the_image_has() -> None:
    # The image is python:*-slim: no curl or wget unless the Dockerfile installs them.
    dockerfile = text("Dockerfile")
    installed = {"python", "python3"}
    installed |= {t for t in ("curl", "wget") if re.search(rf"install\b.*\b{t}\b", dockerfile)}
    for files in COMPOSE_SETUPS:
        for name, service in compose_workers(compose(*files)).items():
            test = service["healthcheck"]["test"]
            assert isinstance(test, list) and test[0] == "CMD", f"{name}: write the test as CMD"
            assert test[1] in installed, f"{name}: {test[1]} is not in the image"


def has_healthcheck(service: dict[str, Any]) -> bool:
    """Its own healthcheck, or the Reynolds image's HEALTHCHECK when it sets none."""
    check = service.get("healthcheck")
    if check is None:
        image = service.get("image", "").startswith("reynolds:")
        return image and bool(dockerfile_instructions("HEALTHCHECK"))
    return bool(check.get("test")) and check["test"] != ["NONE"] and not check.get("disable")


def test_every_worker_waits_for_a_healthy_broker_and_orchestrator() -> None:
    for files in COMPOSE_SETUPS:
        services = compose(*files)
        orchestrator, _ = compose_orchestrator(services)
        for name, service in compose_workers(services).items():
            broker = urlsplit(effective_compose_environment(service)["REYNOLDS_REDIS_URL"])
            for needed in (broker.hostname, orchestrator):
                assert needed in services, f"{name} needs {needed}, which is not a service"
                assert has_healthcheck(services[needed]), f"{needed} has no healthcheck"
                condition = service["depends_on"].get(needed, {}).get("condition")
                assert condition == "service_healthy", f"{name} does not wait for {needed}"


def readme_deployment_section() -> str:
    readme = text("README.md")
    start = readme.index("\n## Deployment\n")
    return readme[start : readme.index("\n## ", start + 1)]


def test_no_deployment_file_says_the_workers_are_not_available() -> None:
    names = [
        BASE,
        OVERRIDE,
        PROD,
        "Dockerfile",
        "config/secrets.env.template",
        "config/reynolds.env.example",
    ]
    names += [str(p.relative_to(ROOT)) for p in K8S_FILES]
    sources = {name: text(name) for name in names}
    sources["README.md, ## Deployment"] = readme_deployment_section()
    for where, content in sources.items():
        for paragraph in re.split(r"\n\s*(?:#\s*)?\n", content):
            if NOT_AVAILABLE.search(paragraph):
                assert not ABOUT_WORKERS.search(paragraph), f"{where}: {paragraph.strip()}"


# ------------------------------------------------------------------------------------------
# Ports, commands, images


def test_the_orchestrator_listens_on_the_settings_default_port_everywhere() -> None:
    port = settings_default("port")
    assert dockerfile_instructions("EXPOSE") == [str(port)]
    assert dockerfile_env()["REYNOLDS_PORT"] == str(port)
    healthcheck = " ".join(dockerfile_instructions("HEALTHCHECK"))
    assert "/health" in healthcheck and f"'{port}'" in healthcheck
    server = compose(BASE)["reynolds"]
    assert compose_environment(server)["REYNOLDS_PORT"] == str(port)
    assert [published(p)[2] for p in server["ports"]] == [port]
    assert k8s_object("ConfigMap", "reynolds-config")["data"]["REYNOLDS_PORT"] == str(port)
    deployment = k8s_object("Deployment", "reynolds")["spec"]["template"]["spec"]
    (container,) = deployment["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    service = k8s_object("Service", "reynolds")["spec"]
    assert [p["port"] for p in service["ports"]] == [port]


def cli_commands() -> set[str]:
    result = run_tool("reynolds", "--help")
    assert result.returncode == 0, result.stderr
    # Rich draws the command table in a box: "│ serve   Run the server ..."
    return set(re.findall(r"^\W*\s([a-z][a-z-]*)\s{2,}\S", result.stdout, flags=re.MULTILINE))


def test_the_image_runs_reynolds_serve_and_every_command_is_a_real_subcommand() -> None:
    assert dockerfile_instructions("CMD") == ['["reynolds", "serve"]']
    commands = cli_commands()
    assert {"serve", "agent"} <= commands
    used = [s.get("command") for s in reynolds_services(compose(BASE, OVERRIDE)).values()]
    used += [s.get("command") for s in reynolds_services(compose(BASE, PROD)).values()]
    for spec in pod_specs():
        used += [c.get("command") for c in spec["containers"] if c["image"].startswith("reynolds:")]
    for command in used:
        assert command and command[0] == "reynolds" and command[1] in commands, command


def images() -> dict[str, str]:
    found = {f"Dockerfile FROM {i}": i.split()[0] for i in dockerfile_instructions("FROM")}
    for name in (BASE, OVERRIDE, PROD):
        for service, spec in load(name)["services"].items():
            if "image" in spec:
                found[f"{name}: {service}"] = spec["image"]
    for spec in pod_specs():
        for container in spec["containers"]:
            found[f"k8s: {container['name']}"] = container["image"]
    return found


def test_every_image_is_pinned_to_a_version() -> None:
    for where, image in images().items():
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{where}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{where}: {image} is not a version"


def test_the_reynolds_image_is_tagged_with_the_project_version() -> None:
    version = tomllib.loads(text("pyproject.toml"))["project"]["version"]
    ours = {image for image in images().values() if image.startswith("reynolds:")}
    assert ours == {f"reynolds:{version}"}


def test_the_orchestrator_runs_as_one_replica_replaced_rather_than_rolled() -> None:
    assert "replicas" not in compose(BASE, PROD)["reynolds"].get("deploy", {})
    spec = k8s_object("Deployment", "reynolds")["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}


def test_no_pod_gets_service_link_variables_that_would_shadow_reynolds_port() -> None:
    # A Service named `reynolds` would otherwise set REYNOLDS_PORT=tcp://... in every pod.
    for spec in pod_specs():
        assert spec.get("enableServiceLinks") is False, spec["containers"][0]["name"]


def test_production_publishes_no_database_port_and_restarts_every_service() -> None:
    services = compose(BASE, PROD)
    for name in ("postgres", "redis"):
        assert not services[name].get("ports"), f"{name} is published in production"
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        assert service["deploy"]["resources"]["limits"]["memory"], name


def memory_bytes(size: str) -> int:
    """Compose's '4608M' or Kubernetes' '4608Mi' → bytes (binary units in both)."""
    match = re.fullmatch(r"(\d+)([KMG]?)i?", size, flags=re.IGNORECASE)
    assert match, f"not a memory size: {size}"
    return int(match[1]) * 1024 ** " KMG".index(match[2].upper() or " ")


def agent_limits() -> Iterator[tuple[str, str, list[str], str]]:
    """(where, AGENT_MEMORY_LIMIT_HARD, command, memory limit) for every production worker."""
    services = compose(BASE, PROD)
    for name in worker_services(services):
        service = services[name]
        hard = compose_environment(service)["AGENT_MEMORY_LIMIT_HARD"]
        yield name, hard, service["command"], service["deploy"]["resources"]["limits"]["memory"]
    config = k8s_object("ConfigMap", "reynolds-config")["data"]
    for pool in pools():
        spec = k8s_object("Deployment", f"{pool}-agent")["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        limit = container["resources"]["limits"]["memory"]
        yield f"k8s {pool}-agent", config["AGENT_MEMORY_LIMIT_HARD"], container["command"], limit


def test_each_production_worker_has_room_for_its_actions_hard_memory_limit() -> None:
    worker_room = 256 * 2**20
    for where, hard, command, limit in agent_limits():
        concurrency = int(command[command.index("--concurrency") + 1])
        needed = parse_bytes(hard) * concurrency + worker_room
        assert memory_bytes(limit) >= needed, f"{where}: {limit} < {needed} bytes"


# ------------------------------------------------------------------------------------------
# Secrets


def test_every_compose_secret_comes_from_the_secrets_folder_and_is_in_the_template() -> None:
    defined = load(BASE)["secrets"]
    for name, spec in defined.items():
        assert spec == {"file": f"./secrets/{name}.txt"}
        assert name in template_secrets(), f"{name} is not in config/secrets.env.template"
    for files in ([BASE, OVERRIDE], [BASE, PROD]):
        for service, spec in compose(*files).items():
            for secret in spec.get("secrets", []):
                # Reynolds reads secrets as NAME.txt in REYNOLDS_SECRETS_DIR.
                assert secret == {"source": secret["source"], "target": f"{secret['source']}.txt"}
                assert secret["source"] in defined, service


def kubernetes_secret_mounts(spec: dict[str, Any]) -> set[str]:
    files: set[str] = set()
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            assert volume["secret"]["secretName"] == "reynolds-secrets"
            for item in volume["secret"]["items"]:
                assert item["path"] == item["key"]
                files.add(item["key"])
    return files


def test_every_kubernetes_secret_key_is_in_the_template_and_the_create_command() -> None:
    command = text("k8s/secrets.yaml")
    for spec in pod_specs():
        for key in kubernetes_secret_mounts(spec):
            assert key.removesuffix(".txt") in template_secrets(), key
            assert f"--from-file={key}=secrets/{key}" in command, key


def secret_file_references(values: list[str]) -> set[str]:
    return {v.removeprefix(f"{SECRETS_DIR}/") for v in values if v.startswith(f"{SECRETS_DIR}/")}


def test_services_read_secret_files_only_where_they_are_mounted() -> None:
    scrapes = load("config/prometheus.yml")["scrape_configs"]
    scrape_files = [s["authorization"]["credentials_file"] for s in scrapes if "authorization" in s]
    scrape_secret = secret_file_references(scrape_files)
    for name, service in compose(BASE).items():
        mounted = {s["target"] for s in service.get("secrets", [])}
        env = compose_environment(service)
        wanted = secret_file_references(list(env.values()))
        if name == "prometheus":
            wanted |= scrape_secret
        if env.get("REYNOLDS_SECRETS_DIR") == SECRETS_DIR:
            wanted |= reynolds_secret_files(command_of(service), env)
        assert wanted <= mounted, f"{name} reads {sorted(wanted - mounted)} without mounting it"
    for spec in pod_specs():
        values = [e.get("value", "") for c in spec["containers"] for e in c.get("env", [])]
        wanted = secret_file_references(values)
        for container in spec["containers"]:
            if container["image"].startswith("reynolds:"):
                wanted |= reynolds_secret_files(container["command"], k8s_environment(container))
        if any(c["image"].startswith("prom/prometheus:") for c in spec["containers"]):
            wanted |= scrape_secret
        assert wanted <= kubernetes_secret_mounts(spec), spec["containers"][0]["name"]


def reynolds_secret_files(command: list[str], env: dict[str, str]) -> set[str]:
    """The secret files a Reynolds container needs: a worker the API token it claims and
    reports with, the server the database password its PostgreSQL URL leaves out."""
    if command[:2] == ["reynolds", "agent"]:
        return {"api_token.txt"}
    url = env.get("REYNOLDS_DATABASE_URL", "")
    if url.startswith("postgresql") and not PASSWORD_IN_URL.search(url):
        return {"db_password.txt"}
    return set()


def test_no_deployment_file_writes_a_password_into_a_url() -> None:
    names = [BASE, OVERRIDE, PROD, "Dockerfile", *(str(p.relative_to(ROOT)) for p in K8S_FILES)]
    # config/reynolds.env is a local, uncommitted file: only the shipped ones are checked.
    shipped = [p for p in (ROOT / "config").rglob("*") if p.is_file() and p.name != "reynolds.env"]
    names += [str(p.relative_to(ROOT)) for p in shipped]
    for name in names:
        assert not PASSWORD_IN_URL.search(text(name)), name


def test_the_database_and_redis_urls_point_at_the_services_that_provide_them() -> None:
    services = compose(BASE)
    postgres = compose_environment(services["postgres"])
    expected_db = (
        f"postgresql+psycopg://{postgres['POSTGRES_USER']}@postgres:5432/{postgres['POSTGRES_DB']}"
    )
    assert compose_environment(services["reynolds"])["REYNOLDS_DATABASE_URL"] == expected_db
    for name, service in reynolds_services(services).items():
        env = compose_environment(service)
        assert env["REYNOLDS_REDIS_URL"] == "redis://redis:6379/0", name
        assert env["REYNOLDS_BACKEND"] == "celery", name
    data = k8s_object("ConfigMap", "reynolds-config")["data"]
    assert data["REYNOLDS_DATABASE_URL"] == expected_db
    assert data["REYNOLDS_REDIS_URL"] == "redis://redis:6379/0"
    assert k8s_object("Service", "postgres") and k8s_object("Service", "redis")


# ------------------------------------------------------------------------------------------
# Metrics, alerts, dashboards


def test_every_metric_the_alerts_query_is_one_the_server_exports(
    exported_metrics: set[str],
) -> None:
    for rule in alert_rules():
        unknown = set(METRIC.findall(rule["expr"])) - exported_metrics
        assert not unknown, f"{rule['alert']}: {sorted(unknown)}"


def test_every_metric_the_dashboard_queries_is_one_the_server_exports(
    exported_metrics: set[str],
) -> None:
    queries = dashboard_queries()
    assert queries
    for query in queries:
        unknown = set(METRIC.findall(query)) - exported_metrics
        assert not unknown, f"{query}: {sorted(unknown)}"


def test_the_autoscalers_scale_on_metrics_the_server_exports(exported_metrics: set[str]) -> None:
    for hpa in k8s_objects("HorizontalPodAutoscaler"):
        for metric in hpa["spec"]["metrics"]:
            assert metric["external"]["metric"]["name"] in exported_metrics


def test_queries_select_only_agent_types_that_are_pools() -> None:
    queries = [rule["expr"] for rule in alert_rules()] + dashboard_queries()
    selected = {v for q in queries for v in AGENT_TYPE_SELECTOR.findall(q)}
    assert selected <= set(pools()) | {"$agent_type"}


def test_the_alert_rules_cover_the_seeds_targets_with_the_contract_metrics() -> None:
    required = {
        "ReynoldsServerDown": ("up", "== 0"),
        "ReynoldsTaskSuccessRateLow": ("reynolds_tasks_total", "< 0.9"),
        "ReynoldsOrchestrationOverheadHigh": ("reynolds_orchestration_overhead_ratio", "> 0.15"),
        "ReynoldsParallelExecutionRatioLow": ("reynolds_parallel_execution_ratio", "< 0.8"),
        "ReynoldsQueueDepthHigh": (
            "reynolds_queue_depth",
            f"> {settings_default('queue_threshold_scale_up')}",
        ),
        "ReynoldsCircuitBreakerOpen": ("reynolds_loop_prevention_circuit_breaker_open", "== 1"),
    }
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for name, (metric, comparison) in required.items():
        expr = rules[name]["expr"]
        assert re.search(rf"\b{metric}\b", expr) and comparison in expr, name
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_prometheus_scrapes_the_orchestrator_and_loads_the_mounted_rules() -> None:
    config = load("config/prometheus.yml")
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "reynolds"]
    assert job["static_configs"] == [{"targets": [f"reynolds:{settings_default('port')}"]}]
    assert job["metrics_path"] == "/metrics"
    prometheus = compose(BASE)["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    for rule_file in config["rule_files"]:
        assert mounts[rule_file] == "./config/alerts.yml"


def test_grafana_provisions_the_datasource_the_dashboard_uses_where_it_is_mounted() -> None:
    (datasource,) = load("config/grafana/datasources.yml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    dashboard = json.loads(text("config/grafana/reynolds-dashboard.json"))
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    assert uids == {datasource["uid"]}
    (provider,) = load("config/grafana/dashboards.yml")["providers"]
    grafana = compose(BASE)["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    target = mounts["./config/grafana/reynolds-dashboard.json"]
    assert str(Path(target).parent) == provider["options"]["path"]


# ------------------------------------------------------------------------------------------
# Files


def test_every_repository_file_compose_mounts_exists() -> None:
    for name in (BASE, OVERRIDE, PROD):
        for service, spec in load(name)["services"].items():
            for volume in spec.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("./"):
                    assert (ROOT / source).exists(), f"{name}: {service} mounts {source}"


@pytest.mark.parametrize(
    ("config_map", "key", "source"),
    [
        ("reynolds-agents", "agents.yaml", "config/agents.yaml"),
        ("postgres-config", "postgresql.conf", "config/postgresql.conf"),
        ("redis-config", "redis.conf", "config/redis.conf"),
        ("prometheus-config", "prometheus.yml", "config/prometheus.yml"),
        ("prometheus-config", "alerts.yml", "config/alerts.yml"),
        ("grafana-provisioning", "datasources.yml", "config/grafana/datasources.yml"),
        ("grafana-provisioning", "dashboards.yml", "config/grafana/dashboards.yml"),
    ],
)
def test_kubernetes_config_maps_hold_the_config_files_verbatim(
    config_map: str, key: str, source: str
) -> None:
    assert k8s_object("ConfigMap", config_map)["data"][key] == text(source)
