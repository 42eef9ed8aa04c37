"""A running Reynolds server's own `/mcp` (Streamable HTTP, behind a token) as the downstream of
another's mcp actions: the token from the secrets folder, the tools of the downstream answered,
and the connection opened again after the downstream was stopped and started."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_support import Server, make_server
from mcp_support import TOKEN, start
from tests.helpers.polling import wait_for_async

from reynolds.bootstrap import Container, build
from reynolds.core.models import Strategy, TaskSpec
from reynolds.services.runs import TaskRun
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio
TASK_TIMEOUT_S = 60.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def downstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = make_server(tmp_path_factory.mktemp("downstream"))
    start(server, REYNOLDS_API_TOKEN=TOKEN)
    yield server
    server.run("stop")


async def orchestrator(root: Path, downstream: Server, token: str) -> Container:
    """An in-process server whose `code` pool declares the downstream as `reynolds`."""
    config, secrets = root / "config", root / "secrets"
    config.mkdir(parents=True)
    secrets.mkdir()
    (secrets / "downstream_token.txt").write_text(f"{token}\n")
    server = {"url": f"{downstream.base_url}/mcp", "tokenFile": "downstream_token.txt"}
    pools = {"code": {"name": "code", "mcpServers": {"reynolds": server}}}
    (config / "agents.yaml").write_text(yaml.safe_dump({"pools": pools}))
    return await build(
        Settings(
            home=root / "home",
            config_dir=config,
            secrets_dir=secrets,
            retry_base_s=0.2,
            retry_cap_s=0.5,
        )
    )


@pytest.fixture
async def app(tmp_path: Path, downstream: Server) -> AsyncIterator[Container]:
    container = await orchestrator(tmp_path, downstream, TOKEN)
    try:
        yield container
    finally:
        await container.aclose()


def call(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"action": {"kind": "mcp", "server": "reynolds", "tool": tool, "arguments": arguments}}


async def submit(app: Container, task: dict[str, Any]) -> TaskRun:
    return await app.engine.submit(TaskSpec.model_validate(task), Strategy(max_concurrency=4))


async def finished(app: Container, run: TaskRun) -> dict[str, Any]:
    assert await app.engine.wait(run, TASK_TIMEOUT_S), "task did not finish in time"
    return await app.engine.result(run.id)


def structured(subtask: dict[str, Any]) -> Any:
    return json.loads(subtask["output"].splitlines()[-1])


async def test_tools_of_a_running_reynolds_are_called_with_its_token(app: Container) -> None:
    task = {
        "type": "ask-downstream",
        "subtasks": [
            {"id": "agents", **call("get_agent_status", agentType="all")},
            {"id": "tasks", **call("list_tasks", limit=5)},
        ],
    }

    result = await finished(app, await submit(app, task))

    assert result["status"] == "succeeded", result["subtasks"]
    subtasks = {s["id"]: s for s in result["subtasks"]}
    assert {p["type"] for p in structured(subtasks["agents"])["pools"]} >= {"devops", "code"}
    assert "tasks" in structured(subtasks["tasks"])


async def test_a_wrong_token_fails_the_call(tmp_path: Path, downstream: Server) -> None:
    app = await orchestrator(tmp_path, downstream, "not-the-token")
    try:
        result = await finished(
            app, await submit(app, {"type": "x", "subtasks": [{"id": "a", **call("list_tasks")}]})
        )
    finally:
        await app.aclose()

    (subtask,) = result["subtasks"]
    assert subtask["status"] == "failed"
    assert "401" in subtask["error"] or "nauthori" in subtask["error"], subtask["error"]
    assert "not-the-token" not in subtask["error"]


async def test_a_downstream_stopped_mid_task_is_reconnected_once_it_is_back(
    app: Container, downstream: Server
) -> None:
    first = await finished(
        app, await submit(app, {"type": "x", "subtasks": [{"id": "a", **call("list_tasks")}]})
    )
    assert first["status"] == "succeeded", first["subtasks"]

    stopped = downstream.run("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    # Failing the same way until the downstream is back is the point: loop prevention stays out.
    waiting = {"id": "b", "retries": 10, "loopPrevention": False, **call("list_tasks")}
    run = await submit(app, {"type": "x", "subtasks": [waiting]})
    (sub,) = run.subs.values()
    await wait_for_async(
        lambda: sub.attempts >= 2, timeout_s=30, what="a second call to the stopped downstream"
    )
    # Started from a thread: `start` waits for the server, and the task keeps retrying meanwhile.
    await asyncio.to_thread(start, downstream, REYNOLDS_API_TOKEN=TOKEN)
    result = await finished(app, run)

    assert result["status"] == "succeeded", result["subtasks"]
    (subtask,) = result["subtasks"]
    assert subtask["attempts"] >= 2
