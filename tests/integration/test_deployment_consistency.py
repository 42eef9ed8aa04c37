"""The deployment files against each other and against the code, without a container engine
or a cluster.

Every service, port, secret, variable, metric and image that the compose files and the
Kubernetes manifests name is checked against the code's own configuration: Settings,
config/agents.yaml, the server's /metrics and the `reynolds` CLI; and the two setups are checked
to deploy the orchestrator and its workers alike.
"""

from __future__ import annotations

import math
import re
import socket
import tomllib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers.deployment import (
    BASE,
    COMPOSE_SETUPS,
    K8S_FILES,
    OVERRIDE,
    PASSWORD_IN_URL,
    PROD,
    ROOT,
    RUNTIME_VARIABLES,
    SECRETS_DIR,
    SEED_VARIABLES,
    SERVE,
    SETUPS,
    alert_rules,
    command_of,
    compose,
    compose_environment,
    compose_orchestrator,
    compose_secret_files,
    compose_workers,
    container_port,
    dashboard_queries,
    dashboard_targets,
    dashboard_variables,
    dockerfile_env,
    dockerfile_instructions,
    effective_compose_environment,
    health_port_of,
    k8s_environment,
    k8s_object,
    k8s_objects,
    k8s_orchestrator,
    k8s_reynolds_deployments,
    k8s_secret_files,
    kubernetes_secret_mounts,
    load,
    names_by_field,
    pod_specs,
    pools,
    published,
    readme_deployment_section,
    reynolds_services,
    run_tool,
    settings_default,
    settings_variables,
    template_entries,
    text,
    worker_services,
    workers,
)
from tests.helpers.metrics_workload import SETTINGS as WORKLOAD_SETTINGS
from tests.helpers.metrics_workload import run_workload, series_with_values, write_config
from tests.helpers.promql import PROMETHEUS_OWN, metric_names

from reynolds.core.pools import PoolSet, parse_bytes
from reynolds.entrypoints.http import create_app
from reynolds.entrypoints.http.cross_site import SiteRules
from reynolds.settings import Settings

LABEL_VALUES = re.compile(r"label_values\((?P<metric>[a-z_:][a-z0-9_:]*),\s*(?P<label>[a-z_]+)\)")
AGENT_TYPE_SELECTOR = re.compile(r"agent_type\s*=~?\s*\"([^\"]*)\"")
NOT_AVAILABLE = re.compile(r"not\s+(?:yet\s+)?available|exits?\s+at\s+once", re.IGNORECASE)
ABOUT_WORKERS = re.compile(r"\bagents?\b|celery|worker", re.IGNORECASE)


@pytest.fixture(scope="module")
def metrics_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    """GET /metrics of a server after real work (tests/helpers/metrics_workload.py)."""
    root = tmp_path_factory.mktemp("metrics")
    settings = Settings(
        home=root / "home",
        secrets_dir=root / "secrets",
        config_dir=write_config(root / "config"),
        **WORKLOAD_SETTINGS,
    )
    with TestClient(create_app(settings), base_url=settings.base_url) as client:
        run_workload(client)
        response = client.get("/metrics")
    assert response.status_code == 200
    return response.text


@pytest.fixture(scope="module")
def exported_metrics(metrics_text: str) -> set[str]:
    """The series names (`_total`, `_bucket` … included) that have a value, NaN aside, in
    /metrics after real work."""
    return {
        name
        for name, values in series_with_values(metrics_text).items()
        if any(not math.isnan(value) for value in values)
    }


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
    for field, names in names_by_field().items():
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
    contract += ["ALLOWED_ORIGINS", "ALLOWED_HOSTS", "PERSONALITY"]
    content = example.read_text(encoding="utf-8")
    for name in [f"REYNOLDS_{n}" for n in contract] + sorted(SEED_VARIABLES):
        assert name in content, f"config/reynolds.env.example does not mention {name}"


# ------------------------------------------------------------------------------------------
# Workers: how each pool's worker reaches the broker and the orchestrator


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


def deployment_file_names() -> list[str]:
    """Every shipped file that deploys Reynolds or documents how."""
    names = [BASE, OVERRIDE, PROD, "Dockerfile", "config/reynolds.env.example"]
    names += ["config/secrets.env.template", "config/prometheus.yml"]
    return names + [str(p.relative_to(ROOT)) for p in K8S_FILES]


def test_every_worker_reaches_the_orchestrator_only_through_the_shared_redis() -> None:
    # Workers claim, heartbeat and report through the dispatching server's inbox on the
    # broker's Redis: no orchestrator URL anywhere, and every worker names the same Redis as
    # the orchestrator, with the Celery backend.
    for name in deployment_file_names():
        assert "REYNOLDS_ORCHESTRATOR_URL" not in text(name), name
    servers = {
        "+".join(files): compose_orchestrator(compose(*files))[1] for files in COMPOSE_SETUPS
    }
    server_env = {setup: effective_compose_environment(s) for setup, s in servers.items()}
    deployment, server = k8s_orchestrator()
    server_env["k8s"] = k8s_environment(server)
    for setup, env in server_env.items():
        assert env["REYNOLDS_BACKEND"] == "celery", setup
        assert urlsplit(env["REYNOLDS_REDIS_URL"]).scheme in ("redis", "rediss"), setup
    found = list(workers())
    assert {w.setup for w in found} == set(SETUPS)
    for worker in found:
        assert "REYNOLDS_ORCHESTRATOR_URL" not in worker.env, worker.where
        expected = server_env[worker.setup]
        assert worker.env["REYNOLDS_REDIS_URL"] == expected["REYNOLDS_REDIS_URL"], worker.where
        assert worker.env["REYNOLDS_BACKEND"] == "celery", worker.where
    # Kubernetes: the Redis URL comes from the ConfigMap the orchestrator reads, unchanged.
    server_maps = [m["configMapRef"]["name"] for m in server["envFrom"]]
    for name, (_, container) in k8s_reynolds_deployments().items():
        if name == deployment:
            continue
        own = {item["name"] for item in container.get("env", [])}
        assert not own & {"REYNOLDS_REDIS_URL", "REYNOLDS_BACKEND"}, name
        maps = [m["configMapRef"]["name"] for m in container["envFrom"]]
        assert maps == server_maps, f"{name} reads {maps}, the orchestrator {server_maps}"


def pool_secret_files() -> dict[str, set[str]]:
    """Pool → the secret files its actions read: its `secrets` and its MCP servers' tokens."""
    pool_set = PoolSet.from_mapping(load("config/agents.yaml"), source="config/agents.yaml")
    return {
        name: set(pool.secrets.values())
        | {t for s in pool.mcp_servers.values() if (t := getattr(s, "token_file", None))}
        for name, pool in pool_set.pools.items()
    }


def test_no_worker_mounts_the_api_token_or_the_database_password() -> None:
    # A worker never calls the orchestrator's API nor opens the database: it gets only the
    # secret files its pool's actions read (none in the shipped config/agents.yaml).
    needed = pool_secret_files()
    for worker in workers():
        pool = worker.command[3]
        names = {path.rpartition("/")[2] for path in worker.secret_files}
        assert names <= needed[pool], f"{worker.where} mounts {sorted(names - needed[pool])}"
        assert "api_token.txt" not in names and "db_password.txt" not in names, worker.where
        # A token in the environment would also show in `docker inspect`.
        assert "REYNOLDS_API_TOKEN" not in worker.env, worker.where
    for files in COMPOSE_SETUPS:
        for name, service in compose_workers(compose(*files)).items():
            assert not service.get("secrets"), f"{'+'.join(files)}: {name} mounts secrets"
    for name, (spec, _) in k8s_reynolds_deployments().items():
        if name != k8s_orchestrator()[0]:
            assert kubernetes_secret_mounts(spec) <= needed[name.removesuffix("-agent")], name


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


def test_prometheus_scrapes_with_the_api_token_the_orchestrator_checks() -> None:
    expected = orchestrator_token_sources()
    configs = prometheus_configs()
    for files in COMPOSE_SETUPS:
        setup = "+".join(files)
        token = reynolds_scrape_job(configs[setup])["authorization"]
        assert token["type"] == "Bearer", setup
        prometheus = compose(*files)["prometheus"]
        source = compose_secret_files(prometheus).get(token["credentials_file"])
        assert source == expected[setup], f"{setup}: Prometheus' token comes from {source}"
    token = reynolds_scrape_job(configs["k8s"])["authorization"]
    assert token["type"] == "Bearer"
    (spec,) = [s for s in pod_specs() if s["containers"][0]["image"].startswith("prom/")]
    mounted = k8s_secret_files(spec, spec["containers"][0])
    assert mounted.get(token["credentials_file"]) == expected["k8s"], mounted


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
        used += [command_of(c) for c in spec["containers"] if c["image"].startswith("reynolds:")]
    for command in used:
        assert command and command[0] == "reynolds" and command[1] in commands, command


def test_every_reynolds_container_runs_under_the_images_init() -> None:
    # PID 1 must reap: the server kills processes its actions left, and orphans go to PID 1.
    assert dockerfile_instructions("ENTRYPOINT") == ['["/usr/bin/tini", "--"]']
    for spec in pod_specs():
        for container in spec["containers"]:
            if container["image"].startswith("reynolds:"):
                # Kubernetes' `command` replaces the ENTRYPOINT; `args` replaces only CMD.
                assert "command" not in container, container["name"]
    for files in COMPOSE_SETUPS:
        for name, service in reynolds_services(compose(*files)).items():
            assert "entrypoint" not in service, name


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


ORCHESTRATOR_REPLICAS = 2


def test_the_orchestrator_runs_two_replicas_on_one_postgresql_store() -> None:
    # Replicas share the store (heartbeats, takeover fenced by an ownership epoch) and hand
    # work to the workers through Redis, so both need PostgreSQL and the Celery backend.
    for files in COMPOSE_SETUPS:
        setup = "+".join(files)
        _, server = compose_orchestrator(compose(*files))
        assert server.get("deploy", {}).get("replicas") == ORCHESTRATOR_REPLICAS, setup
        # Compose cannot scale a service with a fixed container name.
        assert "container_name" not in server, setup
        env = effective_compose_environment(server)
        assert env["REYNOLDS_DATABASE_URL"].startswith("postgresql"), setup
        assert env["REYNOLDS_BACKEND"] == "celery", setup
        # Each replica needs a host port of its own.
        ports = [published(p) for p in server.get("ports", [])]
        host_ports = [
            port for _, r, target in ports if target == int(env["REYNOLDS_PORT"]) for port in r
        ]
        assert len(host_ports) >= ORCHESTRATOR_REPLICAS, f"{setup}: publishes {host_ports}"
    name, server = k8s_orchestrator()
    spec = k8s_object("Deployment", name)["spec"]
    assert spec["replicas"] == ORCHESTRATOR_REPLICAS
    assert spec["strategy"]["type"] == "RollingUpdate"
    env = k8s_environment(server)
    assert env["REYNOLDS_DATABASE_URL"].startswith("postgresql")
    assert env["REYNOLDS_BACKEND"] == "celery"


def compose_volume(volume: str | dict[str, Any]) -> tuple[str | None, str]:
    """A compose volume → (its source, None for an anonymous volume or a tmpfs; its target)."""
    if isinstance(volume, dict):
        anonymous = volume.get("type", "volume") == "tmpfs" or not volume.get("source")
        return None if anonymous else str(volume["source"]), str(volume["target"])
    parts = volume.split(":")
    return (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def covers(mount: str, path: str) -> bool:
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def test_each_orchestrator_replica_has_its_own_home() -> None:
    # The home holds the lock, pid file and server id: two servers on one home refuse to
    # start, so no named volume, bind mount or shared claim may hold it.
    for files in COMPOSE_SETUPS:
        setup = "+".join(files)
        _, server = compose_orchestrator(compose(*files))
        home = effective_compose_environment(server)["REYNOLDS_HOME"]
        for volume in server.get("volumes", []):
            source, target = compose_volume(volume)
            if covers(target, home):
                assert source is None, f"{setup}: every replica shares {source} at {target}"
    name, server = k8s_orchestrator()
    spec, _ = k8s_reynolds_deployments()[name]
    home = k8s_environment(server)["REYNOLDS_HOME"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    held = [m["name"] for m in server["volumeMounts"] if covers(m["mountPath"], home)]
    assert held, f"{name}: nothing writable holds {home}"
    for volume in held:
        assert "emptyDir" in volumes[volume], f"{name}: {home} is {volumes[volume]}, not its own"


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
        yield f"k8s {pool}-agent", config["AGENT_MEMORY_LIMIT_HARD"], command_of(container), limit


def test_each_production_worker_has_room_for_its_actions_hard_memory_limit() -> None:
    worker_room = 256 * 2**20
    for where, hard, command, limit in agent_limits():
        concurrency = int(command[command.index("--concurrency") + 1])
        needed = parse_bytes(hard) * concurrency + worker_room
        assert memory_bytes(limit) >= needed, f"{where}: {limit} < {needed} bytes"


# ------------------------------------------------------------------------------------------
# Secrets


def secret_file_references(values: list[str]) -> set[str]:
    return {v.removeprefix(f"{SECRETS_DIR}/") for v in values if v.startswith(f"{SECRETS_DIR}/")}


def scrape_secrets(config: dict[str, Any]) -> set[str]:
    scrapes = config["scrape_configs"]
    files = [s["authorization"]["credentials_file"] for s in scrapes if "authorization" in s]
    return secret_file_references(files)


def test_services_read_secret_files_only_where_they_are_mounted() -> None:
    configs = prometheus_configs()
    for name, service in compose(BASE).items():
        mounted = {s["target"] for s in service.get("secrets", [])}
        env = compose_environment(service)
        wanted = secret_file_references(list(env.values()))
        if name == "prometheus":
            wanted |= scrape_secrets(configs["+".join(COMPOSE_SETUPS[0])])
        if env.get("REYNOLDS_SECRETS_DIR") == SECRETS_DIR:
            wanted |= reynolds_secret_files(command_of(service), env)
        assert wanted <= mounted, f"{name} reads {sorted(wanted - mounted)} without mounting it"
    for spec in pod_specs():
        values = [e.get("value", "") for c in spec["containers"] for e in c.get("env", [])]
        wanted = secret_file_references(values)
        for container in spec["containers"]:
            if container["image"].startswith("reynolds:"):
                wanted |= reynolds_secret_files(command_of(container), k8s_environment(container))
        if any(c["image"].startswith("prom/prometheus:") for c in spec["containers"]):
            wanted |= scrape_secrets(configs["k8s"])
        assert wanted <= kubernetes_secret_mounts(spec), spec["containers"][0]["name"]


def reynolds_secret_files(command: list[str], env: dict[str, str]) -> set[str]:
    """The secret files a Reynolds container needs: a worker those its pool's actions read,
    the server the database password its PostgreSQL URL leaves out."""
    if command[:2] == ["reynolds", "agent"]:
        return pool_secret_files()[command[3]]
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


def test_every_metric_the_alerts_query_has_a_value_after_real_work(
    exported_metrics: set[str],
) -> None:
    for rule in alert_rules():
        unknown = metric_names(rule["expr"]) - PROMETHEUS_OWN - exported_metrics
        assert not unknown, f"{rule['alert']}: {sorted(unknown)}"


def test_every_metric_the_dashboards_query_has_a_value_after_real_work(
    exported_metrics: set[str],
) -> None:
    targets = dashboard_targets()
    assert targets
    for where, expr in targets:
        unknown = metric_names(expr) - PROMETHEUS_OWN - exported_metrics
        assert not unknown, f"{where}: {sorted(unknown)}"
    for where, variable in dashboard_variables():
        match = LABEL_VALUES.fullmatch(variable["definition"])
        assert match, f"{where}: ${variable['name']} is not label_values(metric, label)"
        assert match["metric"] in exported_metrics, f"{where}: ${variable['name']}"


# Contract section 5: name → (type, labels). Counters are `*_total`, histograms `*_seconds`.
CONTRACT_METRICS = {
    "reynolds_tasks_total": ("counter", {"status"}),
    "reynolds_subtasks_total": ("counter", {"agent_type", "status"}),
    "reynolds_subtask_duration_seconds": ("histogram", set()),
    "reynolds_agent_replicas": ("gauge", {"agent_type"}),
    "reynolds_agent_utilization": ("gauge", {"agent_type"}),
    "reynolds_queue_depth": ("gauge", {"agent_type"}),
    "reynolds_parallel_execution_ratio": ("gauge", set()),
    "reynolds_orchestration_overhead_ratio": ("gauge", set()),
    "reynolds_loop_prevention_loop_detected_total": ("counter", {"reason"}),
    "reynolds_loop_prevention_circuit_breaker_open": ("gauge", {"agent_type", "downstream"}),
    "reynolds_http_request_duration_seconds": ("histogram", set()),
}


def test_every_contract_metric_is_exported_with_its_type_labels_and_a_value(
    metrics_text: str,
) -> None:
    families = {
        family.name + ("_total" if family.type == "counter" else ""): family
        for family in text_string_to_metric_families(metrics_text)
    }
    for name, (kind, labels) in CONTRACT_METRICS.items():
        family = families.get(name)
        assert family is not None, f"{name} is not exported"
        assert family.type == kind, f"{name} is a {family.type}, not a {kind}"
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        assert samples, f"{name} has no series"
        assert all(labels <= set(s.labels) for s in samples), f"{name}: labels {labels}"
        assert any(math.isfinite(s.value) for s in samples), f"{name} has no value"


def test_the_ratio_gauges_are_the_windowed_counters_ratios(metrics_text: str) -> None:
    # Every task of the workload ended within the gauges' window.
    values = {n: v[0] for n, v in series_with_values(metrics_text).items() if len(v) == 1}
    busy = values["reynolds_parallel_execution_busy_seconds_total"]
    capacity = values["reynolds_parallel_execution_capacity_seconds_total"]
    overhead = values["reynolds_orchestration_overhead_seconds_total"]
    makespan = values["reynolds_orchestration_makespan_seconds_total"]
    assert 0 < busy <= capacity and 0 < overhead <= makespan
    assert values["reynolds_parallel_execution_ratio"] == pytest.approx(busy / capacity)
    assert values["reynolds_orchestration_overhead_ratio"] == pytest.approx(overhead / makespan)


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
        "ReynoldsOrchestrationOverheadHigh": (
            "reynolds_orchestration_overhead_seconds_total",
            "> 0.15",
        ),
        "ReynoldsParallelExecutionRatioLow": (
            "reynolds_parallel_execution_capacity_seconds_total",
            "< 0.8",
        ),
        "ReynoldsAgentUtilizationLow": ("reynolds_agent_available_slot_seconds_total", "< 0.7"),
        "ReynoldsHttpLatencyHigh": ("reynolds_http_request_duration_seconds_bucket", "> 5"),
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
        assert rule.get("for"), f"{rule['alert']} fires on a single evaluation"


def orchestrator_settings() -> dict[str, Settings]:
    """Setup → the Settings the orchestrator's container builds from its environment."""
    out: dict[str, Settings] = {}
    envs = {
        "+".join(f): effective_compose_environment(compose_orchestrator(compose(*f))[1])
        for f in COMPOSE_SETUPS
    }
    envs["k8s"] = k8s_environment(k8s_orchestrator()[1])
    for setup, env in envs.items():
        values = {
            k.removeprefix("REYNOLDS_").lower(): v
            for k, v in env.items()
            if k.startswith("REYNOLDS_")
        }
        out[setup] = Settings.model_validate(values)
    return out


# ------------------------------------------------------------------------------------------
# Prometheus: every orchestrator replica is discovered and scraped


def prometheus_configs() -> dict[str, dict[str, Any]]:
    """Setup → the Prometheus configuration it runs: config/prometheus.yml under Compose, the
    ConfigMap's copy on Kubernetes."""
    compose_config = load("config/prometheus.yml")
    (k8s_map,) = [m for m in k8s_objects("ConfigMap") if "prometheus.yml" in m["data"]]
    k8s_config: dict[str, Any] = yaml.safe_load(k8s_map["data"]["prometheus.yml"])
    return {**{"+".join(f): compose_config for f in COMPOSE_SETUPS}, "k8s": k8s_config}


def reynolds_scrape_job(config: dict[str, Any]) -> dict[str, Any]:
    jobs: list[dict[str, Any]] = [
        j for j in config["scrape_configs"] if j["job_name"] == "reynolds"
    ]
    (job,) = jobs
    return job


DISCOVERY = ("static_configs", "dns_sd_configs", "kubernetes_sd_configs", "relabel_configs")


def test_the_k8s_prometheus_config_is_config_prometheus_yml_but_for_discovery() -> None:
    configs = prometheus_configs()
    ours, theirs = configs[SETUPS[0]], configs["k8s"]
    for config in (ours, theirs):
        for key in DISCOVERY:
            reynolds_scrape_job(config).pop(key, None)
    assert theirs == ours


def test_prometheus_discovers_every_compose_replica_by_the_service_name() -> None:
    # Docker's DNS answers a service name with one A record per container: a static
    # `reynolds:8080` target would scrape one replica at random.
    config = prometheus_configs()[SETUPS[0]]
    job = reynolds_scrape_job(config)
    assert job["metrics_path"] == "/metrics" and job.get("scheme", "http") == "http"
    assert "static_configs" not in job and "kubernetes_sd_configs" not in job
    for files in COMPOSE_SETUPS:
        services = compose(*files)
        name, server = compose_orchestrator(services)
        port = int(effective_compose_environment(server)["REYNOLDS_PORT"])
        assert job["dns_sd_configs"] == [{"names": [name], "type": "A", "port": port}]
        # Prometheus resolves the name on the network the orchestrator is on.
        networks = [set(services[n].get("networks", ["default"])) for n in (name, "prometheus")]
        assert networks[0] & networks[1], "+".join(files)


def label_selected(selector: str, labels: dict[str, str]) -> bool:
    """A Kubernetes equality label selector (`a=b,c!=d`) against a pod's labels."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        match = re.fullmatch(r"([^!=]+?)\s*(==?|!=)\s*(.*)", term)
        assert match, f"unsupported selector {term!r}"
        key, operator, value = match.groups()
        if (labels.get(key) == value) != (operator != "!="):
            return False
    return True


def relabelled(labels: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus' relabelling (keep, drop, replace) of one target; None when dropped."""
    labels = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        assert action in ("keep", "drop", "replace"), f"unsupported relabel action {action}"
        sources = rule.get("source_labels", [])
        value = rule.get("separator", ";").join(labels.get(n, "") for n in sources)
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            template = re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", rule.get("replacement", "$1"))
            labels[rule["target_label"]] = match.expand(template)
    return labels


def port_labels(ip: str, port: dict[str, Any] | None) -> dict[str, str]:
    if port is None:  # a container that declares no port: one target without a port
        return {"__address__": ip}
    return {
        "__address__": f"{ip}:{port['containerPort']}",
        "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
        "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
        "__meta_kubernetes_pod_container_port_protocol": port.get("protocol", "TCP"),
    }


def pod_role_targets(namespace: str) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """(Deployment, target labels) of every target Kubernetes pod discovery finds in the
    manifests: one per container port of each running replica of each Deployment of the
    namespace, as Prometheus labels it before relabelling."""
    for index, doc in enumerate(k8s_objects("Deployment")):
        if doc["metadata"]["namespace"] != namespace:
            continue
        template = doc["spec"]["template"]
        for replica in range(doc["spec"].get("replicas", 1)):
            ip = f"10.{index}.{replica}.7"
            pod = {
                "__meta_kubernetes_namespace": namespace,
                "__meta_kubernetes_pod_name": f"{doc['metadata']['name']}-{replica}",
                "__meta_kubernetes_pod_ip": ip,
                "__meta_kubernetes_pod_phase": "Running",
                "__meta_kubernetes_pod_ready": "true",
            }
            for key, value in template["metadata"].get("labels", {}).items():
                sanitized = re.sub(r"[^a-zA-Z0-9_]", "_", key)
                pod[f"__meta_kubernetes_pod_label_{sanitized}"] = value
                pod[f"__meta_kubernetes_pod_labelpresent_{sanitized}"] = "true"
            for container in template["spec"]["containers"]:
                labels = pod | {"__meta_kubernetes_pod_container_name": container["name"]}
                for port in container.get("ports", []) or [None]:
                    yield doc, labels | port_labels(ip, port)


def k8s_scrape_targets() -> list[tuple[str, str]]:
    """(Deployment, address) of every target the `reynolds` job scrapes on Kubernetes."""
    (namespace,) = k8s_objects("Namespace")
    name = namespace["metadata"]["name"]
    job = reynolds_scrape_job(prometheus_configs()["k8s"])
    assert "static_configs" not in job and "dns_sd_configs" not in job
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod", "the relabelling below expects pod discovery"
    assert sd.get("namespaces", {}).get("names") == [name], sd
    selectors = [s for s in sd.get("selectors", []) if s["role"] == "pod"]
    found = []
    for deployment, labels in pod_role_targets(name):
        pod_labels = deployment["spec"]["template"]["metadata"].get("labels", {})
        if not all(label_selected(s.get("label", ""), pod_labels) for s in selectors):
            continue
        kept = relabelled(labels, job.get("relabel_configs", []))
        if kept is not None:
            found.append((deployment["metadata"]["name"], kept["__address__"]))
    return found


def test_prometheus_discovers_every_k8s_orchestrator_pod_and_nothing_else() -> None:
    # Through the Service, a scrape would reach one replica at random: Prometheus lists the
    # orchestrator's pods and scrapes each at its own address, on the port it serves.
    deployment, server = k8s_orchestrator()
    port = k8s_environment(server)["REYNOLDS_PORT"]
    targets = k8s_scrape_targets()
    assert {d for d, _ in targets} == {deployment}, targets
    addresses = [address for _, address in targets]
    assert len(set(addresses)) == len(addresses) == ORCHESTRATOR_REPLICAS, addresses
    assert all(address.rpartition(":")[2] == port for address in addresses), addresses
    job = reynolds_scrape_job(prometheus_configs()["k8s"])
    assert job["metrics_path"] == "/metrics" and job.get("scheme", "http") == "http"


def test_prometheus_may_list_the_pods_it_discovers() -> None:
    (prometheus,) = [d for d in k8s_objects("Deployment") if d["metadata"]["name"] == "prometheus"]
    spec = prometheus["spec"]["template"]["spec"]
    account = spec.get("serviceAccountName", "default")
    namespace = prometheus["metadata"]["namespace"]
    # In-cluster discovery authenticates with the pod's ServiceAccount token.
    assert spec.get("automountServiceAccountToken") is True, "Prometheus gets no token"
    granted: set[str] = set()
    for binding in k8s_objects("RoleBinding") + k8s_objects("ClusterRoleBinding"):
        subjects = binding.get("subjects", [])
        if not any(
            s["kind"] == "ServiceAccount"
            and s["name"] == account
            and s.get("namespace", binding["metadata"].get("namespace")) == namespace
            for s in subjects
        ):
            continue
        ref = binding["roleRef"]
        role = k8s_object(ref["kind"], ref["name"])
        for rule in role["rules"]:
            if "" in rule["apiGroups"] and {"list", "watch"} <= set(rule["verbs"]):
                granted |= set(rule["resources"])
    assert "pods" in granted, f"ServiceAccount {account} may not list and watch pods"


# Inside a container or a pod, the host name (a container id, the pod's name) resolves to the
# container's own address: Docker and Kubernetes write it into /etc/hosts. Service discovery
# hands Prometheus that address, which it sends as the Host of every scrape.
CONTAINER_NAME, CONTAINER_IP = "3f2a9c1d7e4b", "10.89.0.7"


def as_in_a_container(monkeypatch: pytest.MonkeyPatch) -> None:
    real_fqdn, real_byname = socket.getfqdn, socket.gethostbyname
    real_byname_ex, real_addrinfo = socket.gethostbyname_ex, socket.getaddrinfo

    def getfqdn(name: str = "") -> str:
        return CONTAINER_NAME if name in ("", CONTAINER_NAME) else real_fqdn(name)

    def gethostbyname(name: str) -> str:
        return CONTAINER_IP if name == CONTAINER_NAME else real_byname(name)

    def gethostbyname_ex(name: str) -> tuple[str, list[str], list[str]]:
        if name == CONTAINER_NAME:
            return CONTAINER_NAME, [], [CONTAINER_IP]
        return real_byname_ex(name)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == CONTAINER_NAME:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (CONTAINER_IP, int(port or 0)))]
        return real_addrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "gethostname", lambda: CONTAINER_NAME)
    monkeypatch.setattr(socket, "getfqdn", getfqdn)
    monkeypatch.setattr(socket, "gethostbyname", gethostbyname)
    monkeypatch.setattr(socket, "gethostbyname_ex", gethostbyname_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def scraped_ports() -> dict[str, set[str]]:
    """Setup → the ports Prometheus' discovered targets name."""
    configs = prometheus_configs()
    ports = {
        setup: {str(sd["port"]) for sd in reynolds_scrape_job(configs[setup])["dns_sd_configs"]}
        for setup in SETUPS
        if setup != "k8s"
    }
    ports["k8s"] = {address.rpartition(":")[2] for _, address in k8s_scrape_targets()}
    return ports


def test_the_orchestrator_accepts_the_host_prometheus_scrapes_each_replica_by(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    as_in_a_container(monkeypatch)
    for setup, ports in scraped_ports().items():
        rules = SiteRules.from_settings(orchestrator_settings()[setup])
        for port in ports:
            host = f"{CONTAINER_IP}:{port}"
            assert rules.host_allowed(host), f"{setup}: Prometheus scrapes with Host {host}"


def test_the_orchestrator_accepts_the_host_of_every_port_it_is_published_on() -> None:
    settings = orchestrator_settings()
    for files in COMPOSE_SETUPS:
        setup = "+".join(files)
        rules = SiteRules.from_settings(settings[setup])
        _, server = compose_orchestrator(compose(*files))
        for port in server.get("ports", []):
            address, host_ports, _ = published(port)
            for host_port in host_ports:
                host = f"{address or '127.0.0.1'}:{host_port}"
                assert rules.host_allowed(host), f"{setup}: a replica published at {host}"
    for setup, each in settings.items():
        rules = SiteRules.from_settings(each)
        # Probes and health checks call GET /health, which any Host may reach; anything else
        # from elsewhere must name the orchestrator by a listed name.
        assert not rules.host_allowed("evil.example:8080"), setup
