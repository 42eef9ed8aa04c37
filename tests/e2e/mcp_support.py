"""Helpers for the MCP tests: SDK client sessions over both transports, and what they check."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import httpx2
from cli_support import Server, output
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult
from tests.helpers.polling import eventually

TOKEN = "mcp-test-token"
SCENARIO_TIMEOUT_S = 90.0
POLL_S = 0.02
NAP = [sys.executable, "-c", "import time; time.sleep(0.2)"]
COMPONENTS = ["a", "b", "c", "d"]
T = TypeVar("T")


def run_bounded(scenario: Callable[[], Awaitable[T]], timeout_s: float = SCENARIO_TIMEOUT_S) -> T:
    """Run an async scenario on a fresh event loop; fail it after `timeout_s`."""

    async def bounded() -> T:
        with anyio.fail_after(timeout_s):
            return await scenario()

    return anyio.run(bounded)


def start(server: Server, **env: str) -> None:
    started = server.run("start", env=env)
    assert started.returncode == 0, output(started)


def auth(token: str | None = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@asynccontextmanager
async def http_session(url: str, token: str | None = TOKEN) -> AsyncIterator[ClientSession]:
    """An initialized SDK session over Streamable HTTP."""
    timeout = httpx2.Timeout(30.0, read=120.0)
    async with (
        httpx2.AsyncClient(headers=auth(token), timeout=timeout) as http,
        streamable_http_client(url, http_client=http) as (read_stream, write_stream),
        ClientSession(read_stream, write_stream) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def stdio_session(
    server: Server, errlog: Path, token: str | None = TOKEN
) -> AsyncIterator[ClientSession]:
    """An initialized SDK session with `reynolds mcp` for this server's home and port."""
    env = dict(server.env)
    if token:
        env["REYNOLDS_API_TOKEN"] = token
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "reynolds", "mcp"], env=env, cwd=server.workdir
    )
    with errlog.open("a", encoding="utf-8") as log:
        async with (
            stdio_client(params, errlog=log) as (read_stream, write_stream),
            ClientSession(read_stream, write_stream) as session,
        ):
            await session.initialize()
            yield session


def rest_tools(base_url: str, token: str | None = TOKEN) -> list[dict[str, Any]]:
    response = httpx.get(f"{base_url}/mcp/tools", headers=auth(token), timeout=10.0)
    assert response.status_code == 200, response.text
    tools: list[dict[str, Any]] = response.json()
    return tools


@dataclass
class ProgressLog:
    """The progress notifications one call received, in order."""

    seen: list[tuple[float, float | None, str | None]] = field(default_factory=list)

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, total, message))

    @property
    def values(self) -> list[float]:
        return [p for p, _, _ in self.seen]


# -- what both transports must do -----------------------------------------------------------


async def assert_tools_match_rest(session: ClientSession, rest: list[dict[str, Any]]) -> None:
    listed = (await session.list_tools()).tools
    assert [t.name for t in listed] == [t["name"] for t in rest]
    for tool, expected in zip(listed, rest, strict=True):
        assert tool.description == expected["description"], tool.name
        assert tool.input_schema == expected["inputSchema"], tool.name


async def assert_waiting_orchestration_reports_progress(session: ClientSession) -> None:
    """4 components × a 0.2 s nap at maxConcurrency 2: progress rises at least twice."""
    log = ProgressLog()
    arguments = {
        "task": {
            "type": "x",
            "description": "four naps, two at a time",
            "components": COMPONENTS,
            "steps": [{"name": "nap", "action": {"kind": "shell", "argv": NAP}}],
        },
        "strategy": {"approach": "parallel_optimized", "maxConcurrency": 2},
        "wait": True,
        "timeoutSeconds": 60,
    }
    result = await session.call_tool("orchestrate_task", arguments, progress_callback=log)

    assert not result.is_error, result.content
    body = result.structured_content
    assert body["status"] == "succeeded" and body["success"] is True
    assert len(body["subtasks"]) == len(COMPONENTS)
    assert json.loads(text_of(result)) == body
    # Notifications precede the result on the wire; the callback may still be running.
    assert await eventually(lambda: bool(log.values) and log.values[-1] == len(COMPONENTS))
    assert log.values == sorted(set(log.values)), log.seen  # strictly increasing
    assert len([v for v in log.values if v > 0]) >= 2, log.seen
    assert {total for _, total, _ in log.seen} == {len(COMPONENTS)}


async def assert_agent_pools_resource_reads(session: ClientSession) -> None:
    listed = {r.uri: r for r in (await session.list_resources()).resources}
    assert {
        "reynolds://agent-pools",
        "reynolds://metrics",
        "reynolds://patterns",
        "reynolds://loop-prevention",
        "reynolds://reynolds-personality",
    } <= set(listed)
    templates = (await session.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["reynolds://tasks/{taskId}"]

    read = await session.read_resource("reynolds://agent-pools")
    contents = read.contents[0]
    assert contents.mime_type == "application/json"
    pools = json.loads(getattr(contents, "text", ""))["pools"]
    assert {p["type"] for p in pools} == {"devops", "platform", "code"}


async def assert_unknown_task_is_an_error_result(session: ClientSession) -> None:
    result = await session.call_tool("get_task_status", {"taskId": "no-such-task"})
    assert result.is_error
    assert "no-such-task" in text_of(result)


async def assert_bad_calls_are_error_results_naming_the_problem(session: ClientSession) -> None:
    invalid = await session.call_tool("get_task_status", {"taskId": ""})
    assert invalid.is_error and "arguments.taskId" in text_of(invalid)
    unknown = await session.call_tool("no_such_tool", {})
    assert unknown.is_error and "no_such_tool" in text_of(unknown)
    assert "orchestrate_task" in text_of(unknown)  # and what there is instead


async def assert_every_listed_resource_reads(session: ClientSession) -> None:
    """No resource answers "not available yet": each one listed reads."""
    listed = await session.list_resources()
    for resource in listed.resources:
        read = await session.read_resource(str(resource.uri))
        assert read.contents, resource.uri


def text_of(result: CallToolResult) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)
