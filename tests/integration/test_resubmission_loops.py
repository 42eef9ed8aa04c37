"""Resubmission loops over MCP, as a looping assistant makes them: the same failing task
submitted again and again is refused the fourth time with the evidence, runs with `force`, and
is still refused by the next server on the same store."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp.client import Client

from reynolds.bootstrap import build
from reynolds.entrypoints.mcp.in_process import InProcessHost
from reynolds.entrypoints.mcp.server import build_server
from reynolds.settings import Settings

SCENARIO_TIMEOUT_S = 60.0
FAILING = [sys.executable, "-c", "import sys; sys.exit('migration 0042 failed: table locked')"]


def task(
    argv: list[str], description: str = "", components: tuple[str, ...] = ("users", "orders")
) -> dict[str, Any]:
    return {
        "type": "migration",
        "description": description,
        "components": list(components),
        "steps": [{"name": "migrate", "action": {"kind": "shell", "argv": argv}}],
    }


@asynccontextmanager
async def connected(home: Path) -> AsyncIterator[Client]:
    container = await build(Settings(home=home))
    try:
        async with Client(build_server(InProcessHost(lambda: container))) as client:
            yield client
    finally:
        await container.aclose()


async def orchestrate(client: Client, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool("orchestrate_task", {"wait": True, **arguments})
    assert not result.is_error, result.content
    answer: dict[str, Any] = json.loads(result.content[0].text)  # type: ignore[union-attr]
    return answer


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with anyio.fail_after(SCENARIO_TIMEOUT_S):
            await scenario()

    anyio.run(bounded)


def test_the_same_failing_task_is_refused_the_fourth_time_and_runs_when_forced(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with connected(tmp_path / "home") as client:
            # An assistant rewording its request each time does not make it another task.
            runs = [await orchestrate(client, task=task(FAILING, f"try {i}")) for i in range(3)]
            refused = await orchestrate(client, task=task(FAILING, "try once more"))
            forced = await orchestrate(client, task=task(FAILING), force=True)
            other = await orchestrate(client, task=task(["true"]))
            listed = await client.call_tool("list_tasks", {"limit": 50})
        assert [r["status"] for r in runs] == ["failed"] * 3
        assert refused["status"] == "loop_blocked" and refused["taskId"] is None
        assert refused["success"] is False
        assert refused["loop"]["detector"] == "resubmission"
        assert refused["loop"]["confidence"] == 0.999
        assert refused["loop"]["evidence"]["count"] == 3
        assert refused["loop"]["evidence"]["taskIds"] == [r["taskId"] for r in runs]
        assert "force: true" in refused["message"]
        assert (
            forced["status"] == "failed"
            and forced["taskId"] not in refused["loop"]["evidence"]["taskIds"]
        )
        assert other["status"] == "succeeded"
        shown = json.loads(listed.content[0].text)["tasks"]  # type: ignore[union-attr]
        assert len(shown) == 5  # the refused submission left no task behind

    run(scenario)


def test_the_evidence_survives_a_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with connected(tmp_path / "home") as client:
            for _ in range(3):
                await orchestrate(client, task=task(FAILING))
        async with connected(tmp_path / "home") as client:
            refused = await orchestrate(client, task=task(FAILING))
        assert refused["status"] == "loop_blocked"
        assert refused["loop"]["evidence"]["count"] == 3

    run(scenario)


def test_the_same_task_failing_further_along_each_time_is_not_a_loop(tmp_path: Path) -> None:
    counter = tmp_path / "stage"
    # The same task each time; each run fails one stage further than the last: progress.
    argv = [
        sys.executable,
        "-c",
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
        "n = int(p.read_text()) if p.exists() else 0; p.write_text(str(n + 1)); "
        "sys.exit(f'failed at stage {n}')",
        str(counter),
    ]

    async def scenario() -> None:
        async with connected(tmp_path / "home") as client:
            answers = [
                await orchestrate(client, task=task(argv, components=("users",))) for _ in range(5)
            ]
        assert [a["status"] for a in answers] == ["failed"] * 5
        assert counter.read_text() == "5"

    run(scenario)
