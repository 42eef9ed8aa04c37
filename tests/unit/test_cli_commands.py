"""CLI commands that need no server: refusals, exit codes, pid and log files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reynolds.adapters.store.lock import HomeLock
from reynolds.entrypoints.cli import app, orchestrate
from reynolds.entrypoints.cli.client import ReynoldsClient
from reynolds.settings import Settings

runner = CliRunner()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


def test_agent_without_a_broker_url_says_so_and_exits_2(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REYNOLDS_REDIS_URL", raising=False)
    result = runner.invoke(app, ["agent", "--type", "devops", "--concurrency", "2"])

    assert result.exit_code == 2
    assert "REYNOLDS_REDIS_URL is unset" in result.output


def test_agent_of_an_unknown_pool_names_the_pools_and_exits_2(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REYNOLDS_REDIS_URL", "redis://127.0.0.1:1/0")
    result = runner.invoke(app, ["agent", "--type", "gardening"])

    assert result.exit_code == 2
    assert "unknown agent 'gardening'" in result.output
    assert "devops" in result.output


def test_status_without_a_server_exits_1_saying_it_is_not_running(home: Path) -> None:
    result = runner.invoke(app, ["status"])

    assert result.exit_code == 1
    assert "Reynolds is not running at http://127.0.0.1:" in result.output
    assert "./start-orchestration.sh start" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    "args",
    [
        ["tasks", "list"],
        ["tasks", "show", "t1"],
        ["agents", "status"],
        ["agents", "scale", "devops-agent", "3"],
        ["agents", "auto", "--dry-run"],
        ["agents", "watch", "30"],
        ["agents", "thresholds"],
        ["patterns"],
    ],
)
def test_client_commands_without_a_server_exit_1(home: Path, args: list[str]) -> None:
    result = runner.invoke(app, args)

    assert result.exit_code == 1
    assert "not running" in result.output


def test_a_missing_task_file_exits_2_before_any_request(home: Path) -> None:
    result = runner.invoke(app, ["orchestrate", "absent.yaml"])

    assert result.exit_code == 2
    assert "absent.yaml" in result.output


def test_an_unknown_approach_is_a_usage_error(home: Path) -> None:
    result = runner.invoke(app, ["orchestrate", "task.yaml", "--approach", "fastest"])

    assert result.exit_code == 2


def test_health_without_a_server_exits_1(home: Path) -> None:
    result = runner.invoke(app, ["health"])

    assert result.exit_code == 1
    assert "FAIL server" in result.output


def test_stop_without_a_pid_file_exits_0(home: Path) -> None:
    result = runner.invoke(app, ["stop"])

    assert result.exit_code == 0
    assert "not running" in result.output


def test_stop_removes_a_stale_pid_file(home: Path) -> None:
    home.mkdir()
    (home / "reynolds.pid").write_text(f"{dead_pid()}\n", encoding="utf-8")

    result = runner.invoke(app, ["stop"])

    assert result.exit_code == 0
    assert "stale pid file" in result.output
    assert not (home / "reynolds.pid").exists()


def test_production_start_refuses_a_non_postgresql_database(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REYNOLDS_DATABASE_URL", "sqlite:///x.db")

    result = runner.invoke(app, ["start", "--production"])

    assert result.exit_code == 2
    assert "REYNOLDS_DATABASE_URL" in result.output


def test_logs_prints_the_end_of_the_server_log(home: Path) -> None:
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "server.log").write_text("one\ntwo\nthree\n", encoding="utf-8")

    result = runner.invoke(app, ["logs", "reynolds", "-n", "2"])

    assert result.exit_code == 0
    assert result.output == "two\nthree\n"


def test_logs_shows_json_lines_readable_and_a_tasks_lines_alone(home: Path) -> None:
    agent = "reynolds.agent.devops"
    lines = [
        {"timestamp": "2026-12-05T10:00:00.000Z", "level": "info", "logger": agent,
         "event": "attempt started", "taskId": "t1", "subtaskId": "build"},
        {"timestamp": "2026-12-05T10:00:01.000Z", "level": "info", "logger": agent,
         "event": "attempt started", "taskId": "t2", "subtaskId": "other"},
        {"timestamp": "2026-12-05T10:00:02.000Z", "level": "warning", "logger": agent,
         "event": "attempt ended", "taskId": "t1", "subtaskId": "build", "status": "failed",
         "exitCode": 2},
    ]  # fmt: skip
    (home / "logs").mkdir(parents=True)
    text = "".join(json.dumps(line) + "\n" for line in lines)
    (home / "logs" / "devops-agent.log").write_text(text, encoding="utf-8")

    result = runner.invoke(app, ["logs", "devops-agent", "--task", "t1"])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "2026-12-05T10:00:00.000Z INFO    reynolds.agent.devops: attempt started taskId=t1 "
        "subtaskId=build",
        "2026-12-05T10:00:02.000Z WARNING reynolds.agent.devops: attempt ended taskId=t1 "
        "subtaskId=build status=failed exitCode=2",
    ]
    everything = runner.invoke(app, ["logs", "devops-agent", "-n", "1"])
    assert everything.output.startswith("2026-12-05T10:00:02.000Z WARNING")


def test_logs_of_a_component_without_a_log_exit_1(home: Path) -> None:
    result = runner.invoke(app, ["logs", "devops-agent"])

    assert result.exit_code == 1
    assert "devops-agent.log" in result.output


def test_logs_refuses_a_component_that_is_a_path(home: Path) -> None:
    result = runner.invoke(app, ["logs", "../secrets"])

    assert result.exit_code == 2


def test_serve_reports_a_held_home_in_one_line_and_exits_1(home: Path) -> None:
    # Another scheduler's lock, really held: serve must refuse before it listens or builds.
    lock = HomeLock(Settings().lock_file)
    lock.acquire()
    try:
        result = runner.invoke(app, ["serve"])
    finally:
        lock.release()

    assert result.exit_code == 1
    assert "already running" in result.output
    assert "Traceback" not in result.output


def test_an_invalid_setting_exits_2_naming_the_variable(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REYNOLDS_PORT", "not-a-port")

    result = runner.invoke(app, ["status"])

    assert result.exit_code == 2
    assert "REYNOLDS_PORT" in result.output


def test_health_format_json_prints_the_report_alone(home: Path) -> None:
    result = runner.invoke(app, ["health", "--format", "json"])

    assert result.exit_code == 1
    body = json.loads(result.stdout)["health_check"]
    assert body["summary"]["overall_status"] == "unhealthy"


class FakeServer:
    """Answers orchestrate_task with `first`, then GET /tasks/{id} with each of `then`."""

    def __init__(self, first: dict[str, Any], *then: dict[str, Any]) -> None:
        self.first, self.then = first, list(then)
        self.arguments: dict[str, Any] = {}

    def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        assert name == "orchestrate_task"
        self.arguments = arguments
        return self.first

    def task(self, task_id: str) -> dict[str, Any]:
        return self.then.pop(0)


def fake_server(monkeypatch: pytest.MonkeyPatch, server: FakeServer) -> FakeServer:
    monkeypatch.setattr(ReynoldsClient, "call_tool", server.call_tool)
    monkeypatch.setattr(ReynoldsClient, "task", server.task)
    monkeypatch.setattr(orchestrate, "POLL_S", 0.0)
    return server


def write_task(home: Path) -> str:
    path = home.parent / "task.yaml"
    path.write_text("type: development\ncomponents: [a]\n", encoding="utf-8")
    return str(path)


def test_a_planned_task_prints_its_message_and_exits_3(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planned = {"taskId": "t1", "status": "planned", "message": "add steps", "plan": {}}
    server = fake_server(monkeypatch, FakeServer(planned))

    result = runner.invoke(app, ["orchestrate", write_task(home), "--max-concurrency", "2"])

    assert result.exit_code == 3
    assert "add steps" in result.output
    assert server.arguments["wait"] is False
    assert server.arguments["strategy"] == {"maxConcurrency": 2}


def test_a_refused_resubmission_prints_why_and_exits_4_and_force_is_passed_on(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = {
        "taskId": None,
        "status": "loop_blocked",
        "message": "Not run: the same task ended failed the same way 3 times in a row",
        "loop": {"detector": "resubmission", "confidence": 0.999, "evidence": {"count": 3}},
    }
    server = fake_server(monkeypatch, FakeServer(refused))

    result = runner.invoke(app, ["orchestrate", write_task(home), "--force"])

    assert result.exit_code == 4
    assert "the same way 3 times" in result.output
    assert server.arguments["force"] is True


@pytest.mark.parametrize(
    ("status", "code"), [("succeeded", 0), ("failed", 1), ("cancelled", 1), ("loop_blocked", 4)]
)
def test_waiting_ends_with_the_exit_code_of_the_final_status(
    home: Path, monkeypatch: pytest.MonkeyPatch, status: str, code: int
) -> None:
    running = {"taskId": "t1", "status": "running", "subtasks": []}
    final = {"taskId": "t1", "status": status, "subtasks": [], "metrics": {"speedup": 2.0}}
    fake_server(monkeypatch, FakeServer(running, running, final))

    result = runner.invoke(app, ["orchestrate", write_task(home)])

    assert result.exit_code == code
    assert f"Task t1: {status}" in result.output


def test_json_output_is_the_final_result_alone(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    final = {"taskId": "t1", "status": "succeeded", "subtasks": []}
    fake_server(monkeypatch, FakeServer({"taskId": "t1", "status": "pending"}, final))

    result = runner.invoke(app, ["orchestrate", write_task(home), "--json"])

    assert result.exit_code == 0
    assert json.loads(result.stdout) == final


def test_no_wait_returns_at_once_with_how_to_follow(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_server(monkeypatch, FakeServer({"taskId": "t1", "status": "pending"}))

    result = runner.invoke(app, ["orchestrate", write_task(home), "--no-wait"])

    assert result.exit_code == 0
    assert "reynolds tasks show t1" in result.output


def test_interrupting_the_watch_says_how_to_cancel(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(_client: object, task_id: str) -> dict[str, Any]:
        raise KeyboardInterrupt

    fake_server(monkeypatch, FakeServer({"taskId": "t1", "status": "running"}))
    monkeypatch.setattr(ReynoldsClient, "task", interrupted)

    result = runner.invoke(app, ["orchestrate", write_task(home)])

    assert result.exit_code == 130
    assert "reynolds tasks cancel t1" in result.output


def test_patterns_with_nothing_failed_says_so_and_asks_for_the_patterns_resource(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def resource(_client: object, name: str) -> dict[str, Any]:
        asked.append(name)
        return {"patterns": [], "failurePatterns": [], "window": 0}

    monkeypatch.setattr(ReynoldsClient, "resource", resource)

    result = runner.invoke(app, ["patterns"])

    assert result.exit_code == 0
    assert asked == ["patterns"]
    assert "No failure patterns" in result.output
