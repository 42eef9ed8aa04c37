"""The Docker Compose files, checked without a container engine.

Each file against the compose specification shipped in check-jsonschema (offline); then the
services, as `docker compose -f ... -f ...` combines them for development and production, against
the pools of config/agents.yaml, the secrets template and the files they mount.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from tests.helpers.deployment import (
    BASE,
    COMPOSE_SETUPS,
    DASHBOARDS_DIR,
    OVERRIDE,
    PROD,
    ROOT,
    agent_command,
    compose,
    compose_orchestrator,
    compose_workers,
    dashboards,
    dockerfile_instructions,
    effective_compose_environment,
    health_port_of,
    load,
    pools,
    published,
    run_tool,
    settings_default,
    template_secrets,
    text,
    worker_services,
)

# ------------------------------------------------------------------------------------------
# Schema


@pytest.mark.parametrize("name", [BASE, OVERRIDE, PROD])
def test_each_compose_file_is_valid_against_the_compose_specification(name: str) -> None:
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", name)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------
# Pools


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


def test_production_publishes_no_database_port_and_restarts_every_service() -> None:
    services = compose(BASE, PROD)
    for name in ("postgres", "redis"):
        assert not services[name].get("ports"), f"{name} is published in production"
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        assert service["deploy"]["resources"]["limits"]["memory"], name


# ------------------------------------------------------------------------------------------
# Workers


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


# ------------------------------------------------------------------------------------------
# Secrets and files


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


def test_every_repository_file_compose_mounts_exists() -> None:
    for name in (BASE, OVERRIDE, PROD):
        for service, spec in load(name)["services"].items():
            for volume in spec.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("./"):
                    assert (ROOT / source).exists(), f"{name}: {service} mounts {source}"


# ------------------------------------------------------------------------------------------
# Monitoring: what Prometheus and Grafana load from their mounts


def test_prometheus_scrapes_the_orchestrator_and_loads_the_mounted_rules() -> None:
    config = load("config/prometheus.yml")
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "reynolds"]
    # Every replica of the service, found by its name (one A record per container).
    port = int(settings_default("port"))
    assert job["dns_sd_configs"] == [{"names": ["reynolds"], "type": "A", "port": port}]
    assert "static_configs" not in job
    assert job["metrics_path"] == "/metrics"
    prometheus = compose(BASE)["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    for rule_file in config["rule_files"]:
        assert mounts[rule_file] == "./config/alerts.yml"


def test_grafana_provisions_every_dashboard_from_the_mounted_directory() -> None:
    (datasource,) = load("config/grafana/datasources.yml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    boards = dashboards()
    names = {"overview.json", "agents.json", "infrastructure.json", "security-audit.json"}
    assert set(boards) == names
    assert len({board["uid"] for board in boards.values()}) == len(boards)
    for name, board in boards.items():
        panels = [p for p in board["panels"] if p["type"] != "row"]
        assert panels, name
        used = [p["datasource"] for p in panels] + [
            t["datasource"] for p in panels for t in p["targets"]
        ]
        used += [v["datasource"] for v in board["templating"]["list"] if "datasource" in v]
        assert {d["uid"] for d in used} == {datasource["uid"]}, name
    (provider,) = load("config/grafana/dashboards.yml")["providers"]
    grafana = compose(BASE)["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts[f"./{DASHBOARDS_DIR}"] == provider["options"]["path"]
