"""The `reynolds` command in a subprocess against a real server on a free port."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from cli_support import Server, output
from tests.helpers.polling import wait_for

CHAIN_TASK = """\
task:
  type: development
  description: build, then test, two components
  components: [alpha, beta]
  steps:
    - name: build
      action: {kind: shell, argv: [echo, "build {component}"]}
    - name: test
      after: [build]
      action: {kind: shell, argv: [echo, "test {component}"]}
strategy:
  maxConcurrency: 4
"""

SLEEP_TASK = {
    "type": "development",
    "description": "a step that would take half a minute",
    "components": ["slow"],
    "steps": [{"name": "nap", "action": {"kind": "shell", "argv": ["sleep", "30"]}}],
}

FINISHED = {"succeeded", "failed", "cancelled", "planned"}


def task_result(server: Server, task_id: str) -> dict[str, Any]:
    shown = server.run("tasks", "show", task_id, "--json")
    assert shown.returncode == 0, output(shown)
    result: dict[str, Any] = json.loads(shown.stdout)
    return result


def finished_result(server: Server, task_id: str) -> dict[str, Any] | None:
    result = task_result(server, task_id)
    return result if result["status"] in FINISHED else None


def orchestrate_chain(
    server: Server, tmp_path: Path, *flags: str
) -> subprocess.CompletedProcess[str]:
    task_file = tmp_path / "chain.yaml"
    task_file.write_text(CHAIN_TASK, encoding="utf-8")
    return server.run("orchestrate", str(task_file), *flags)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


def test_start_while_running_says_so_and_exits_0(live_server: Server) -> None:
    again = live_server.run("start")

    assert again.returncode == 0, output(again)
    assert "already running" in again.stdout
    assert f"{live_server.base_url}/health" in again.stdout
    assert f"{live_server.base_url}/mcp/tools" in again.stdout


def test_start_removes_a_stale_pid_file_then_starts(idle_server: Server) -> None:
    idle_server.home.mkdir(parents=True)
    pid_file = idle_server.home / "reynolds.pid"
    pid_file.write_text(f"{dead_pid()}\n", encoding="utf-8")

    started = idle_server.run("start")

    assert started.returncode == 0, output(started)
    assert "stale pid file" in started.stdout
    assert httpx.get(f"{idle_server.base_url}/health", timeout=5).status_code == 200
    assert (idle_server.home / "logs" / "server.log").is_file()


def test_stop_then_status_exits_1_saying_reynolds_is_not_running(idle_server: Server) -> None:
    assert idle_server.run("start").returncode == 0

    stopped = idle_server.run("stop")
    status = idle_server.run("status")

    assert stopped.returncode == 0, output(stopped)
    assert not (idle_server.home / "reynolds.pid").exists()
    assert status.returncode == 1
    assert f"Reynolds is not running at {idle_server.base_url}" in output(status)
    assert "Traceback" not in output(status)


def test_stop_when_nothing_runs_exits_0(idle_server: Server) -> None:
    stopped = idle_server.run("stop")

    assert stopped.returncode == 0, output(stopped)
    assert "not running" in stopped.stdout


def test_status_renders_pools_and_task_counts(live_server: Server) -> None:
    status = live_server.run("status")

    assert status.returncode == 0, output(status)
    assert "Agent pools" in status.stdout
    assert "devops" in status.stdout


def test_orchestrating_a_yaml_chain_succeeds_and_prints_the_summary(
    live_server: Server, tmp_path: Path
) -> None:
    run = orchestrate_chain(live_server, tmp_path)

    assert run.returncode == 0, output(run)
    for word in ("alpha", "beta", "build", "test", "succeeded", "Makespan", "speedup"):
        assert word in run.stdout


def test_orchestrate_json_runs_each_components_test_after_its_build(
    live_server: Server, tmp_path: Path
) -> None:
    run = orchestrate_chain(live_server, tmp_path, "--json")

    assert run.returncode == 0, output(run)
    result = json.loads(run.stdout)
    assert result["status"] == "succeeded"
    subtasks = {(s["component"], s["step"]): s for s in result["subtasks"]}
    assert set(subtasks) == {(c, s) for c in ("alpha", "beta") for s in ("build", "test")}
    for component in ("alpha", "beta"):
        build, test = subtasks[(component, "build")], subtasks[(component, "test")]
        assert build["status"] == test["status"] == "succeeded"
        assert f"build {component}" in build["output"]
        assert test["startedAt"] >= build["finishedAt"]


def test_orchestrate_reads_a_json_task_from_stdin_with_flag_overrides(
    live_server: Server,
) -> None:
    task = {
        "type": "development",
        "components": ["solo"],
        "steps": [{"name": "hello", "action": {"kind": "shell", "argv": ["echo", "hi"]}}],
    }

    run = live_server.run(
        "orchestrate",
        "-",
        "--json",
        "--approach",
        "direct",
        "--max-concurrency",
        "1",
        stdin=json.dumps(task),
    )

    assert run.returncode == 0, output(run)
    result = json.loads(run.stdout)
    assert result["status"] == "succeeded"
    assert result["plan"]["strategy"]["approach"] == "direct"


def test_a_failing_step_exits_1_and_shows_its_error(live_server: Server) -> None:
    task = {
        "type": "development",
        "components": ["x"],
        "steps": [
            {
                "name": "boom",
                "action": {"kind": "shell", "argv": ["sh", "-c", "echo kaput >&2; exit 3"]},
            }
        ],
    }

    run = live_server.run("orchestrate", "-", stdin=json.dumps(task))

    assert run.returncode == 1, output(run)
    assert "failed" in run.stdout
    assert "kaput" in run.stdout


def test_patterns_shows_what_failed_as_a_table_and_as_json(live_server: Server) -> None:
    task = {
        "type": "patterns-e2e",
        "subtasks": [
            {"id": "look", "action": {"kind": "shell", "argv": ["ls", "/no/such/patterns-e2e"]}}
        ],
    }
    failed = live_server.run("orchestrate", "-", stdin=json.dumps(task))

    table = live_server.run("patterns", env={"COLUMNS": "200"})
    as_json = live_server.run("patterns", "--json")

    assert failed.returncode == 1, output(failed)
    assert table.returncode == 0, output(table)
    row = next(line for line in table.stdout.splitlines() if "/no/such/patterns-e2e" in line)
    assert "not_found" in row and "(no retry)" in row
    assert "No such file or directory" in row
    assert as_json.returncode == 0, output(as_json)
    body = json.loads(as_json.stdout)
    (pattern,) = [
        p for p in body["failurePatterns"] if p["signature"] == "shell:ls /no/such/patterns-e2e"
    ]
    assert (pattern["failures"], pattern["classes"], pattern["retryable"]) == (
        1,
        {"not_found": 1},
        False,
    )
    assert body["window"] >= 1


def test_the_reynolds_voice_shows_only_with_the_personality_on(
    live_server: Server, tmp_path: Path
) -> None:
    result = json.loads(orchestrate_chain(live_server, tmp_path, "--json").stdout)
    comment = result["reynoldsComment"]

    plain = live_server.run("tasks", "show", result["taskId"])
    voiced = live_server.run("tasks", "show", result["taskId"], env={"REYNOLDS_PERSONALITY": "on"})

    assert comment
    assert comment not in plain.stdout
    assert comment in voiced.stdout


def test_an_invalid_task_exits_2_naming_the_field(live_server: Server, tmp_path: Path) -> None:
    task_file = tmp_path / "bad.json"
    bad = {
        "type": "development",
        "components": ["x"],
        "steps": [{"name": "empty", "action": {"kind": "shell", "argv": []}}],
    }
    task_file.write_text(json.dumps(bad), encoding="utf-8")

    run = live_server.run("orchestrate", str(task_file))

    assert run.returncode == 2, output(run)
    assert re.search(r"task\.steps\.0\.action\S*argv", run.stderr), run.stderr
    assert "Traceback" not in output(run)


def test_tasks_list_and_show_find_an_orchestrated_task(live_server: Server, tmp_path: Path) -> None:
    task_id = json.loads(orchestrate_chain(live_server, tmp_path, "--json").stdout)["taskId"]

    listed = live_server.run("tasks", "list", "--json", "--limit", "1000")
    table = live_server.run("tasks", "list", "--status", "succeeded")
    shown = live_server.run("tasks", "show", task_id)

    assert listed.returncode == 0, output(listed)
    assert task_id in {t["taskId"] for t in json.loads(listed.stdout)["tasks"]}
    assert table.returncode == 0, output(table)
    assert task_id in table.stdout
    assert shown.returncode == 0, output(shown)
    assert task_id in shown.stdout
    assert "succeeded" in shown.stdout
    assert task_result(live_server, task_id)["taskId"] == task_id


def test_tasks_show_of_an_unknown_task_exits_1_with_the_servers_error(
    live_server: Server,
) -> None:
    shown = live_server.run("tasks", "show", "no-such-task")

    assert shown.returncode == 1
    assert "error" in shown.stderr
    assert "Traceback" not in output(shown)


def test_cancelling_a_sleeping_task_stops_it_quickly(live_server: Server) -> None:
    submitted = live_server.run(
        "orchestrate", "-", "--no-wait", "--json", stdin=json.dumps(SLEEP_TASK)
    )
    assert submitted.returncode == 0, output(submitted)
    task_id = json.loads(submitted.stdout)["taskId"]
    wait_for(
        lambda: task_result(live_server, task_id)["subtasks"][0]["status"] == "running",
        timeout_s=20,
        interval_s=0.1,
    )

    started = time.monotonic()
    cancelled = live_server.run("tasks", "cancel", task_id)
    final = wait_for(lambda: finished_result(live_server, task_id), timeout_s=10, interval_s=0.1)

    assert cancelled.returncode == 0, output(cancelled)
    assert final["status"] == "cancelled"
    assert final["subtasks"][0]["status"] == "cancelled"
    assert time.monotonic() - started < 10


def test_health_export_json_writes_the_documented_report(
    idle_server: Server, tmp_path: Path
) -> None:
    # A server of its own: the session's has run failing tasks, and a high error rate warns.
    assert idle_server.run("start").returncode == 0
    checked = idle_server.run("health", "--export", "--format", "json", cwd=tmp_path)

    assert checked.returncode == 0, output(checked)
    reports = list(tmp_path.glob("health-report-*.json"))
    assert len(reports) == 1
    assert re.fullmatch(r"health-report-\d{8}-\d{6}\.json", reports[0].name)
    assert reports[0].name in checked.stdout
    body = json.loads(reports[0].read_text(encoding="utf-8"))["health_check"]
    assert set(body) == {
        "timestamp",
        "duration_seconds",
        "summary",
        "results",
        "recommendations",
    }
    assert set(body["summary"]) == {
        "total_checks",
        "passed",
        "warnings",
        "failed",
        "overall_status",
    }
    assert body["summary"]["overall_status"] == "healthy"
    assert body["summary"]["failed"] == 0
    assert body["summary"]["total_checks"] == len(body["results"]) >= 2


def test_health_export_text_writes_a_txt_report(idle_server: Server, tmp_path: Path) -> None:
    assert idle_server.run("start").returncode == 0
    checked = idle_server.run("health", "--verbose", "--export", "--format", "text", cwd=tmp_path)

    assert checked.returncode == 0, output(checked)
    (report,) = tmp_path.glob("health-report-*.txt")
    assert "healthy" in report.read_text(encoding="utf-8")


def test_agents_status_lists_the_pools(live_server: Server) -> None:
    agents = live_server.run("agents", "status")

    assert agents.returncode == 0, output(agents)
    for pool in ("devops", "platform", "code"):
        assert pool in agents.stdout


def test_agents_scale_takes_an_alias_and_refuses_more_than_the_max(live_server: Server) -> None:
    up = live_server.run("agents", "scale", "platform-agent", "3")
    assert up.returncode == 0, output(up)
    assert "platform: 3 replicas" in up.stdout
    refused = live_server.run("agents", "scale", "platform", "9")
    assert refused.returncode != 0
    assert "at most 3" in refused.stdout + refused.stderr
    back = live_server.run("agents", "scale", "platform", "2")  # the session server is shared
    assert back.returncode == 0, output(back)


def test_agents_auto_dry_run_and_thresholds_print_per_pool(live_server: Server) -> None:
    auto = live_server.run("agents", "auto", "--dry-run")
    assert auto.returncode == 0, output(auto)
    thresholds = live_server.run("agents", "thresholds")
    assert thresholds.returncode == 0, output(thresholds)
    for pool in ("devops", "platform", "code"):
        assert f"{pool}: auto on" in thresholds.stdout


def test_each_pool_logs_its_agents_attempts_and_logs_shows_a_tasks_lines(
    live_server: Server,
) -> None:
    task = {
        "type": "logged",
        "subtasks": [
            {"id": "deploy", "agent": "devops", "action": {"kind": "shell", "argv": ["true"]}},
            {"id": "check", "agent": "code", "dependsOn": ["deploy"],
             "action": {"kind": "shell", "argv": ["sh", "-c", "exit 3"]}},
        ],
    }  # fmt: skip
    ran = live_server.run("orchestrate", "-", "--json", stdin=json.dumps(task))
    task_id = json.loads(ran.stdout)["taskId"]
    logs = live_server.home / "logs"

    def attempts(pool: str) -> list[dict[str, Any]]:
        text = (logs / f"{pool}-agent.log").read_text(encoding="utf-8")
        found = [json.loads(line) for line in text.splitlines()]
        return [line for line in found if line.get("taskId") == task_id]

    (ended,) = wait_for(lambda: attempts("devops"), 10)
    assert ended["event"] == "attempt ended"
    assert (ended["subtaskId"], ended["status"]) == ("deploy", "succeeded")
    assert ended["agentType"] == "devops" and ended["startedAt"] <= ended["timestamp"]
    (failed,) = wait_for(lambda: attempts("code"), 10)
    assert (failed["status"], failed["exitCode"], failed["level"]) == ("failed", 3, "warning")
    # Every line of the server's own log is a JSON object.
    for line in (logs / "server.log").read_text(encoding="utf-8").splitlines():
        assert isinstance(json.loads(line), dict)

    shown = live_server.run("logs", "code-agent", "--task", task_id)
    assert shown.returncode == 0, output(shown)
    (line,) = shown.stdout.splitlines()
    assert f"taskId={task_id}" in line
    assert "status=failed exitCode=3" in shown.stdout


def test_logs_prints_the_end_of_the_server_log(live_server: Server) -> None:
    logs = live_server.run("logs", "reynolds", "-n", "5")

    assert logs.returncode == 0, output(logs)
    assert 0 < len(logs.stdout.splitlines()) <= 5
