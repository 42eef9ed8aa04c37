"""The CLI's pure parts: task files, flag overrides, the health report, error translation."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from reynolds.entrypoints.cli import health
from reynolds.entrypoints.cli.client import (
    ApiError,
    Health,
    ReynoldsClient,
    ServerUnreachable,
    api_error_from,
)
from reynolds.entrypoints.cli.health import CheckResult
from reynolds.entrypoints.cli.lifecycle import process_alive, read_pid, tail_lines
from reynolds.entrypoints.cli.taskfile import (
    Approach,
    TaskFileError,
    parse_task_document,
    read_task_file,
    with_overrides,
)

TASK = {"type": "development", "components": ["a"]}


# --- task files -----------------------------------------------------------------------------


def test_a_json_task_object_becomes_the_task_argument(tmp_path: Path) -> None:
    path = tmp_path / "task.json"
    path.write_text(json.dumps(TASK), encoding="utf-8")

    assert read_task_file(str(path), io.StringIO()) == {"task": TASK}


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".YAML"])
def test_a_yaml_wrapper_gives_task_and_strategy(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"task{suffix}"
    path.write_text(
        "task:\n  type: development\n  components: [a]\nstrategy:\n  approach: direct\n",
        encoding="utf-8",
    )

    assert read_task_file(str(path), io.StringIO()) == {
        "task": TASK,
        "strategy": {"approach": "direct"},
    }


def test_dash_reads_json_or_yaml_from_standard_input() -> None:
    assert read_task_file("-", io.StringIO(json.dumps(TASK))) == {"task": TASK}
    assert read_task_file("-", io.StringIO("type: development\ncomponents: [a]\n")) == {
        "task": TASK
    }


def test_yaml_dates_become_iso_strings() -> None:
    arguments = parse_task_document("type: x\ndeadline: 2030-01-02T03:04:05Z\n", "yaml")

    assert arguments["task"]["deadline"] == "2030-01-02T03:04:05+00:00"


def test_an_unknown_extension_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "task.txt"
    path.write_text(json.dumps(TASK), encoding="utf-8")

    with pytest.raises(TaskFileError, match=r"\.json, \.yaml or \.yml"):
        read_task_file(str(path), io.StringIO())


def test_a_missing_file_is_a_task_file_error(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match="No such file"):
        read_task_file(str(tmp_path / "absent.yaml"), io.StringIO())


def test_broken_yaml_names_the_line() -> None:
    with pytest.raises(TaskFileError, match=r"not valid YAML: line 2, column 9: mapping values"):
        parse_task_document("type: x\nsteps: a: b\n", "yaml")


def test_broken_json_names_the_line_and_column() -> None:
    with pytest.raises(TaskFileError, match=r"not valid JSON: line 1, column 2"):
        parse_task_document("{,}", "json")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[1, 2]", "expected a mapping, got a list"),
        ("", "expected a mapping, got nothing"),
        ("description: no type\n", "expected a task"),
        ("task: {type: x}\nwait: true\n", "unexpected key"),
        ("task: {type: x}\nstrategy: fast\n", "strategy must be a mapping"),
    ],
)
def test_documents_that_hold_no_task_are_refused(document: str, message: str) -> None:
    with pytest.raises(TaskFileError, match=message):
        parse_task_document(document, "yaml")


def test_flags_override_the_files_strategy_without_touching_it() -> None:
    arguments = {"task": TASK, "strategy": {"approach": "direct", "max_concurrency": 2}}

    overridden = with_overrides(arguments, approach=Approach.PARALLEL_URGENT, max_concurrency=7)

    assert overridden["strategy"] == {"approach": "parallel_urgent", "maxConcurrency": 7}
    assert arguments["strategy"] == {"approach": "direct", "max_concurrency": 2}


def test_a_flag_alone_creates_the_strategy() -> None:
    assert with_overrides({"task": TASK}, max_concurrency=3) == {
        "task": TASK,
        "strategy": {"maxConcurrency": 3},
    }


def test_without_flags_the_arguments_are_unchanged() -> None:
    arguments = {"task": TASK, "strategy": {"approach": "direct"}}

    assert with_overrides(arguments) == arguments


# --- health report -------------------------------------------------------------------------


def check(status: health.Verdict, name: str = "x") -> CheckResult:
    return CheckResult(name, status, "message", {}, f"fix {name}")


@pytest.mark.parametrize(
    ("verdicts", "overall", "code"),
    [
        (["pass", "pass"], "healthy", 0),
        (["pass", "warn"], "warning", 2),
        (["warn", "fail"], "unhealthy", 1),
        (["fail"], "unhealthy", 1),
    ],
)
def test_the_worst_check_decides_the_verdict_and_exit_code(
    verdicts: list[health.Verdict], overall: str, code: int
) -> None:
    results = [check(v, f"c{i}") for i, v in enumerate(verdicts)]

    assert health.overall_status(results) == overall
    assert health.exit_code(results) == code


def test_the_report_has_exactly_the_documented_shape() -> None:
    results = [check("pass", "server"), check("warn", "pool"), check("fail", "store")]
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

    report = health.build_report(results, timestamp=when, duration_s=0.12345)

    body = report["health_check"]
    assert set(report) == {"health_check"}
    assert set(body) == {"timestamp", "duration_seconds", "summary", "results", "recommendations"}
    assert body["timestamp"] == "2030-01-02T03:04:05Z"
    assert body["duration_seconds"] == 0.123
    assert body["summary"] == {
        "total_checks": 3,
        "passed": 1,
        "warnings": 1,
        "failed": 1,
        "overall_status": "unhealthy",
    }
    assert [r["check"] for r in body["results"]] == ["server", "pool", "store"]
    assert body["recommendations"] == ["fix pool", "fix store"]
    json.dumps(report)


def test_health_checks_are_read_from_words_bools_and_mappings() -> None:
    body = {
        "status": "healthy",
        "checks": {
            "store": {"status": "ok", "latencyMs": 1.5, "url": "postgresql://u:pw@db/x"},
            "cache": True,
            "scheduler": "degraded",
            "pools": {"devops": "ok", "code": {"ok": False, "message": "no replicas"}},
        },
    }

    results = {r.check: r for r in health.checks_from_health_body(body)}

    assert {name: r.status for name, r in results.items()} == {
        "store": "pass",
        "cache": "pass",
        "scheduler": "warn",
        "pools.devops": "pass",
        "pools.code": "fail",
    }
    assert results["store"].details == {"latencyMs": 1.5, "url": "postgresql://u:***@db/x"}
    assert results["pools.code"].message == "no replicas"
    assert results["pools.code"].recommendation is not None


def test_an_unhealthy_answer_fails_the_server_check_naming_the_failing_checks() -> None:
    answer = Health(503, {"status": "unhealthy", "checks": {"store": "down", "cache": "ok"}})

    result = health.server_check(answer, "http://127.0.0.1:1")

    assert result.status == "fail"
    assert "store" in result.message
    assert "cache" not in result.message


def test_a_servers_warning_keeps_its_recommendation() -> None:
    body = {
        "checks": {
            "pools": {
                "devops": {"status": "warn", "message": "circuit breaker open",
                           "recommendation": "Read why", "breaker": "open"},
                "code": {"status": "ok", "message": "2 replicas", "breaker": "closed"},
            }
        }
    }  # fmt: skip

    results = {r.check: r for r in health.checks_from_health_body(body)}

    assert (results["pools.devops"].status, results["pools.code"].status) == ("warn", "pass")
    assert results["pools.devops"].recommendation == "Read why"
    assert results["pools.devops"].details == {"breaker": "open"}
    assert health.exit_code(list(results.values())) == 2


def test_the_text_report_lists_checks_summary_and_recommendations() -> None:
    report = health.build_report(
        [check("pass", "server"), check("fail", "store")],
        timestamp=datetime(2030, 1, 2, tzinfo=UTC),
        duration_s=0.5,
    )

    text = health.render_text(report)

    assert "[PASS] server: message" in text
    assert "[FAIL] store: message" in text
    assert "1 passed, 0 warnings, 1 failed: unhealthy" in text
    assert "  - fix store" in text


def test_report_files_are_named_by_local_time_and_format(tmp_path: Path) -> None:
    when = datetime(2030, 1, 2, 3, 4, 5)

    assert health.report_path(tmp_path, when, "json").name == "health-report-20300102-030405.json"
    assert health.report_path(tmp_path, when, "text").name == "health-report-20300102-030405.txt"


def test_checks_against_an_absent_server_fail_with_the_start_hint() -> None:
    client = ReynoldsClient("http://127.0.0.1:9", transport=refusing_transport())

    results = health.run_checks(client)

    assert [r.status for r in results] == ["fail", "fail"]
    assert health.recommendations(results) == [health.START_HINT]


# --- client ---------------------------------------------------------------------------------


def refusing_transport() -> httpx.MockTransport:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    return httpx.MockTransport(refuse)


def answering(status: int, body: Any, seen: list[httpx.Request] | None = None) -> ReynoldsClient:
    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, json=body)

    return ReynoldsClient("http://reynolds.test", "s3cret", transport=httpx.MockTransport(answer))


def test_a_422_carries_every_field_and_exits_2() -> None:
    response = httpx.Response(
        422,
        json={
            "error": "invalid arguments",
            "errors": [{"field": "task.type", "reason": "required"}],
        },
    )

    error = api_error_from(response)

    assert (error.message, error.exit_code) == ("invalid arguments", 2)
    assert [(f.field, f.reason) for f in error.fields] == [("task.type", "required")]


def test_a_401_says_how_to_give_the_token() -> None:
    error = api_error_from(httpx.Response(401, json={"error": "unauthorized"}))

    assert error.exit_code == 1
    assert "REYNOLDS_API_TOKEN" in error.message


def test_a_non_json_error_keeps_its_text() -> None:
    assert api_error_from(httpx.Response(502, text="Bad Gateway")).message == "Bad Gateway"


def test_a_refused_connection_says_reynolds_is_not_running() -> None:
    client = ReynoldsClient("http://127.0.0.1:9", transport=refusing_transport())

    with pytest.raises(ServerUnreachable, match=r"not running at http://127\.0\.0\.1:9"):
        client.status()


def test_tool_calls_send_the_token_and_return_the_structured_result() -> None:
    seen: list[httpx.Request] = []
    client = answering(200, {"content": [], "structuredContent": {"ok": 1}, "isError": False}, seen)

    assert client.call_tool("get_agent_status", {"agentType": "all"}) == {"ok": 1}
    assert seen[0].headers["Authorization"] == "Bearer s3cret"
    assert seen[0].url.path == "/mcp/tools/get_agent_status"
    assert json.loads(seen[0].content) == {"arguments": {"agentType": "all"}}


def test_a_tool_error_result_raises_with_its_text() -> None:
    client = answering(200, {"content": [{"type": "text", "text": "boom"}], "isError": True})

    with pytest.raises(ApiError, match="boom"):
        client.call_tool("cancel_task", {"taskId": "t"})


def test_task_ids_stay_one_path_segment() -> None:
    seen: list[httpx.Request] = []
    client = answering(200, {"taskId": "x"}, seen)

    client.task("../status")

    assert seen[0].url.raw_path == b"/tasks/..%2Fstatus"


# --- pid and log files -------------------------------------------------------------------------


def test_a_pid_file_without_a_number_reads_as_none(tmp_path: Path) -> None:
    (tmp_path / "reynolds.pid").write_text("garbage\n", encoding="utf-8")

    assert read_pid(tmp_path / "reynolds.pid") is None
    assert read_pid(tmp_path / "absent.pid") is None


def test_this_process_is_alive() -> None:
    assert process_alive(os.getpid())


def test_tail_reads_only_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(10_000)) + "unterminated", encoding="utf-8")

    assert tail_lines(log, 3, block_size=64) == ["line 9998\n", "line 9999\n", "unterminated\n"]
    assert tail_lines(log, 0) == []
