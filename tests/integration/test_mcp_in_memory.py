"""The MCP server in process, through the SDK's in-memory client, over a real engine and store:
the same server the stdio and Streamable HTTP transports serve (tests/e2e/test_mcp_*.py)."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from reynolds.bootstrap import build
from reynolds.entrypoints.mcp.in_process import InProcessHost
from reynolds.entrypoints.mcp.server import build_server
from reynolds.services.tools import list_tools
from reynolds.settings import Settings

SCENARIO_TIMEOUT_S = 60.0
NAP = [sys.executable, "-c", "import time; time.sleep(0.2)"]
COMPONENTS = ["a", "b", "c", "d"]


@asynccontextmanager
async def connected(tmp_path: Path) -> AsyncIterator[Client]:
    """An initialized in-memory client of the MCP server on a fresh engine."""
    settings = Settings(home=tmp_path / "home", secrets_dir=tmp_path / "secrets")
    container = await build(settings)
    try:
        async with Client(build_server(InProcessHost(lambda: container))) as client:
            yield client
    finally:
        await container.aclose()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with anyio.fail_after(SCENARIO_TIMEOUT_S):
            await scenario()

    anyio.run(bounded)


def text_of(result: CallToolResult) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


def test_the_tools_listed_are_the_registrys_with_their_schemas(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with connected(tmp_path) as client:
            listed = (await client.list_tools()).tools
        registry = list_tools()
        assert [t.name for t in listed] == [t["name"] for t in registry]
        for tool, expected in zip(listed, registry, strict=True):
            assert tool.description == expected["description"], tool.name
            assert tool.input_schema == expected["inputSchema"], tool.name

    run(scenario)


def test_a_waiting_orchestration_reports_progress_as_subtasks_finish(tmp_path: Path) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))

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
    results: list[CallToolResult] = []

    async def scenario() -> None:
        async with connected(tmp_path) as client:
            # Over a wire the SDK's client sends a progress token with a progress callback; in
            # memory it does not, and the server reports progress only to those who ask.
            asked = {"progress_token": "orchestrate-1"}
            call = client.call_tool("orchestrate_task", arguments, None, progress, meta=asked)
            results.append(await call)

    run(scenario)
    (result,) = results
    assert not result.is_error, text_of(result)
    body = result.structured_content
    assert body is not None
    assert body["status"] == "succeeded" and body["success"] is True
    assert [s["status"] for s in body["subtasks"]] == ["succeeded"] * len(COMPONENTS)
    assert json.loads(text_of(result)) == body  # the text is the same result, encoded once
    values = [done for done, _, _ in seen]
    assert values == sorted(set(values)), seen  # strictly increasing
    assert values[-1] == len(COMPONENTS), seen
    assert len([v for v in values if v > 0]) >= 2, seen
    assert {total for _, total, _ in seen} == {len(COMPONENTS)}
    assert seen[-1][2] == f"{len(COMPONENTS)} of {len(COMPONENTS)} subtasks finished"


def test_the_agent_pools_resource_reads_as_json(tmp_path: Path) -> None:
    read: list[Any] = []

    async def scenario() -> None:
        async with connected(tmp_path) as client:
            listed = {r.uri for r in (await client.list_resources()).resources}
            assert "reynolds://agent-pools" in listed
            templates = (await client.list_resource_templates()).resource_templates
            assert [t.uri_template for t in templates] == ["reynolds://tasks/{taskId}"]
            read.append(await client.read_resource("reynolds://agent-pools"))
            with pytest.raises(MCPError, match="no-such-task"):
                await client.read_resource("reynolds://tasks/no-such-task")

    run(scenario)
    contents = read[0].contents[0]
    assert contents.mime_type == "application/json"
    pools = json.loads(contents.text)["pools"]
    assert {p["type"] for p in pools} == {"devops", "platform", "code"}


def test_invalid_arguments_are_an_error_result_naming_each_field(tmp_path: Path) -> None:
    results: list[CallToolResult] = []

    async def scenario() -> None:
        async with connected(tmp_path) as client:
            results.append(await client.call_tool("get_task_status", {"taskId": ""}))
            results.append(await client.call_tool("orchestrate_task", {"wait": "true"}))
            results.append(await client.call_tool("no_such_tool", {}))

    run(scenario)
    empty_id, wrong_types, unknown = results
    assert empty_id.is_error
    assert empty_id.structured_content is not None
    assert empty_id.structured_content["error"] == "invalid arguments"
    assert [e["field"] for e in empty_id.structured_content["errors"]] == ["arguments.taskId"]
    assert text_of(empty_id).startswith("invalid arguments — arguments.taskId: ")
    assert wrong_types.is_error and wrong_types.structured_content is not None
    fields = {e["field"] for e in wrong_types.structured_content["errors"]}
    assert fields == {"arguments.task", "arguments.wait"}
    assert unknown.is_error and "no_such_tool" in text_of(unknown)
    assert "orchestrate_task" in text_of(unknown)  # and what there is instead
