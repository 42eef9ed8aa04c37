"""The audit log: one record per tool call and per action attempt, over HTTP and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cli_support import Server, output
from fastapi.testclient import TestClient

from reynolds.entrypoints.http import create_app
from reynolds.settings import Settings

TOKEN = "audit-test-token-93ab"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path / "home",
        secrets_dir=tmp_path / "secrets",
        api_token=TOKEN,
        personality="off",
    )
    with TestClient(
        create_app(settings),
        base_url=settings.base_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c


def orchestrate(client: TestClient, *steps: dict[str, Any], **task: Any) -> dict[str, Any]:
    r = client.post(
        "/mcp/tools/orchestrate_task",
        json={"arguments": {"task": {"type": "audit", "steps": list(steps), **task}, "wait": True}},
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()["structuredContent"]
    return result


def records(client: TestClient, query: str = "") -> list[dict[str, Any]]:
    r = client.get(f"/audit{query}")
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["records"]
    return found


def test_a_tool_call_and_its_action_each_leave_one_record(client: TestClient) -> None:
    step = {
        "name": "deploy",
        "action": {
            "kind": "shell",
            "argv": ["echo", "{component}", "--password=hunter2"],
            "env": {"DEPLOY_KEY": "do-not-record-me"},
        },
    }
    result = orchestrate(client, step, components=["web"])
    task_id = result["taskId"]

    found = records(client, f"?taskId={task_id}")
    tool = next(r for r in found if r["kind"] == "tool")
    action = next(r for r in found if r["kind"] == "action")
    assert len(found) == 2
    assert tool | {"at": None, "seq": None, "durationSeconds": None} == {
        "seq": None,
        "at": None,
        "kind": "tool",
        "tokenName": "default",
        "tool": "orchestrate_task",
        "actionKind": None,
        "pool": None,
        "taskId": task_id,
        "subtaskId": None,
        "attempt": None,
        "argv": None,
        "cwd": None,
        "envNames": None,
        "decision": "allowed",
        "outcome": "ok",
        "detail": None,
        "exitCode": None,
        "durationSeconds": None,
        "outputBytes": None,
    }
    assert action["tokenName"] == "default"
    assert action["actionKind"] == "shell"
    assert action["pool"] in {"devops", "platform", "code"}
    assert (action["subtaskId"], action["attempt"]) == ("deploy:web", 1)
    assert action["argv"] == ["echo", "web", "--password=***"]
    assert action["envNames"] == ["DEPLOY_KEY"]
    assert (action["decision"], action["outcome"], action["exitCode"]) == (
        "allowed",
        "succeeded",
        0,
    )
    assert action["outputBytes"] == len("web --password=hunter2\n")
    assert action["durationSeconds"] >= 0
    assert action["at"].endswith("Z")
    assert "hunter2" not in json.dumps(found) and "do-not-record-me" not in json.dumps(found)


def test_a_denied_action_records_the_decision_and_why(client: TestClient) -> None:
    result = orchestrate(
        client,
        {"name": "escape", "action": {"kind": "shell", "argv": ["pwd"], "cwd": "../.."}},
        {"name": "option", "action": {"kind": "shell", "argv": ["echo", "{component}"]}},
        components=["--output=/etc/x"],
    )
    found = {r["subtaskId"]: r for r in records(client, f"?taskId={result['taskId']}")}
    escape = found["escape:--output=/etc/x"]
    assert (escape["decision"], escape["outcome"]) == ("denied", "denied")
    assert "outside the workspace" in escape["detail"]
    assert escape["cwd"] == "../.."
    assert escape["exitCode"] is None
    option = found["option:--output=/etc/x"]
    assert option["decision"] == "denied"
    assert "read as an option" in option["detail"]
    assert option["argv"] == ["echo", "{component}"]  # refused before substitution


def test_every_attempt_of_a_retried_action_is_recorded(client: TestClient) -> None:
    result = orchestrate(
        client, {"name": "flaky", "retries": 2, "action": {"kind": "shell", "argv": ["false"]}}
    )
    attempts = [r for r in records(client, f"?taskId={result['taskId']}") if r["kind"] == "action"]
    assert [(r["attempt"], r["outcome"], r["exitCode"]) for r in attempts] == [
        (1, "exit", 1),
        (2, "exit", 1),
        (3, "exit", 1),
    ]


def test_refused_tool_calls_are_recorded_as_rejected(client: TestClient) -> None:
    bad = client.post(
        "/mcp/tools/orchestrate_task",
        json={"arguments": {"task": {"type": "x", "steps": "nope"}}},
    )
    assert bad.status_code == 422
    missing = client.post("/mcp/tools/get_task_status", json={"arguments": {"taskId": "nope"}})
    assert missing.status_code == 404
    tools = [r for r in records(client) if r["kind"] == "tool"]
    assert [(r["tool"], r["decision"], r["outcome"]) for r in tools][-2:] == [
        ("orchestrate_task", "rejected", "invalid_arguments"),
        ("get_task_status", "allowed", "not_found"),
    ]
    assert tools[-1]["taskId"] == "nope"


def test_since_and_limit_select_the_newest_records_oldest_first(client: TestClient) -> None:
    before = datetime.now(UTC).isoformat()
    for _ in range(3):
        client.post("/mcp/tools/list_tasks", json={"arguments": {}})
    newest = records(client, "?limit=2")
    assert len(newest) == 2 and newest[0]["seq"] < newest[1]["seq"]
    assert len(records(client, f"?since={before.replace('+00:00', 'Z')}")) == 3
    assert len(records(client, "?since=1h")) == 3
    assert records(client, "?since=2999-01-01T00:00:00Z") == []
    bad = client.get("/audit?since=yesterday")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "since"


def test_reynolds_audit_shows_a_tasks_records_as_a_table_and_as_json(
    live_server: Server,
) -> None:
    task = {
        "type": "development",
        "components": ["solo"],
        "steps": [
            {"name": "hello", "action": {"kind": "shell", "argv": ["echo", "token=s3cr3t"]}},
            {"name": "away", "action": {"kind": "shell", "argv": ["pwd"], "cwd": "../.."}},
        ],
    }
    run = live_server.run("orchestrate", "-", "--json", stdin=json.dumps(task))
    task_id = json.loads(run.stdout)["taskId"]

    table = live_server.run("audit", "--task", task_id)
    assert table.returncode == 0, output(table)
    assert "orchestrate_task" in table.stdout
    assert "echo token=***" in table.stdout
    assert "denied" in table.stdout and "outside the workspace" in table.stdout
    assert "s3cr3t" not in table.stdout

    as_json = live_server.run("audit", "--task", task_id, "--since", "10m", "--json")
    assert as_json.returncode == 0, output(as_json)
    found = json.loads(as_json.stdout)["records"]
    assert {r["taskId"] for r in found} == {task_id}
    assert sorted(r["decision"] for r in found if r["kind"] == "action") == ["allowed", "denied"]

    assert live_server.run("audit", "--since", "yesterday").returncode == 2


def pages(client: TestClient, query: str) -> list[list[dict[str, Any]]]:
    """Every page of `GET /audit?{query}`, following nextCursor until it is null."""
    found: list[list[dict[str, Any]]] = []
    cursor = None
    for _ in range(100):  # bounded: a cursor that never ends is a failure
        r = client.get(f"/audit?{query}" + (f"&cursor={cursor}" if cursor else ""))
        assert r.status_code == 200, r.text
        body = r.json()
        found.append(body["records"])
        cursor = body["nextCursor"]
        if cursor is None:
            return found
    raise AssertionError("nextCursor never became null")


def test_the_audit_is_read_a_page_at_a_time_back_from_the_newest(client: TestClient) -> None:
    for _ in range(5):
        client.post("/mcp/tools/list_tasks", json={"arguments": {}})
    everything = records(client, "?limit=1000")
    walked = pages(client, "limit=2")

    assert [len(p) for p in walked][:-1] == [2] * (len(walked) - 1)
    # Pages go back in time; each is oldest first, so their reverse is the whole log in order.
    assert [r["seq"] for p in reversed(walked) for r in p] == [r["seq"] for r in everything]
    assert [r["seq"] for r in walked[0]] == [r["seq"] for r in everything[-2:]]
    assert client.get("/audit").json()["nextCursor"] is None  # fewer than 100 records


def test_filters_hold_on_every_page(client: TestClient) -> None:
    # The same failure five times: loop prevention would stop it at the third.
    step = {
        "name": "flaky",
        "retries": 4,
        "loopPrevention": False,
        "action": {"kind": "shell", "argv": ["false"]},
    }
    task_id = orchestrate(client, step)["taskId"]
    client.post("/mcp/tools/list_tasks", json={"arguments": {}})

    walked = pages(client, f"taskId={task_id}&since=1h&limit=2")
    assert [len(p) for p in walked] == [2, 2, 2]  # five attempts and the call
    assert {r["taskId"] for p in walked for r in p} == {task_id}
    attempts = [r["attempt"] for p in reversed(walked) for r in p if r["kind"] == "action"]
    assert attempts == [1, 2, 3, 4, 5]


def test_a_page_holds_at_most_a_thousand_records_and_a_bad_cursor_is_refused(
    client: TestClient,
) -> None:
    assert client.get("/audit?limit=1000").status_code == 200
    over = client.get("/audit?limit=1001")
    assert over.status_code == 422 and "limit" in over.json()["errors"][0]["field"]
    for cursor in ("nope", "%00", "eHl6", "x" * 300):
        bad = client.get(f"/audit?cursor={cursor}")
        assert bad.status_code == 422, cursor
        assert bad.json()["errors"][0]["field"] == "cursor"


def test_reynolds_audit_reads_every_page_with_all_or_one_from_a_cursor(
    live_server: Server,
) -> None:
    task = {
        "type": "x",
        "steps": [
            {
                "name": "f",
                "retries": 3,
                "loopPrevention": False,
                "action": {"kind": "shell", "argv": ["false"]},
            }
        ],
    }
    run = live_server.run("orchestrate", "-", "--json", stdin=json.dumps(task))
    task_id = json.loads(run.stdout)["taskId"]

    first = live_server.run("audit", "--task", task_id, "--limit", "2", "--json")
    assert first.returncode == 0, output(first)
    page = json.loads(first.stdout)
    assert len(page["records"]) == 2 and page["nextCursor"]
    older = live_server.run(
        "audit", "--task", task_id, "--limit", "2", "--cursor", page["nextCursor"], "--json"
    )
    assert older.returncode == 0, output(older)
    assert len(json.loads(older.stdout)["records"]) == 2

    every = live_server.run("audit", "--task", task_id, "--limit", "2", "--all", "--json")
    assert every.returncode == 0, output(every)
    found = json.loads(every.stdout)
    assert found["nextCursor"] is None
    assert [r["attempt"] for r in found["records"] if r["kind"] == "action"] == [1, 2, 3, 4]
    assert len(found["records"]) == 5

    table = live_server.run("audit", "--task", task_id, "--limit", "2")
    assert table.returncode == 0 and "--cursor" in table.stdout, output(table)
    assert live_server.run("audit", "--limit", "1001").returncode == 2
    assert live_server.run("audit", "--cursor", "nope").returncode == 2
