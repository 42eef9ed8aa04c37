"""mcp actions through the engine, against real MCP servers over stdio: mcp-server-git on
repositories made here, mcp-server-time, and tests/helpers/mcp_downstream.py for what those
two cannot show (which process answered, calls held at once, a tool that fails, a process that
dies mid-call)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helpers.processes import is_running

from reynolds.bootstrap import Container, build
from reynolds.core.models import Strategy, TaskSpec
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio
PY = sys.executable
DOWNSTREAM = str(Path(__file__).parents[1] / "helpers" / "mcp_downstream.py")
COMPONENTS = ["alpha", "beta", "gamma", "delta"]
TASK_TIMEOUT_S = 60.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repos(tmp_path: Path) -> Path:
    """A folder with one git repository per component, each with one commit naming it."""
    root = tmp_path / "repos"
    root.mkdir()
    git(root, "init", "-q")  # mcp-server-git wants its --repository to be one
    for name in COMPONENTS:
        repo = root / name
        repo.mkdir(parents=True)
        git(repo, "init", "-q")
        (repo / "README").write_text(f"{name}\n")
        git(repo, "add", "README")
        git(repo, "commit", "-q", "-m", f"first commit of {name}")
        (repo / "README").write_text(f"{name}, changed\n")
    return root


def servers(repos: Path) -> dict[str, Any]:
    return {
        "git": {"command": PY, "args": ["-m", "mcp_server_git", "--repository", str(repos)]},
        "time": {"command": PY, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
        "downstream": {
            "command": PY,
            "args": [DOWNSTREAM],
            "env": {"DOWNSTREAM_GREETING": "hello"},
            "maxConcurrency": 2,
        },
        "limited": {"command": PY, "args": [DOWNSTREAM], "tools": ["whoami"]},
    }


@pytest.fixture
async def app(tmp_path: Path, repos: Path) -> AsyncIterator[Container]:
    config = tmp_path / "config"
    config.mkdir()
    pools = {
        "code": {
            "name": "code",
            "replicas": {"min": 1, "max": 16, "initial": 8},
            "mcpServers": servers(repos),
        },
        "plain": {"name": "plain", "replicas": {"min": 1, "max": 2, "initial": 1}},
    }
    (config / "agents.yaml").write_text(yaml.safe_dump({"pools": pools}))
    settings = Settings(
        home=tmp_path / "home", config_dir=config, retry_base_s=0.05, retry_cap_s=0.2
    )
    container = await build(settings)
    try:
        yield container
    finally:
        await container.aclose()


def call(server: str, tool: str, agent: str = "code", **arguments: Any) -> dict[str, Any]:
    action = {"kind": "mcp", "server": server, "tool": tool, "arguments": arguments}
    return {"agent": agent, "action": action}


async def run_task(
    app: Container, task: dict[str, Any], max_concurrency: int = 8
) -> dict[str, Any]:
    spec = TaskSpec.model_validate(task)
    strategy = Strategy(approach="parallel_optimized", max_concurrency=max_concurrency)
    run = await app.engine.submit(spec, strategy)
    assert await app.engine.wait(run, TASK_TIMEOUT_S), "task did not finish in time"
    return await app.engine.result(run.id)


def failures(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(s["id"], s["status"], s["error"]) for s in result["subtasks"]]


def by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in result["subtasks"]}


def structured(subtask: dict[str, Any]) -> Any:
    """The structured content: the output's last line."""
    return json.loads(subtask["output"].splitlines()[-1])


async def test_components_call_the_git_and_time_servers_in_parallel(
    app: Container, repos: Path
) -> None:
    repo = str(repos / "{component}")
    task = {
        "type": "survey",
        "components": COMPONENTS,
        "steps": [
            {"name": "status", **call("git", "git_status", repo_path=repo)},
            {"name": "log", "after": ["status"], **call("git", "git_log", repo_path=repo)},
            {"name": "clock", **call("time", "get_current_time", timezone="UTC")},
        ],
    }

    result = await run_task(app, task)

    assert result["status"] == "succeeded", failures(result)
    subtasks = by_id(result)
    for name in COMPONENTS:
        log = next(s for s in subtasks.values() if s["component"] == name and s["step"] == "log")
        status = next(
            s for s in subtasks.values() if s["component"] == name and s["step"] == "status"
        )
        clock = next(
            s for s in subtasks.values() if s["component"] == name and s["step"] == "clock"
        )
        assert f"first commit of {name}" in log["output"]
        assert not any(f"first commit of {o}" in log["output"] for o in COMPONENTS if o != name)
        assert "modified:   README" in status["output"] or "README" in status["output"]
        assert structured(clock)["timezone"] == "UTC"
    assert result["metrics"]["parallelExecutionRatio"] > 0


async def test_calls_share_one_session_and_keep_to_the_servers_concurrency(
    app: Container,
) -> None:
    task = {
        "type": "fan-out",
        "subtasks": [
            *({"id": f"who{i}", **call("downstream", "whoami")} for i in range(6)),
            *({"id": f"hold{i}", **call("downstream", "overlap", seconds=0.3)} for i in range(6)),
        ],
    }

    result = await run_task(app, task)

    assert result["status"] == "succeeded", failures(result)
    subtasks = by_id(result)
    pids = {structured(subtasks[f"who{i}"])["pid"] for i in range(6)}
    peaks = [structured(subtasks[f"hold{i}"])["peak"] for i in range(6)]
    assert len(pids) == 1
    assert max(peaks) == 2  # six at once were ready; the declaration allows two


async def test_arguments_are_substituted_and_the_server_gets_a_minimal_environment(
    app: Container,
) -> None:
    task = {
        "type": "echo-type",
        "components": ["api"],
        "steps": [
            {
                "name": "say",
                **call("downstream", "echo", value={"path": ["/r/{component}", "{taskType}"]}),
            },
            {"name": "env", **call("downstream", "environment")},
        ],
    }

    result = await run_task(app, task)

    assert result["status"] == "succeeded", failures(result)
    subtasks = {s["step"]: s for s in result["subtasks"]}
    assert structured(subtasks["say"])["value"] == {"path": ["/r/api", "echo-type"]}
    env = structured(subtasks["env"])
    assert env["greeting"] == "hello"
    assert not [n for n in env["names"] if n.startswith("REYNOLDS_") or n == "PYTEST_CURRENT_TEST"]


async def test_an_undeclared_server_and_a_tool_outside_its_list_are_denied(
    app: Container,
) -> None:
    task = {
        "type": "refused",
        "subtasks": [
            {"id": "elsewhere", **call("downstream", "whoami", agent="plain")},
            {"id": "unknown", **call("jira", "search")},
            {"id": "outside", **call("limited", "echo", value=1)},
            {"id": "inside", **call("limited", "whoami")},
        ],
    }

    result = await run_task(app, task)

    subtasks = by_id(result)
    for sid in ("elsewhere", "unknown", "outside"):
        assert subtasks[sid]["status"] == "failed"
        assert subtasks[sid]["attempts"] == 1
    assert "not declared for the plain pool" in subtasks["elsewhere"]["error"]
    assert "'jira' is not declared for the code pool" in subtasks["unknown"]["error"]
    assert "'echo'" in subtasks["outside"]["error"]
    assert "tools list" in subtasks["outside"]["error"]
    assert subtasks["inside"]["status"] == "succeeded"
    await app.store.flush()
    records = {r["subtask_id"]: r for r in app.store.audit(result["taskId"])}
    assert records["outside"]["decision"] == "denied"
    assert records["outside"]["argv"] == ["limited", "echo"]
    assert records["inside"]["decision"] == "allowed"


async def test_an_error_result_or_a_protocol_error_fails_the_attempt(app: Container) -> None:
    task = {
        "type": "failing",
        "subtasks": [
            {"id": "bad", "retries": 1, **call("downstream", "refuse", why="the build broke")},
            {"id": "zone", "retries": 1, **call("time", "get_current_time", timezone="Not/AZone")},
            {"id": "unknown", **call("time", "no_such_tool")},
        ],
    }

    result = await run_task(app, task)

    subtasks = by_id(result)
    assert subtasks["bad"]["status"] == "failed"
    assert subtasks["bad"]["attempts"] == 2
    assert "the build broke" in subtasks["bad"]["error"]
    # An invalid argument is a validation failure: not retried.
    assert subtasks["zone"]["status"] == "failed"
    assert subtasks["zone"]["attempts"] == 1
    assert "Not/AZone" in subtasks["zone"]["error"]
    # A protocol error: the server answered, so it is not counted against its health.
    assert subtasks["unknown"]["status"] == "failed"
    assert "Unknown tool: no_such_tool" in subtasks["unknown"]["error"]
    assert subtasks["unknown"]["reason"] is None


async def test_a_server_killed_mid_task_is_started_again_and_the_task_finishes(
    app: Container, tmp_path: Path
) -> None:
    marker = str(tmp_path / "died")
    task = {
        "type": "survivor",
        "subtasks": [
            {"id": "before", **call("downstream", "whoami")},
            {
                "id": "dies",
                "dependsOn": ["before"],
                "retries": 2,
                **call("downstream", "die_once", marker=marker),
            },
            {"id": "after", "dependsOn": ["dies"], **call("downstream", "whoami")},
        ],
    }

    result = await run_task(app, task)

    assert result["status"] == "succeeded", failures(result)
    subtasks = by_id(result)
    first = structured(subtasks["before"])["pid"]
    assert subtasks["dies"]["attempts"] == 2
    assert structured(subtasks["after"])["pid"] != first
    assert int(Path(marker).read_text()) == first
    assert not is_running(first)


async def test_closing_the_server_stops_the_servers_it_started(tmp_path: Path, repos: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    pools = {"code": {"name": "code", "mcpServers": servers(repos)}}
    (config / "agents.yaml").write_text(yaml.safe_dump({"pools": pools}))
    app = await build(Settings(home=tmp_path / "home", config_dir=config))
    try:
        result = await run_task(
            app, {"type": "x", "subtasks": [{"id": "w", **call("downstream", "whoami")}]}
        )
    finally:
        await app.aclose()

    assert result["status"] == "succeeded", failures(result)
    assert not is_running(structured(by_id(result)["w"])["pid"])


async def test_a_call_past_its_timeout_fails_and_the_session_serves_the_next(
    app: Container,
) -> None:
    slow = {"id": "slow", "timeoutSeconds": 0.5, **call("downstream", "overlap", seconds=30)}
    first = await run_task(
        app, {"type": "slow", "subtasks": [slow, {"id": "who", **call("downstream", "whoami")}]}
    )
    then = await run_task(
        app, {"type": "then", "subtasks": [{"id": "who", **call("downstream", "whoami")}]}
    )

    timed_out = by_id(first)["slow"]
    assert timed_out["status"] == "failed" and timed_out["reason"] == "timeout"
    assert "within 0.5 s" in timed_out["error"]
    assert then["status"] == "succeeded", failures(then)
    assert structured(by_id(then)["who"])["pid"] == structured(by_id(first)["who"])["pid"]


async def test_a_pool_whose_executor_is_an_mcp_tool_is_asked_each_subtasks_instruction(
    tmp_path: Path,
) -> None:
    """A pattern task with no steps: each subtask's agent is a tool on the pool's MCP server,
    called with the subtask's {instruction} (naming its component)."""
    config = tmp_path / "config"
    config.mkdir()
    executor = {
        "kind": "mcp",
        "server": "agent",
        "tool": "echo",
        "arguments": {"value": "{instruction}"},
    }
    pools = {
        "code": {
            "name": "code",
            "replicas": {"min": 1, "max": 8, "initial": 4},
            "mcpServers": {"agent": {"command": PY, "args": [DOWNSTREAM]}},
            "executor": executor,
        }
    }
    (config / "agents.yaml").write_text(yaml.safe_dump({"pools": pools}))
    container = await build(Settings(home=tmp_path / "home", config_dir=config))
    try:
        task = {
            "type": "migration",
            "description": "Migrate the tools to the SDK pattern",
            "components": COMPONENTS,
        }
        result = await run_task(container, task, max_concurrency=4)
    finally:
        await container.aclose()

    assert result["status"] == "succeeded", result["subtasks"][:2]
    by_component: dict[str, list[str]] = {}
    for sub in result["subtasks"]:
        by_component.setdefault(sub.get("component") or "", []).append(sub["output"])
    for name in COMPONENTS:
        assert by_component[name], f"no subtask for {name}"
        assert all(name in output for output in by_component[name])
