"""`reynolds mcp` (stdio, for desktop assistants) with the official SDK client.

It is a client of the server at REYNOLDS_HOST:REYNOLDS_PORT with the bearer token; the module's
server is started first, so only the first test shows it starting one when none answers.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import Server, make_server
from mcp_support import (
    TOKEN,
    assert_agent_pools_resource_reads,
    assert_bad_calls_are_error_results_naming_the_problem,
    assert_every_listed_resource_reads,
    assert_tools_match_rest,
    assert_unknown_task_is_an_error_result,
    assert_waiting_orchestration_reports_progress,
    rest_tools,
    run_bounded,
    start,
    stdio_session,
)
from tests.helpers.polling import wait_for

FRAME_TIMEOUT_S = 90.0
EXIT_TIMEOUT_S = 30.0
HEALTH_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = make_server(tmp_path_factory.mktemp("mcp-stdio"))
    start(server, REYNOLDS_API_TOKEN=TOKEN)
    yield server
    server.run("stop")


@pytest.fixture
def errlog(tmp_path: Path) -> Path:
    """Where `reynolds mcp` writes its stderr (shown when a test fails)."""
    return tmp_path / "reynolds-mcp.stderr"


def read_frame(proc: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
    """The next line on the process's stdout, which must be one JSON-RPC message."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout_s), f"no frame within {timeout_s} s"
    line = proc.stdout.readline()
    message: dict[str, Any] = json.loads(line)
    assert message.get("jsonrpc") == "2.0", line
    return message


def send(proc: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(message).encode() + b"\n")
    proc.stdin.flush()


def test_reynolds_mcp_starts_the_server_when_none_answers_and_writes_only_frames(
    idle_server: Server, tmp_path: Path
) -> None:
    stderr = (tmp_path / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reynolds", "mcp"],
        bufsize=0,  # unbuffered: a frame read is never hidden in a buffer from `select`
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=idle_server.env,
        cwd=idle_server.workdir,
    )
    try:
        send(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "raw-test", "version": "0"},
                },
            },
        )
        initialized = read_frame(proc, FRAME_TIMEOUT_S)
        assert initialized["id"] == 1 and initialized["result"]["serverInfo"]["name"] == "reynolds"
        send(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        send(proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})
        listed = read_frame(proc, FRAME_TIMEOUT_S)
        assert listed["id"] == 2
        assert "orchestrate_task" in {t["name"] for t in listed["result"]["tools"]}
        assert proc.stdin is not None
        proc.stdin.close()  # the client hangs up: the proxy ends, the server stays
        assert proc.wait(EXIT_TIMEOUT_S) == 0
        assert proc.stdout is not None
        assert proc.stdout.read() == b""  # nothing but the frames, ever
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(EXIT_TIMEOUT_S)
        stderr.close()
    health = wait_for(
        lambda: httpx.get(f"{idle_server.base_url}/health", timeout=5.0).status_code == 200,
        HEALTH_TIMEOUT_S,
    )
    assert health
    assert (idle_server.home / "reynolds.pid").is_file()
    assert b"Starting Reynolds" in (tmp_path / "stderr.log").read_bytes()


def test_tools_over_stdio_are_the_rest_tools_with_the_same_schemas(
    server: Server, errlog: Path
) -> None:
    rest = rest_tools(server.base_url)

    async def scenario() -> None:
        async with stdio_session(server, errlog) as session:
            await assert_tools_match_rest(session, rest)

    run_bounded(scenario)


def test_a_waiting_orchestration_over_stdio_reports_increasing_progress(
    server: Server, errlog: Path
) -> None:
    async def scenario() -> None:
        async with stdio_session(server, errlog) as session:
            await assert_waiting_orchestration_reports_progress(session)

    run_bounded(scenario)


def test_the_agent_pools_resource_reads_over_stdio(server: Server, errlog: Path) -> None:
    async def scenario() -> None:
        async with stdio_session(server, errlog) as session:
            await assert_agent_pools_resource_reads(session)

    run_bounded(scenario)


def test_an_unknown_task_id_over_stdio_is_an_error_result_naming_it(
    server: Server, errlog: Path
) -> None:
    async def scenario() -> None:
        async with stdio_session(server, errlog) as session:
            await assert_unknown_task_is_an_error_result(session)

    run_bounded(scenario)


def test_bad_calls_over_stdio_are_error_results_naming_the_problem(
    server: Server, errlog: Path
) -> None:
    async def scenario() -> None:
        async with stdio_session(server, errlog) as session:
            await assert_bad_calls_are_error_results_naming_the_problem(session)

    run_bounded(scenario)


def test_every_listed_resource_reads_over_stdio(server: Server, errlog: Path) -> None:
    async def scenario() -> None:
        async with stdio_session(server, errlog) as session:
            await assert_every_listed_resource_reads(session)

    run_bounded(scenario)


def test_without_the_token_every_call_says_which_token_is_missing(
    server: Server, errlog: Path
) -> None:
    async def scenario() -> str:
        async with stdio_session(server, errlog, token=None) as session:
            result = await session.call_tool("list_tasks", {})
            assert result.is_error
            return "\n".join(getattr(c, "text", "") for c in result.content)

    assert "REYNOLDS_API_TOKEN" in run_bounded(scenario)
