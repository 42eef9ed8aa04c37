"""The HTTP API in-process: contract shapes, errors that name the field, limits."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reynolds.entrypoints.http import create_app
from reynolds.settings import Settings


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path / "home", secrets_dir=tmp_path / "secrets")
    with TestClient(create_app(settings), base_url=settings.base_url) as c:
        yield c


def call(client: TestClient, tool: str, **arguments: Any) -> Any:
    return client.post(f"/mcp/tools/{tool}", json={"arguments": arguments})


def shell_task(*argv: str, **task: Any) -> dict[str, Any]:
    return {
        "type": "x",
        "steps": [{"name": "s", "action": {"kind": "shell", "argv": list(argv)}}],
        **task,
    }


def test_health_is_healthy_on_a_fresh_server(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "healthy"
    assert set(r.json()["checks"]) >= {"store", "pools"}


def test_orchestrate_with_wait_returns_the_contract_result(client: TestClient) -> None:
    r = call(
        client,
        "orchestrate_task",
        task=shell_task("echo", "{component}", components=["a", "b"]),
        strategy={"approach": "parallel_optimized", "maxConcurrency": 2},
        wait=True,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["isError"] is False
    result = body["structuredContent"]
    assert set(result) >= {
        "success",
        "taskId",
        "status",
        "plan",
        "subtasks",
        "results",
        "metrics",
        "reynoldsComment",
        "timestamp",
    }
    assert result["success"] and result["status"] == "succeeded"
    assert sorted(s["output"].strip() for s in result["subtasks"]) == ["a", "b"]
    assert set(result["plan"]) >= {
        "strategy",
        "parallelGroups",
        "criticalPath",
        "estimatedSequentialSeconds",
        "estimatedParallelSeconds",
        "estimatedSpeedup",
    }
    assert set(result["metrics"]) >= {
        "makespanSeconds",
        "sequentialSeconds",
        "speedup",
        "parallelExecutionRatio",
        "orchestrationOverhead",
        "successRate",
    }
    sub = result["subtasks"][0]
    assert set(sub) >= {
        "id",
        "component",
        "step",
        "agentType",
        "dependsOn",
        "status",
        "attempts",
        "exitCode",
        "output",
        "error",
        "startedAt",
        "finishedAt",
    }
    assert sub["startedAt"].endswith("Z")


def test_a_failed_task_is_a_successful_call_with_success_false(client: TestClient) -> None:
    r = call(client, "orchestrate_task", task=shell_task("false"), wait=True)
    assert r.status_code == 200
    assert r.json()["structuredContent"]["success"] is False


def test_invalid_arguments_get_422_naming_each_field(client: TestClient) -> None:
    r = call(
        client,
        "orchestrate_task",
        task={
            "type": "x",
            "steps": [{"name": "s", "action": {"kind": "shell", "argv": "not-a-list"}}],
        },
        strategy={"maxConcurrency": 0},
    )
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert "arguments.task.steps.0.action.shell.argv" in fields
    assert "arguments.strategy.maxConcurrency" in fields


def test_an_unknown_action_kind_gets_422(client: TestClient) -> None:
    r = call(
        client,
        "orchestrate_task",
        task={"type": "x", "steps": [{"name": "s", "action": {"kind": "teleport"}}]},
    )
    assert r.status_code == 422


def test_a_cycle_is_refused_with_422_naming_it(client: TestClient) -> None:
    r = call(
        client,
        "orchestrate_task",
        task={
            "type": "x",
            "subtasks": [
                {"id": "a", "dependsOn": ["b"], "action": {"kind": "shell", "argv": ["true"]}},
                {"id": "b", "dependsOn": ["a"], "action": {"kind": "shell", "argv": ["true"]}},
            ],
        },
    )
    assert r.status_code == 422
    assert r.json()["cycle"] == ["a", "b", "a"] or r.json()["cycle"] == ["b", "a", "b"]


def test_a_dangling_dependency_is_refused_with_422(client: TestClient) -> None:
    r = call(
        client,
        "orchestrate_task",
        task={
            "type": "x",
            "subtasks": [
                {"id": "a", "dependsOn": ["ghost"], "action": {"kind": "shell", "argv": ["true"]}}
            ],
        },
    )
    assert r.status_code == 422 and "ghost" in r.json()["error"]


def test_malformed_json_gets_422_not_500(client: TestClient) -> None:
    r = client.post(
        "/mcp/tools/orchestrate_task",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422


def test_an_unknown_tool_gets_404_listing_the_tools(client: TestClient) -> None:
    r = call(client, "summon_kraken")
    assert r.status_code == 404
    assert "orchestrate_task" in r.json()["availableTools"]


def test_a_body_over_one_mebibyte_gets_413(client: TestClient) -> None:
    r = client.post(
        "/mcp/tools/orchestrate_task",
        content=b"x" * (2 * 1024 * 1024),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413


def test_unknown_tasks_get_404_and_ended_tasks_cannot_be_cancelled(client: TestClient) -> None:
    assert client.get("/tasks/nope").status_code == 404
    assert client.post("/tasks/nope/cancel", json={}).status_code == 404
    done = call(client, "orchestrate_task", task=shell_task("true"), wait=True).json()
    task_id = done["structuredContent"]["taskId"]
    r = client.post(f"/tasks/{task_id}/cancel", json={})
    assert r.status_code == 409


def test_a_pattern_task_without_an_executor_is_planned_with_a_message(client: TestClient) -> None:
    r = call(client, "orchestrate_task", task={"type": "db-migration", "components": ["a", "b"]})
    result = r.json()["structuredContent"]
    assert result["status"] == "planned"
    assert "executor" in result["message"]
    assert result["plan"]["parallelGroups"] == [["migrate:a", "migrate:b"], ["validate"]]


def test_tasks_are_listed_newest_first_and_shown(client: TestClient) -> None:
    first = call(client, "orchestrate_task", task=shell_task("true"), wait=True).json()
    second = call(client, "orchestrate_task", task=shell_task("true"), wait=True).json()
    listed = client.get("/tasks").json()["tasks"]
    ids = [t["taskId"] for t in listed]
    assert ids[:2] == [second["structuredContent"]["taskId"], first["structuredContent"]["taskId"]]
    assert listed[0]["subtaskCounts"] == {"succeeded": 1}
    shown = client.get(f"/tasks/{ids[0]}").json()
    assert shown["status"] == "succeeded"
    assert client.get("/tasks?status=bogus").status_code == 422


def test_analyze_returns_the_contract_fields_from_the_planner(client: TestClient) -> None:
    task = shell_task("sleep", "1", components=[f"c{i}" for i in range(17)])
    task["steps"][0]["estimatedSeconds"] = 1
    r = call(
        client,
        "analyze_orchestration_potential",
        task=task,
        strategy={"approach": "parallel_optimized", "maxConcurrency": 5},
    )
    a = r.json()["structuredContent"]
    assert a["shouldOrchestrate"] is True
    assert (a["estimatedSequentialSeconds"], a["estimatedParallelSeconds"]) == (17, 4)
    assert a["independentComponents"] == 17 and a["dependencyDepth"] == 1
    assert a["recommendation"] and a["reynoldsAdvice"] and a["signals"]


def test_agent_status_shows_the_three_pools_as_configured(client: TestClient) -> None:
    r = call(client, "get_agent_status", agentType="all").json()["structuredContent"]
    pools = {p["type"]: p for p in r["pools"]}
    assert {
        k: (p["name"], p["replicas"], p["minReplicas"], p["maxReplicas"]) for k, p in pools.items()
    } == {
        "devops": ("devops-polyglot", 3, 1, 5),
        "platform": ("platform-specialist", 2, 1, 3),
        "code": ("code-intelligence", 3, 1, 5),
    }
    assert r["summary"]["totalAgents"] == 8
    only = call(client, "get_agent_status", agentType="code-agent").json()["structuredContent"]
    assert [p["type"] for p in only["pools"]] == ["code"]


def test_scale_agents_sets_replicas_and_refuses_a_count_above_the_max_with_422(
    client: TestClient,
) -> None:
    r = call(client, "scale_agents", agentType="devops-agent", replicas=4)
    assert r.status_code == 200, r.text
    assert r.json()["structuredContent"]["pool"]["replicas"] == 4
    too_many = call(client, "scale_agents", agentType="devops", replicas=6)
    assert too_many.status_code == 422
    assert "at most 5" in too_many.json()["error"]
    status = call(client, "get_agent_status", agentType="devops").json()["structuredContent"]
    assert status["pools"][0]["replicas"] == 4
    assert status["recentScaling"][0]["to"] == 4
    assert status["recentScaling"][0]["source"] == "manual"


def test_task_detail_shows_each_subtasks_routing_decision(client: TestClient) -> None:
    done = call(client, "orchestrate_task", task=shell_task("true"), wait=True).json()
    detail = client.get(f"/tasks/{done['structuredContent']['taskId']}").json()
    routing = detail["subtasks"][0]["routing"]
    assert routing["pool"] == detail["subtasks"][0]["agentType"]
    assert routing["selection"] == "least_busy" and routing["scores"]


def test_wisdom_reads_the_situation_and_suggests_a_simulated_strategy(
    client: TestClient,
) -> None:
    r = call(client, "get_reynolds_wisdom", situation="9 services to roll out by friday")
    assert r.status_code == 200, r.text
    wise = r.json()["structuredContent"]
    assert wise["reading"]["items"] == 9 and "deadline" in wise["reading"]["signals"]
    assert wise["suggestedStrategy"]["maxConcurrency"] > 1
    assert any("deadline" in line for line in wise["practicalAdvice"])


def test_an_experiment_is_run_stored_and_read_back(client: TestClient) -> None:
    scenario = {
        "name": "how wide",
        "task": {**shell_task("true"), "components": ["a", "b", "c", "d"]},
        "strategies": [
            {"name": "one", "approach": "direct"},
            {"name": "four", "maxConcurrency": 4},
        ],
        "seed": 1,
    }
    r = call(client, "run_experiment", scenario=scenario)
    assert r.status_code == 200, r.text
    report = r.json()["structuredContent"]
    assert [v["name"] for v in report["variants"]] == ["one", "four"]
    assert report["winner"] == "four"
    assert client.get(f"/experiments/{report['experimentId']}").json() == report
    listed = client.get("/experiments").json()["experiments"]
    assert [e["experimentId"] for e in listed] == [report["experimentId"]]
    resource = client.get("/mcp/resources/experiments").json()
    assert resource["experiments"] == listed
    png = client.get(f"/experiments/{report['experimentId']}/report.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert client.get("/experiments/nope").status_code == 404
    assert client.get("/experiments/nope/report.png").status_code == 404
    assert client.get("/experiments?limit=0").status_code == 422
    executed = call(client, "run_experiment", scenario={**scenario, "mode": "execute"}).json()
    running = executed["structuredContent"]
    assert running["status"] == "running" and running["progress"]["total"] == 10
    stopped = client.post(f"/experiments/{running['experimentId']}/cancel", json={})
    assert stopped.status_code in (200, 409)  # 409: it had already finished
    assert client.post("/experiments/nope/cancel", json={}).status_code == 404


def test_metrics_expose_the_contract_names(client: TestClient) -> None:
    call(client, "orchestrate_task", task=shell_task("true"), wait=True)
    text = client.get("/metrics").text
    for name in (
        "reynolds_tasks_total",
        "reynolds_subtasks_total",
        "reynolds_subtask_duration_seconds",
        "reynolds_agent_replicas",
        "reynolds_agent_utilization",
        "reynolds_queue_depth",
        "reynolds_parallel_execution_ratio",
        "reynolds_orchestration_overhead_ratio",
        "reynolds_http_request_duration_seconds",
    ):
        assert name in text, name
    assert 'reynolds_tasks_total{status="succeeded"} 1.0' in text


def test_tools_and_capabilities_are_listed(client: TestClient) -> None:
    tools = {t["name"]: t for t in client.get("/mcp/tools").json()}
    assert {
        "orchestrate_task",
        "analyze_orchestration_potential",
        "get_task_status",
        "cancel_task",
        "list_tasks",
        "get_agent_status",
    } <= set(tools)
    assert "task" in tools["orchestrate_task"]["inputSchema"]["properties"]
    caps = client.get("/mcp/capabilities").json()
    assert set(caps) == {"capabilities", "protocolVersion", "serverInfo"}


def test_with_a_token_set_everything_but_health_needs_it(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", api_token="s3cret", secrets_dir=tmp_path / "s")
    with TestClient(create_app(settings), base_url=settings.base_url) as c:
        assert c.get("/health").status_code == 200
        for path in ("/status", "/metrics", "/mcp/tools", "/tasks"):
            r = c.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/status", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def read_events(client: TestClient, path: str) -> list[tuple[str, dict[str, Any]]]:
    """The stream's events up to and including `end`."""
    events: list[tuple[str, dict[str, Any]]] = []
    kind = ""
    with client.stream("GET", path) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
                if kind == "end":
                    break
    return events


def test_task_events_start_with_the_state_then_stream_live_until_the_end(
    client: TestClient,
) -> None:
    nap = [sys.executable, "-c", "import time; time.sleep(0.3)"]
    task = shell_task(*nap, components=["a", "b", "c"])
    submitted = call(client, "orchestrate_task", task=task, strategy={"maxConcurrency": 1}).json()
    task_id = submitted["structuredContent"]["taskId"]
    events = read_events(client, f"/tasks/{task_id}/events")
    kinds = [k for k, _ in events]
    assert kinds[0] == "snapshot" and kinds[-1] == "end"
    assert events[0][1]["taskId"] == task_id
    assert kinds.count("subtask_finished") >= 2  # joined mid-task at the latest
    assert "task_finished" in kinds
    seqs = [d["seq"] for k, d in events if k not in ("snapshot", "end")]
    assert seqs == sorted(seqs)


def test_events_of_an_ended_task_are_its_state_and_the_end(client: TestClient) -> None:
    done = call(client, "orchestrate_task", task=shell_task("true"), wait=True).json()
    task_id = done["structuredContent"]["taskId"]
    events = read_events(client, f"/tasks/{task_id}/events")
    assert [k for k, _ in events] == ["snapshot", "end"]
    assert events[0][1]["status"] == "succeeded"
    assert client.get("/tasks/nope/events").status_code == 404


def test_a_workspace_outside_the_allowed_repositories_is_refused_with_422(
    client: TestClient, tmp_path: Path
) -> None:
    r = call(
        client,
        "orchestrate_task",
        task={
            "type": "x",
            "subtasks": [{"id": "a", "action": {"kind": "shell", "argv": ["true"]}}],
            "workspace": {"repo": str(tmp_path), "merge": {"into": "merged"}},
        },
    )
    assert r.status_code == 422
    assert r.json()["field"] == "task.workspace.repo"
    assert "REYNOLDS_WORKSPACE_REPOS" in r.json()["error"]
    assert client.get("/tasks").json()["tasks"] == []
