"""Hostile input over HTTP: every request ends as a 4xx JSON error, a `denied` subtask or
plain argv text — never a shell, never a 5xx — and the server stays healthy."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from mcp.client import Client
from mcp_types import CallToolResult

from reynolds.bootstrap import build
from reynolds.core import wire_values
from reynolds.entrypoints.http import create_app
from reynolds.entrypoints.mcp.in_process import InProcessHost
from reynolds.entrypoints.mcp.server import build_server
from reynolds.settings import Settings

TOKEN = "hostile-test-token-5e1f"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[TestClient]:
    """A server with a token and no rate limit; afterwards it must still be healthy, and the
    token must appear in no log line."""
    caplog.set_level(logging.DEBUG)
    settings = Settings(
        home=tmp_path / "home",
        secrets_dir=tmp_path / "secrets",
        api_token=TOKEN,
        rate_limit_per_s=0,
        personality="off",
    )
    with TestClient(create_app(settings), base_url=settings.base_url, headers=AUTH) as c:
        yield c
        health = c.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "healthy"
    assert TOKEN not in caplog.text


def orchestrate(client: TestClient, task: dict[str, Any], **options: Any) -> Any:
    return client.post(
        "/mcp/tools/orchestrate_task", json={"arguments": {"task": task, "wait": True, **options}}
    )


def one_step(action: dict[str, Any], **task: Any) -> dict[str, Any]:
    return {"type": "hostile", "steps": [{"name": "s", "action": action}], **task}


def assert_4xx_json(response: Any) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, response.text
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    assert TOKEN not in response.text
    return body


def result_of(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert TOKEN not in response.text
    result: dict[str, Any] = response.json()["structuredContent"]
    return result


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"arguments": ',
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'"just a string"',
        b'{"arguments": [1]}',
        b"[" * 200_000 + b"]" * 200_000,
        b'{"arguments": {"task": {"type": "x"}, "wait": "yes please"}}',
    ],
    ids=[
        "truncated",
        "unfinished",
        "not-utf8",
        "array",
        "string",
        "arguments-not-object",
        "nested-deeply",
        "wrong-type",
    ],
)
def test_malformed_bodies_get_a_4xx_json_error(client: TestClient, body: bytes) -> None:
    r = client.post(
        "/mcp/tools/orchestrate_task", content=body, headers={"content-type": "application/json"}
    )
    assert_4xx_json(r)


@pytest.mark.parametrize(
    "task",
    [
        {"type": 7, "steps": "many"},
        one_step({"kind": "teleport", "to": "mars"}),
        one_step({"kind": "shell", "argv": []}),
        one_step({"kind": "shell", "argv": "rm -rf /"}),
        one_step({"kind": "shell", "argv": ["echo", "nul\x00byte"]}),
        one_step({"kind": "shell", "argv": ["env"], "env": {"LD_PRELOAD": "/tmp/evil.so"}}),
        one_step({"kind": "shell", "argv": ["env"], "env": {"PATH": "/tmp"}}),
        one_step({"kind": "python", "callable": "os.system('id')"}),
        one_step({"kind": "http", "url": "file:///etc/passwd"}),
        {
            "type": "x",
            "subtasks": [
                {"id": "a", "dependsOn": ["ghost"], "action": {"kind": "shell", "argv": ["true"]}}
            ],
        },
        {
            "type": "x",
            "steps": [
                {"name": "a", "after": ["nowhere"], "action": {"kind": "shell", "argv": ["true"]}}
            ],
        },
    ],
    ids=[
        "wrong-types",
        "unknown-kind",
        "empty-argv",
        "argv-as-string",
        "nul-byte",
        "ld-preload",
        "path",
        "callable-expression",
        "file-url",
        "dangling-dependency",
        "dangling-after",
    ],
)
def test_impossible_tasks_are_refused_with_422_naming_the_problem(
    client: TestClient, task: dict[str, Any]
) -> None:
    r = orchestrate(client, task)
    assert r.status_code == 422, r.text
    assert_4xx_json(r)


def test_a_two_mebibyte_body_is_refused_with_413_before_parsing(client: TestClient) -> None:
    r = client.post(
        "/mcp/tools/orchestrate_task",
        content=b'{"arguments": {"task": "' + b"x" * (2 * 1024 * 1024) + b'"}}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert_4xx_json(r)


def test_a_two_mebibyte_body_without_a_length_is_refused_too(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(32):
            yield b"x" * (64 * 1024)

    json_type = {"Content-Type": "application/json"}
    r = client.post("/mcp/tools/orchestrate_task", content=chunks(), headers=json_type)
    assert r.status_code == 413


def test_shell_metacharacters_in_components_stay_plain_argv_text(
    client: TestClient, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    components = [
        f"a; touch {marker}-semicolon",
        f"$(touch {marker}-dollar)",
        f"`touch {marker}-backtick`",
        f"x && touch {marker}-and | cat > {marker}-pipe",
    ]
    result = result_of(
        orchestrate(
            client,
            one_step({"kind": "shell", "argv": ["echo", "{component}"]}, components=components),
        )
    )
    assert result["status"] == "succeeded"
    assert sorted(s["output"].rstrip("\n") for s in result["subtasks"]) == sorted(components)
    assert list(tmp_path.glob("pwned*")) == []


def test_a_component_that_would_become_an_option_is_denied(client: TestClient) -> None:
    result = result_of(
        orchestrate(
            client,
            one_step(
                {"kind": "shell", "argv": ["echo", "{component}"]}, components=["--output=/etc/x"]
            ),
        )
    )
    (sub,) = result["subtasks"]
    assert sub["status"] == "failed"
    assert "read as an option" in sub["error"]
    assert sub["exitCode"] is None  # nothing ran


def test_a_python_action_naming_os_system_is_denied(client: TestClient) -> None:
    result = result_of(
        orchestrate(
            client,
            one_step({"kind": "python", "callable": "os:system", "kwargs": {"command": "id"}}),
        )
    )
    (sub,) = result["subtasks"]
    assert sub["status"] == "failed"
    assert "not declared" in sub["error"]


@pytest.mark.parametrize(
    "url",
    ["http://192.0.2.1/", "http://169.254.169.254/latest/meta-data/", "https://example.invalid/x"],
)
def test_an_http_action_to_another_host_is_denied_before_connecting(
    client: TestClient, url: str
) -> None:
    # 192.0.2.0/24 is TEST-NET-1 and .invalid never resolves: nothing can leave the machine
    # even if the check failed, and the check runs before any connection.
    result = result_of(orchestrate(client, one_step({"kind": "http", "url": url})))
    (sub,) = result["subtasks"]
    assert sub["status"] == "failed"
    assert "not permitted" in sub["error"]


@pytest.mark.parametrize("cwd", ["../..", "/etc", "sub/../../.."])
def test_a_cwd_outside_the_workspace_is_denied(client: TestClient, cwd: str) -> None:
    result = result_of(
        orchestrate(client, one_step({"kind": "shell", "argv": ["pwd"], "cwd": cwd}))
    )
    (sub,) = result["subtasks"]
    assert sub["status"] == "failed"
    assert "outside the workspace" in sub["error"]


def test_hostile_paths_and_queries_get_4xx_json(client: TestClient) -> None:
    for path in (
        "/tasks/..%2F..%2Fetc%2Fpasswd",
        "/tasks/%00",
        "/tasks/x/events",
        "/tasks?limit=-1",
        "/tasks?limit=abc",
        "/tasks?status=%27%3B%20DROP%20TABLE%20tasks",
        "/audit?since=%24%28id%29",
        "/audit?limit=0",
        "/mcp/resources/..%2F..%2Fetc%2Fpasswd",
    ):
        assert_4xx_json(client.get(path))
    assert_4xx_json(client.post("/mcp/tools/%3Bid", json={}))


def test_a_subprocess_sees_none_of_the_servers_secrets(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = result_of(
        orchestrate(
            client,
            one_step(
                {
                    "kind": "shell",
                    "argv": [sys.executable, "-c", "import os; print(sorted(os.environ))"],
                }
            ),
        )
    )
    (sub,) = result["subtasks"]
    assert sub["status"] == "succeeded"
    assert "REYNOLDS_API_TOKEN" not in sub["output"]
    assert TOKEN not in sub["output"]


def test_deeply_nested_arguments_are_refused_with_422_not_a_5xx(client: TestClient) -> None:
    nested: Any = "bottom"
    for _ in range(900):
        nested = {"k": nested}
    action = {"kind": "python", "callable": "os:getcwd", "kwargs": {"deep": nested}}
    r = orchestrate(client, one_step(action))
    assert r.status_code == 422
    assert "nested deeper" in assert_4xx_json(r)["error"]


def test_arguments_nested_to_the_limit_are_accepted(client: TestClient) -> None:
    nested: Any = "bottom"
    for _ in range(56):  # plus the levels of arguments, task, steps and action: 64
        nested = {"k": nested}
    action = {"kind": "python", "callable": "os:getcwd", "kwargs": {"deep": nested}}
    result = result_of(orchestrate(client, one_step(action)))
    assert result["subtasks"][0]["status"] == "failed"  # denied: not declared, but stored


NUL_REASON = "must not contain NUL (\\u0000)"


@pytest.mark.parametrize(
    ("task", "field"),
    [
        (
            one_step({"kind": "shell", "argv": ["echo", "{taskType}"]}, type="t\x00x"),
            "arguments.task.type",
        ),
        (
            {
                "type": "x",
                "subtasks": [
                    {
                        "id": "a",
                        "component": "c\x00",
                        "action": {"kind": "shell", "argv": ["echo", "{component}"]},
                    }
                ],
            },
            "arguments.task.subtasks.0.component",
        ),
        (
            one_step({"kind": "shell", "argv": ["env"], "env": {"A": "b\x00c"}}),
            "arguments.task.steps.0.action.env.A",
        ),
        (
            one_step({"kind": "shell", "argv": ["pwd"], "cwd": "sub\x00dir"}),
            "arguments.task.steps.0.action.cwd",
        ),
    ],
    ids=["type", "subtask-component", "env-value", "cwd"],
)
def test_nul_in_any_string_of_a_task_is_refused_with_422_naming_the_field(
    client: TestClient, task: dict[str, Any], field: str
) -> None:
    r = orchestrate(client, task)
    assert r.status_code == 422, r.text
    assert assert_4xx_json(r)["errors"] == [{"field": field, "reason": NUL_REASON}]
    assert client.get("/tasks").json()["tasks"] == []  # refused before anything was stored


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("get_task_status", {"taskId": "a\x00b"}, "arguments.taskId"),
        ("cancel_task", {"taskId": "a\x00b"}, "arguments.taskId"),
        ("get_agent_status", {"agentType": "code\x00"}, "arguments.agentType"),
        ("scale_agents", {"agentType": "code\x00", "replicas": 2}, "arguments.agentType"),
        ("run_experiment", {"scenario": {"na\x00me": "x"}}, "arguments.scenario.na\\u0000me"),
        (
            "analyze_orchestration_potential",
            {
                "task": one_step(
                    {"kind": "http", "url": "http://127.0.0.1/", "json": {"k": ["v\x00"]}}
                )
            },
            "arguments.task.steps.0.action.json.k.0",
        ),
    ],
    ids=["task-status", "cancel", "agent-status", "scale", "unbuilt-tool-key", "http-json"],
)
def test_nul_in_the_arguments_of_every_tool_is_refused_with_422_naming_the_field(
    client: TestClient, tool: str, arguments: dict[str, Any], field: str
) -> None:
    r = client.post(f"/mcp/tools/{tool}", json={"arguments": arguments})
    assert r.status_code == 422, r.text
    assert assert_4xx_json(r)["errors"] == [{"field": field, "reason": NUL_REASON}]


def call_over_mcp(settings: Settings, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    """One call through the MCP server of a fresh engine, in memory; afterwards the store must
    have committed every write (a flush raises when some were given up)."""

    async def scenario() -> CallToolResult:
        container = await build(settings)
        try:
            async with Client(build_server(InProcessHost(lambda: container))) as mcp:
                result = await mcp.call_tool(tool, arguments)
            await container.store.flush()
            return result
        finally:
            await container.aclose()

    return anyio.run(scenario)


def test_nul_over_mcp_is_an_error_result_naming_the_field(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", secrets_dir=tmp_path / "secrets")
    task = one_step({"kind": "shell", "argv": ["echo", "{taskType}"]}, type="t\x00x")
    result = call_over_mcp(settings, "orchestrate_task", {"task": task, "wait": True})
    assert result.is_error
    text = "".join(getattr(c, "text", "") for c in result.content)
    assert f"arguments.task.type: {NUL_REASON}" in text


@pytest.mark.parametrize("name", ["BASH_ENV", "ENV", "GCONV_PATH", "ld_preload"])
def test_a_start_up_variable_in_a_steps_env_is_refused_and_nothing_runs(
    client: TestClient, tmp_path: Path, name: str
) -> None:
    marker = tmp_path / "sourced"
    script = tmp_path / "startup.sh"
    script.write_text(f"touch {marker}\n", encoding="utf-8")
    action = {"kind": "shell", "argv": ["bash", "-c", "true"], "env": {name: str(script)}}
    r = orchestrate(client, one_step(action))
    assert r.status_code == 422, r.text
    (error,) = assert_4xx_json(r)["errors"]
    assert error["field"] == "arguments.task.steps.0.action.shell.env"
    assert error["reason"].startswith(f"{name} may not be set by a step: ")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"strategy": {"maxConcurrency": "5"}}, "arguments.strategy.maxConcurrency"),
        ({"strategy": {"maxConcurrency": True}}, "arguments.strategy.maxConcurrency"),
        ({"wait": "true"}, "arguments.wait"),
        ({"timeoutSeconds": "60"}, "arguments.timeoutSeconds"),
    ],
    ids=["max-concurrency-string", "max-concurrency-true", "wait-string", "timeout-string"],
)
def test_a_number_or_boolean_sent_as_another_json_type_is_refused_with_422(
    client: TestClient, arguments: dict[str, Any], field: str
) -> None:
    task = one_step({"kind": "shell", "argv": ["true"]})
    r = orchestrate(client, task, **arguments)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in assert_4xx_json(r)["errors"]] == [field]


def test_retries_sent_as_a_string_is_refused_with_422(client: TestClient) -> None:
    task = {
        "type": "x",
        "steps": [{"name": "s", "retries": "2", "action": {"kind": "shell", "argv": ["true"]}}],
    }
    r = orchestrate(client, task)
    assert r.status_code == 422, r.text
    fields = [e["field"] for e in assert_4xx_json(r)["errors"]]
    assert fields == ["arguments.task.steps.0.retries"]


def test_pools_are_not_scaled_by_a_count_or_a_flag_sent_as_a_string(client: TestClient) -> None:
    before = client.post("/mcp/tools/get_agent_status", json={"arguments": {}}).json()
    r = client.post(
        "/mcp/tools/scale_agents", json={"arguments": {"agentType": "code", "replicas": "1"}}
    )
    assert r.status_code == 422, r.text
    r = client.post("/mcp/tools/autoscale_agents", json={"arguments": {"dryRun": "false"}})
    assert r.status_code == 422, r.text
    after = client.post("/mcp/tools/get_agent_status", json={"arguments": {}}).json()
    replicas = [
        {p["type"]: p["replicas"] for p in s["structuredContent"]["pools"]} for s in (before, after)
    ]
    assert replicas[0] == replicas[1]


def test_query_parameters_stay_strings_read_as_numbers(client: TestClient) -> None:
    assert client.get("/tasks?limit=5").status_code == 200
    assert client.get("/audit?limit=5").status_code == 200


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (10**5000, "must be an integer from -9223372036854775808 to 9223372036854775807"),
        (2**63, "must be an integer from -9223372036854775808 to 9223372036854775807"),
        ("\ud800", "must be valid Unicode (a lone surrogate is not a character)"),
    ],
    ids=["10**5000", "2**63", "lone-surrogate"],
)
def test_a_free_form_value_json_or_the_store_cannot_hold_is_an_error_result_over_mcp(
    tmp_path: Path, value: Any, reason: str
) -> None:
    settings = Settings(home=tmp_path / "home", secrets_dir=tmp_path / "secrets")
    action = {"kind": "python", "callable": "os:getcwd", "kwargs": {"v": value}}
    result = call_over_mcp(settings, "orchestrate_task", {"task": one_step(action), "wait": True})
    assert result.is_error
    text = "".join(getattr(c, "text", "") for c in result.content)
    assert f"arguments.task.steps.0.action.kwargs.v: {reason}" in text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"arguments": {"n": ' + b"1" * 5000 + b"}}", "Exceeds the limit (4300 digits)"),
        (b'{"arguments": {"timeoutSeconds": NaN}}', "NaN is not JSON"),
        (b'{"arguments": {"timeoutSeconds": Infinity}}', "Infinity is not JSON"),
        (b'{"arguments": {"timeoutSeconds": -Infinity}}', "-Infinity is not JSON"),
    ],
    ids=["5000-digits", "nan", "infinity", "minus-infinity"],
)
def test_numbers_that_are_not_json_or_too_long_are_refused_as_the_body(
    client: TestClient, body: bytes, reason: str
) -> None:
    r = client.post(
        "/mcp/tools/orchestrate_task", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    (error,) = assert_4xx_json(r)["errors"]
    assert error["field"] == "(body)" and reason in error["reason"]


def test_a_refused_call_is_audited_without_making_the_store_give_up_writes(
    client: TestClient,
) -> None:
    r = client.post(
        "/mcp/tools/get_task_status",
        content=b'{"arguments": {"taskId": "\\ud800"}}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    audit = client.get("/audit")
    assert audit.status_code == 200, audit.text
    (record,) = [x for x in audit.json()["records"] if x["tool"] == "get_task_status"]
    assert record["decision"] == "rejected" and record["taskId"] == "\\ud800"


def test_an_unknown_tool_named_with_nul_is_audited_with_it_escaped(tmp_path: Path) -> None:
    tool = "no\x00such"
    settings = Settings(home=tmp_path / "home", secrets_dir=tmp_path / "secrets")
    result = call_over_mcp(settings, tool, {})
    assert result.is_error
    with TestClient(create_app(settings), base_url=settings.base_url) as c:
        records = c.get("/audit").json()["records"]
    assert [r["tool"] for r in records] == [wire_values.printable(tool)]


class _OddCharset(BaseHTTPRequestHandler):
    """Answers text in a charset whose decoder yields a lone surrogate and a NUL."""

    def do_GET(self) -> None:
        body = b"before \\ud800 \\x00 after"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=unicode_escape")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def odd_charset_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OddCharset)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join(10)


def test_an_answer_decoded_into_a_lone_surrogate_is_stored_without_losing_writes(
    client: TestClient, odd_charset_url: str
) -> None:
    result = result_of(orchestrate(client, one_step({"kind": "http", "url": odd_charset_url})))
    (sub,) = result["subtasks"]
    assert sub["status"] == "succeeded"
    assert sub["output"].startswith("before ") and sub["output"].endswith(" after")
    audit = client.get("/audit")  # flushes the store first: a batch given up makes it a 500
    assert audit.status_code == 200, audit.text
    assert [t["taskId"] for t in client.get("/tasks").json()["tasks"]] == [result["taskId"]]


@pytest.mark.parametrize("since", ["nan", "inf", "-inf", "1e400"])
def test_an_audit_since_that_is_no_time_gets_422(client: TestClient, since: str) -> None:
    r = client.get("/audit", params={"since": since})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in assert_4xx_json(r)["errors"]] == ["since"]
