"""MCP over Streamable HTTP at `/mcp`, with the official SDK client, against a real server.

The server runs in its own process (started with `reynolds start`), with a bearer token and
one extra allowed origin, so these tests also show that `/mcp` sits behind the token check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from cli_support import Server, make_server
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_support import (
    TOKEN,
    assert_agent_pools_resource_reads,
    assert_bad_calls_are_error_results_naming_the_problem,
    assert_every_listed_resource_reads,
    assert_tools_match_rest,
    assert_unknown_task_is_an_error_result,
    assert_waiting_orchestration_reports_progress,
    auth,
    http_session,
    rest_tools,
    run_bounded,
    start,
)
from mcp_types.version import LATEST_MODERN_VERSION

ASSISTANT_ORIGIN = "https://assistant.example"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "0"},
    },
}
MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}
REDIRECTS = {301, 302, 303, 307, 308}
TRUE_TASK = {"type": "x", "steps": [{"name": "s", "action": {"kind": "shell", "argv": ["true"]}}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = make_server(tmp_path_factory.mktemp("mcp-http"))
    start(
        server,
        REYNOLDS_API_TOKEN=TOKEN,
        REYNOLDS_ALLOWED_ORIGINS=f"{server.base_url},{ASSISTANT_ORIGIN}",
    )
    yield server
    server.run("stop")


@pytest.fixture
def mcp_url(server: Server) -> str:
    return f"{server.base_url}/mcp"


def post_initialize(url: str, headers: dict[str, str]) -> int:
    """The status of a raw `initialize` POST; a session it opened is closed again."""
    with httpx.stream(
        "POST", url, json=INITIALIZE, headers={**MCP_ACCEPT, **headers}, timeout=30.0
    ) as response:
        status = response.status_code
        session_id = response.headers.get("mcp-session-id")
    if session_id:
        httpx.delete(url, headers={**auth(), "Mcp-Session-Id": session_id}, timeout=10.0)
    return status


def test_tools_over_mcp_are_the_rest_tools_with_the_same_schemas(
    server: Server, mcp_url: str
) -> None:
    rest = rest_tools(server.base_url)

    async def scenario() -> None:
        async with http_session(mcp_url) as session:
            await assert_tools_match_rest(session, rest)

    run_bounded(scenario)


def test_a_waiting_orchestration_reports_increasing_progress_then_the_result(
    mcp_url: str,
) -> None:
    async def scenario() -> None:
        async with http_session(mcp_url) as session:
            await assert_waiting_orchestration_reports_progress(session)

    run_bounded(scenario)


def test_the_agent_pools_resource_reads_as_json(mcp_url: str) -> None:
    async def scenario() -> None:
        async with http_session(mcp_url) as session:
            await assert_agent_pools_resource_reads(session)

    run_bounded(scenario)


def test_an_unknown_task_id_is_an_error_result_naming_it(mcp_url: str) -> None:
    async def scenario() -> None:
        async with http_session(mcp_url) as session:
            await assert_unknown_task_is_an_error_result(session)

    run_bounded(scenario)


def test_invalid_arguments_and_unknown_tools_are_error_results(mcp_url: str) -> None:
    async def scenario() -> None:
        async with http_session(mcp_url) as session:
            await assert_bad_calls_are_error_results_naming_the_problem(session)

    run_bounded(scenario)


def test_every_listed_resource_reads(mcp_url: str) -> None:
    async def scenario() -> None:
        async with http_session(mcp_url) as session:
            await assert_every_listed_resource_reads(session)

    run_bounded(scenario)


def test_a_task_resource_is_the_tasks_result(server: Server, mcp_url: str) -> None:
    done = httpx.post(
        f"{server.base_url}/mcp/tools/orchestrate_task",
        json={"arguments": {"task": TRUE_TASK, "wait": True}},
        headers=auth(),
        timeout=60.0,
    )
    assert done.status_code == 200, done.text
    task_id = done.json()["structuredContent"]["taskId"]

    async def scenario() -> dict[str, Any]:
        async with http_session(mcp_url) as session:
            read = await session.read_resource(f"reynolds://tasks/{task_id}")
            result: dict[str, Any] = json.loads(getattr(read.contents[0], "text", ""))
            return result

    assert run_bounded(scenario)["taskId"] == task_id


def test_a_client_of_the_2026_protocol_gets_the_same_tools_and_progress(
    server: Server, mcp_url: str
) -> None:
    rest = rest_tools(server.base_url)

    async def scenario() -> str | None:
        async with (
            httpx2.AsyncClient(headers=auth(), timeout=httpx2.Timeout(30.0, read=120.0)) as http,
            Client(streamable_http_client(mcp_url, http_client=http), mode="auto") as client,
        ):
            await assert_tools_match_rest(client.session, rest)
            await assert_waiting_orchestration_reports_progress(client.session)
            await assert_unknown_task_is_an_error_result(client.session)
            return client.session.protocol_version

    assert run_bounded(scenario) == LATEST_MODERN_VERSION


def test_a_foreign_origin_on_mcp_is_refused_with_403(mcp_url: str) -> None:
    assert post_initialize(mcp_url, {**auth(), "Origin": "https://evil.example"}) == 403


def test_an_origin_listed_in_reynolds_allowed_origins_is_accepted(mcp_url: str) -> None:
    assert post_initialize(mcp_url, {**auth(), "Origin": ASSISTANT_ORIGIN}) == 200


def test_a_host_outside_the_servers_own_gets_421(server: Server, mcp_url: str) -> None:
    headers = {**auth(), "Host": f"rebound.example:{server.port}"}
    assert post_initialize(mcp_url, headers) == 421


def test_mcp_needs_the_bearer_token_like_every_other_route(mcp_url: str) -> None:
    assert post_initialize(mcp_url, {}) == 401
    assert post_initialize(mcp_url, auth("wrong")) == 401


def test_mcp_answers_at_exactly_its_path_without_a_redirect(mcp_url: str) -> None:
    assert post_initialize(mcp_url, auth()) == 200
    # A GET without a session is refused by the transport itself, not redirected.
    got = httpx.get(mcp_url, headers={**auth(), **MCP_ACCEPT}, timeout=10.0)
    assert got.status_code not in REDIRECTS
    assert got.status_code == 400


def test_rest_tool_routes_still_answer_beside_mcp(server: Server) -> None:
    tools = httpx.get(f"{server.base_url}/mcp/tools", headers=auth(), timeout=10.0)
    assert tools.status_code == 200
    assert "orchestrate_task" in {t["name"] for t in tools.json()}
    called = httpx.post(
        f"{server.base_url}/mcp/tools/get_agent_status",
        json={"arguments": {"agentType": "all"}},
        headers=auth(),
        timeout=10.0,
    )
    assert called.status_code == 200 and called.json()["isError"] is False


def test_resources_over_rest_are_listed_and_read(server: Server) -> None:
    base = f"{server.base_url}/mcp/resources"
    listed = httpx.get(base, headers=auth(), timeout=10.0)
    assert listed.status_code == 200
    rows = {r["name"]: r for r in listed.json()}
    assert rows["agent-pools"] == {
        "uri": "reynolds://agent-pools",
        "name": "agent-pools",
        "mimeType": "application/json",
        "description": rows["agent-pools"]["description"],
    }
    assert {"metrics", "patterns", "loop-prevention", "reynolds-personality"} <= set(rows)

    pools = httpx.get(f"{base}/agent-pools", headers=auth(), timeout=10.0)
    assert pools.status_code == 200 and len(pools.json()["pools"]) == 3
    metrics = httpx.get(f"{base}/metrics", headers=auth(), timeout=10.0)
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "reynolds_agent_replicas" in metrics.text
    patterns = httpx.get(f"{base}/patterns", headers=auth(), timeout=10.0).json()
    assert {p["name"] for p in patterns["patterns"]} >= {"migration", "deployment", "default"}

    loops = httpx.get(f"{base}/loop-prevention", headers=auth(), timeout=10.0).json()
    assert loops["confidence"] == 0.999 and loops["detections"] == []
    assert loops["detectors"]["repeated"] == {"rho": 0.1, "evidenceToStop": 3}
    voice = httpx.get(f"{base}/reynolds-personality", headers=auth(), timeout=10.0)
    assert voice.status_code == 200 and voice.json()["name"] == "Reynolds"
    unknown_task = httpx.get(f"{base}/tasks/no-such-task", headers=auth(), timeout=10.0)
    assert unknown_task.status_code == 404 and "no-such-task" in unknown_task.json()["error"]
    unknown = httpx.get(f"{base}/no-such-resource", headers=auth(), timeout=10.0)
    assert unknown.status_code == 404
    assert "reynolds://agent-pools" in unknown.json()["availableResources"]


def test_every_new_app_runs_its_own_mcp_sessions_and_refuses_a_foreign_host(
    tmp_path: Path,
) -> None:
    """Tests build an app each: a session manager runs only once, so each app needs its own."""
    from fastapi.testclient import TestClient

    from reynolds.entrypoints.http import create_app
    from reynolds.settings import Settings

    for n in range(2):
        settings = Settings(home=tmp_path / f"home{n}", secrets_dir=tmp_path / "secrets")
        with TestClient(create_app(settings), base_url=settings.base_url) as client:
            assert client.get("/mcp/tools").status_code == 200
            opened = client.post("/mcp", json=INITIALIZE, headers=MCP_ACCEPT)
            assert opened.status_code == 200
            foreign = {**MCP_ACCEPT, "Host": "evil.example"}
            refused = client.post("/mcp", json=INITIALIZE, headers=foreign)
            assert refused.status_code == 421
