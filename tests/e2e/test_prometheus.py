"""The monitoring config against a real Prometheus.

promtool checks config/prometheus.yml and config/alerts.yml and runs the rules' unit tests
(config/alerts.test.yml). Then a real Prometheus (Debian's `prometheus`, a plain process on a
loopback port, scraping every second) scrapes a real Reynolds server, started with the CLI,
before and after real work (tests/helpers/metrics_workload.py), and every expression of the
alert rules and the Grafana dashboards is evaluated through its HTTP API: none fails, and each
returns numbers — for an alert, each side of its comparisons, since a rule that should not fire
returns nothing as a whole.

Without `prometheus` and `promtool` on PATH these tests skip, or fail under
REYNOLDS_REQUIRE_SERVICES=1 (CI's .ci/run installs the package first).
"""

from __future__ import annotations

import math
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from cli_support import Server, free_port, make_server, output
from tests.helpers.deployment import alert_rules, dashboard_targets, dashboard_variables, pools
from tests.helpers.metrics_workload import (
    SETTINGS,
    exposed_total,
    run_workload,
    series_with_values,
    write_config,
)
from tests.helpers.polling import wait_for
from tests.helpers.promql import PROMETHEUS_OWN, grafana_query, metric_names, operands

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config/alerts.yml"
# Grafana's $__rate_interval (and $__interval, $__range): long enough to hold the workload.
RATE_INTERVAL = "5m"
TIMEOUT_S = 60.0
LABEL_VALUES = re.compile(r"label_values\((?P<metric>[^,]+),\s*(?P<label>[^)]+)\)")


@pytest.fixture(scope="module")
def tools(require_service: Callable[[str, str], NoReturn]) -> dict[str, str]:
    found = {name: shutil.which(name) for name in ("prometheus", "promtool")}
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        require_service(
            "Prometheus",
            f"{' and '.join(missing)} not on PATH (Debian's `prometheus` package has both: "
            "apt-get install prometheus)",
        )
    return {name: str(path) for name, path in found.items()}


def promtool(tools: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tools["promtool"], *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_promtool_accepts_the_shipped_config_and_rules(tools: dict[str, str]) -> None:
    checked = promtool(tools, "check", "config", "--syntax-only", "config/prometheus.yml")
    assert checked.returncode == 0, output(checked)
    checked = promtool(tools, "check", "rules", "--lint=all", "--lint-fatal", "config/alerts.yml")
    assert checked.returncode == 0, output(checked)


def test_the_rules_unit_tests_pass(tools: dict[str, str]) -> None:
    tested = promtool(tools, "test", "rules", "config/alerts.test.yml")
    assert tested.returncode == 0, output(tested)


def test_the_rules_unit_tests_show_every_alert_firing_and_quiet() -> None:
    cases = yaml.safe_load((ROOT / "config/alerts.test.yml").read_text(encoding="utf-8"))
    tested = [case for group in cases["tests"] for case in group["alert_rule_test"]]
    for rule in alert_rules():
        own = [case for case in tested if case["alertname"] == rule["alert"]]
        assert any(case.get("exp_alerts") for case in own), f"{rule['alert']} never fires"
        assert any(not case.get("exp_alerts") for case in own), f"{rule['alert']} never quiet"


# ------------------------------------------------------------------------------------------
# A real Prometheus scraping a real server


@dataclass(frozen=True)
class Scraped:
    """Prometheus' API after it scraped the server before and after the workload, and the
    server's own /metrics after it."""

    api: httpx.Client
    exposition: str


def prometheus_config(server: Server, own_port: int, token_file: Path) -> dict[str, Any]:
    """config/prometheus.yml with this test's targets (loopback only), the repository's rule
    file, the server's token, and a scrape and evaluation every second."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "config/prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES)]
    targets = {"reynolds": f"127.0.0.1:{server.port}", "prometheus": f"127.0.0.1:{own_port}"}
    for job in config["scrape_configs"]:
        job.pop("dns_sd_configs", None)  # the replicas' discovery: here the one test server
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token_file)
    return config


@contextmanager
def running_prometheus(
    tools: dict[str, str], root: Path, server: Server, token: str
) -> Iterator[httpx.Client]:
    """Prometheus as a plain process of this test, its API client once it is ready."""
    port = free_port()
    token_file = root / "api_token.txt"
    token_file.write_text(token, encoding="utf-8")
    config_file = root / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(prometheus_config(server, port, token_file)))
    checked = promtool(tools, "check", "config", "--lint=all", "--lint-fatal", str(config_file))
    assert checked.returncode == 0, output(checked)
    log_file = root / "prometheus.log"
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [
                tools["prometheus"],
                f"--config.file={config_file}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:

            def ready() -> bool:
                assert process.poll() is None, f"Prometheus exited: {log_file.read_text()}"
                try:
                    return api.get("/-/ready").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(ready, TIMEOUT_S, "Prometheus did not become ready")
            yield api
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def query(api: httpx.Client, expr: str) -> list[dict[str, Any]]:
    """An instant query's samples (a scalar as one sample); fails on any error."""
    answer = api.get("/api/v1/query", params={"query": expr})
    body = answer.json()
    assert answer.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    data = body["data"]
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    result: list[dict[str, Any]] = data["result"]
    return result


def numbers(samples: list[dict[str, Any]]) -> list[float]:
    """The samples' values that are numbers (not NaN, not infinite)."""
    return [v for s in samples if math.isfinite(v := float(s["value"][1]))]


def total(api: httpx.Client, expr: str) -> float:
    return sum(numbers(query(api, expr)))


def caught_up(api: httpx.Client, exposition: str) -> bool:
    """Whether Prometheus has scraped what `exposition` shows of the work's last steps."""
    last = {
        "reynolds_tasks_total": {},
        "reynolds_scaling_events_total": {},
        "reynolds_audit_records_total": {"decision": "rejected"},
        "reynolds_http_request_duration_seconds_count": {"status": "421"},
    }
    for name, labels in last.items():
        selector = ", ".join(f'{key}="{value}"' for key, value in labels.items())
        if total(api, f"{name}{{{selector}}}") < exposed_total(exposition, name, **labels):
            return False
    return True


@pytest.fixture(scope="module")
def scraped(tools: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    root = tmp_path_factory.mktemp("prometheus")
    server = make_server(root / "server")
    token = secrets.token_urlsafe(24)
    env = {f"REYNOLDS_{name.upper()}": str(value) for name, value in SETTINGS.items()}
    env |= {"REYNOLDS_API_TOKEN": token, "REYNOLDS_CONFIG_DIR": str(write_config(root / "config"))}
    started = server.run("start", env=env)
    assert started.returncode == 0, output(started)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with (
            running_prometheus(tools, root, server, token) as api,
            httpx.Client(base_url=server.base_url, headers=headers, timeout=TIMEOUT_S) as client,
        ):
            # A scrape before the work, so that every counter's increase is seen.
            wait_for(lambda: numbers(query(api, 'up{job="reynolds"} == 1')), TIMEOUT_S, "no scrape")
            run_workload(client)
            exposition = client.get("/metrics").text
            wait_for(lambda: caught_up(api, exposition), TIMEOUT_S, "no scrape after the work")
            yield Scraped(api, exposition)
    finally:
        server.run("stop")


def test_prometheus_scrapes_nothing_but_loopback(scraped: Scraped) -> None:
    targets = scraped.api.get("/api/v1/targets").json()["data"]["activeTargets"]
    assert {t["labels"]["job"] for t in targets} == {"reynolds", "prometheus"}
    for target in targets:
        assert urlsplit(target["scrapeUrl"]).hostname == "127.0.0.1", target["scrapeUrl"]
        assert target["health"] == "up", target
    assert scraped.api.get("/api/v1/alertmanagers").json()["data"]["activeAlertmanagers"] == []


def test_prometheus_evaluates_every_alert_rule_without_error(scraped: Scraped) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = scraped.api.get("/api/v1/rules").json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if all(rule["health"] != "unknown" for rule in rules) else None

    rules = wait_for(evaluated, TIMEOUT_S, "the rules were never evaluated")
    assert sorted(rule["name"] for rule in rules) == sorted(r["alert"] for r in alert_rules())
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


def test_each_side_of_every_alert_condition_is_a_number_after_real_work(scraped: Scraped) -> None:
    for rule in alert_rules():
        query(scraped.api, rule["expr"])  # the whole condition: no error
        sides = operands(rule["expr"])
        assert sides, rule["alert"]
        for side in sides:
            assert numbers(query(scraped.api, side)), f"{rule['alert']}: no number from {side}"


def test_every_dashboard_query_returns_numbers_after_real_work(scraped: Scraped) -> None:
    variables = {v["name"]: v["allValue"] for _, v in dashboard_variables()}
    targets = dashboard_targets()
    assert len(targets) > 40
    for where, expr in targets:
        promql = grafana_query(expr, variables, RATE_INTERVAL)
        assert numbers(query(scraped.api, promql)), f"{where}: no number from {promql}"


def test_every_dashboard_variable_lists_the_pools(scraped: Scraped) -> None:
    for where, variable in dashboard_variables():
        match = LABEL_VALUES.fullmatch(variable["definition"])
        assert match, f"{where}: ${variable['name']}"
        answer = scraped.api.get(
            f"/api/v1/label/{match['label']}/values", params={"match[]": match["metric"]}
        )
        assert set(answer.json()["data"]) == set(pools()), f"{where}: ${variable['name']}"


def test_every_metric_queried_has_a_value_in_the_live_metrics(scraped: Scraped) -> None:
    exported = {
        name
        for name, values in series_with_values(scraped.exposition).items()
        if any(math.isfinite(value) for value in values)
    }
    queries = [expr for _, expr in dashboard_targets()] + [r["expr"] for r in alert_rules()]
    used = set().union(*(metric_names(q) for q in queries)) - PROMETHEUS_OWN
    assert used and used <= exported, sorted(used - exported)


def test_prometheus_saw_what_the_work_did(scraped: Scraped) -> None:
    api = scraped.api
    ended = query(api, "reynolds_tasks_total")
    statuses = {s["metric"]["status"]: float(s["value"][1]) for s in ended}
    assert statuses == {"succeeded": 2, "failed": 4, "loop_blocked": 1, "cancelled": 0}
    assert total(api, 'reynolds_loop_prevention_loop_detected_total{reason="repeated"}') >= 1
    assert total(api, 'reynolds_loop_prevention_concurrency_limit{downstream="exec:sh"}') >= 1
    assert total(api, 'reynolds_loop_prevention_circuit_breaker_open{downstream=~"http:.*"}') == 1
    assert total(api, 'reynolds_audit_records_total{kind="action", decision="denied"}') == 1
    assert total(api, 'reynolds_audit_records_total{kind="tool", decision="rejected"}') == 2
    assert total(api, 'reynolds_scaling_events_total{agent_type="code"}') == 2
    assert total(api, 'reynolds_http_request_duration_seconds_count{status="421"}') == 2
    # The contract's gauges: the ratios over the tasks of the last 15 minutes.
    for gauge in ("reynolds_parallel_execution_ratio", "reynolds_orchestration_overhead_ratio"):
        assert 0 < total(api, gauge) <= 1, gauge
