"""The Kubernetes manifests, checked without a cluster.

Each manifest against the schemas shipped in kubernetes-validate (offline); then the objects
against the pools of config/agents.yaml, the secrets template and the config files their
ConfigMaps copy.
"""

from __future__ import annotations

import pytest
from tests.helpers.deployment import (
    K8S_FILES,
    KUBERNETES_VERSION,
    ROOT,
    agent_command,
    documents,
    k8s_object,
    k8s_objects,
    kubernetes_secret_mounts,
    pod_specs,
    pools,
    run_tool,
    settings_default,
    template_secrets,
    text,
)

# ------------------------------------------------------------------------------------------
# Schema and namespace


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
# Pools and pods


def test_each_pool_deploys_at_initial_replicas_and_autoscales_between_min_and_max() -> None:
    threshold = str(settings_default("queue_threshold_scale_up"))
    for pool, spec in pools().items():
        deployment = k8s_object("Deployment", f"{pool}-agent")
        assert deployment["spec"]["replicas"] == spec["replicas"]["initial"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == agent_command(pool)
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


def test_no_pod_gets_service_link_variables_that_would_shadow_reynolds_port() -> None:
    # A Service named `reynolds` would otherwise set REYNOLDS_PORT=tcp://... in every pod.
    for spec in pod_specs():
        assert spec.get("enableServiceLinks") is False, spec["containers"][0]["name"]


# ------------------------------------------------------------------------------------------
# Secrets and config files


def test_every_kubernetes_secret_key_is_in_the_template_and_the_create_command() -> None:
    command = text("k8s/secrets.yaml")
    for spec in pod_specs():
        for key in kubernetes_secret_mounts(spec):
            assert key.removesuffix(".txt") in template_secrets(), key
            assert f"--from-file={key}=secrets/{key}" in command, key


@pytest.mark.parametrize(
    ("config_map", "key", "source"),
    [
        ("reynolds-agents", "agents.yaml", "config/agents.yaml"),
        ("postgres-config", "postgresql.conf", "config/postgresql.conf"),
        ("redis-config", "redis.conf", "config/redis.conf"),
        # prometheus.yml differs only in how it finds the replicas (pods, not DNS):
        # test_deployment_consistency.py compares the rest.
        ("prometheus-config", "alerts.yml", "config/alerts.yml"),
        ("grafana-provisioning", "datasources.yml", "config/grafana/datasources.yml"),
        ("grafana-provisioning", "dashboards.yml", "config/grafana/dashboards.yml"),
    ],
)
def test_kubernetes_config_maps_hold_the_config_files_verbatim(
    config_map: str, key: str, source: str
) -> None:
    assert k8s_object("ConfigMap", config_map)["data"][key] == text(source)
