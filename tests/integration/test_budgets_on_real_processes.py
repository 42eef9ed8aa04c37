"""Budgets on real processes and a real store: a task out of wall-clock time has its running
command killed and fails naming the budget, and a restarted server reports the same."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from reynolds.bootstrap import build
from reynolds.core.models import TaskSpec
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_task_out_of_wall_clock_time_stops_its_command_and_fails(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    sleeper = f"echo $$ > {pidfile}; exec sleep 60"
    task = {
        "type": "slow",
        "budget": {"wallClockSeconds": 1.5},
        "subtasks": [
            {"id": "slow", "action": {"kind": "shell", "argv": ["sh", "-c", sleeper]}},
            {"id": "after", "dependsOn": ["slow"], "action": {"kind": "shell", "argv": ["true"]}},
        ],
    }
    settings = Settings(home=tmp_path / "home")
    app = await build(settings)
    try:
        began = time.monotonic()
        run = await app.engine.submit(TaskSpec.model_validate(task))
        assert await app.engine.wait(run, 30)
        took = time.monotonic() - began
    finally:
        await app.aclose()
    again = await build(settings)
    try:
        stored = await again.engine.result(run.id)
    finally:
        await again.aclose()

    assert took < 30  # stopped by the budget, not by the 60 s command
    subs = {s["id"]: s for s in stored["subtasks"]}
    assert stored["status"] == "failed" and stored["reason"] == "budget_exceeded"
    assert "wallClockSeconds budget (1.5)" in stored["message"]
    assert subs["slow"]["status"] == "failed" and subs["slow"]["reason"] == "budget_exceeded"
    assert subs["after"]["status"] == "skipped"
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
