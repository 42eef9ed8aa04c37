"""Failure patterns learned from commands that really failed, as `reynolds://patterns` and
`analyze_orchestration_potential` show them."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reynolds.bootstrap import Container, build
from reynolds.core.models import TaskSpec
from reynolds.services import resources
from reynolds.services.tools import CallContext, call_tool
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio
PY = sys.executable
# Says when and in which process it failed: no two runs print the same line.
LEASE = (
    "import os, sys, time; sys.exit(time.strftime('%Y-%m-%dT%H:%M:%S')"
    " + f' worker pid {os.getpid()}: connection refused')"
)
LEASE_ACTION = {"kind": "shell", "argv": [PY, "-c", LEASE]}
MISSING_ACTION = {"kind": "shell", "argv": ["ls", "/no/such/dir"]}
ECHO_ACTION = {"kind": "shell", "argv": ["echo", "fine"]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Container]:
    container = await build(Settings(home=tmp_path / "home", retry_base_s=0.01, retry_cap_s=0.02))
    try:
        yield container
    finally:
        await container.aclose()


async def run_failing_task(app: Container) -> dict[str, Any]:
    task = {
        "type": "nightly-sync",
        "subtasks": [
            {"id": "sync-1", "action": LEASE_ACTION, "retries": 1},
            {"id": "sync-2", "action": LEASE_ACTION, "retries": 1},
            {"id": "missing", "action": MISSING_ACTION, "retries": 3},
        ],
    }
    run = await app.engine.submit(TaskSpec.model_validate(task))
    assert await app.engine.wait(run, 60)
    result: dict[str, Any] = await app.engine.result(run.id)
    return result


async def analyze(app: Container, task_type: str, action: dict[str, Any]) -> dict[str, Any]:
    task = {"type": task_type, "subtasks": [{"id": "one", "action": action}]}
    answer: dict[str, Any] = await call_tool(
        app.engine,
        "analyze_orchestration_potential",
        {"task": task},
        CallContext(None, app.analyses),
    )
    return answer


async def test_the_patterns_resource_counts_real_failures_and_merges_their_messages(
    app: Container,
) -> None:
    result = await run_failing_task(app)
    pool = result["subtasks"][0]["agentType"]

    body = json.loads((await resources.read(app.engine, "patterns")).text)

    assert [p["name"] for p in body["patterns"]][-1] == "default"  # what it served before
    assert body["window"] == 5
    sync, missing = body["failurePatterns"]
    assert sync == {
        "signature": f"shell:{Path(PY).name} -c {LEASE}"[:119] + "…",
        "pool": pool,
        "failures": 4,
        "classes": {"connection": 4},
        "topMessages": [{"message": "<time> worker pid <num>: connection refused", "count": 4}],
        "retryable": True,
        "taskTypes": ["nightly-sync"],
    }
    assert (missing["signature"], missing["failures"]) == ("shell:ls /no/such/dir", 1)
    assert (missing["classes"], missing["retryable"]) == ({"not_found": 1}, False)
    assert "No such file or directory" in missing["topMessages"][0]["message"]


async def test_analysis_lists_the_patterns_of_the_tasks_type_or_actions(app: Container) -> None:
    await run_failing_task(app)

    same_action = await analyze(app, "other", MISSING_ACTION)
    same_type = await analyze(app, "nightly-sync", ECHO_ACTION)
    unrelated = await analyze(app, "fresh", ECHO_ACTION)

    assert [p["signature"] for p in same_action["failurePatterns"]] == ["shell:ls /no/such/dir"]
    assert same_action["failurePatterns"][0]["retryable"] is False
    assert any("shell:ls /no/such/dir failed 1 time(s)" in s for s in same_action["signals"])
    assert [p["failures"] for p in same_type["failurePatterns"]] == [4, 1]
    assert unrelated["failurePatterns"] == []
    assert not any("failure pattern" in s for s in unrelated["signals"])
