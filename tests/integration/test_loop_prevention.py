"""Loop prevention on real processes and a real store: a command that fails the same way is
stopped, its verdict is kept with the subtask across a restart, and it is counted."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from reynolds.bootstrap import build
from reynolds.core.models import TaskSpec
from reynolds.services import resources
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio
PY = sys.executable
# Fails the same way each time, but for the time and pid in its message.
SAME_FAILURE = (
    "import os, sys, time; sys.exit(f'cannot reach db at {time.time():.0f} (pid {os.getpid()})')"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def task(*, loop_prevention: bool = True) -> dict[str, Any]:
    return {
        "type": "loops",
        "subtasks": [
            {
                "id": "connect",
                "retries": 10,
                "loopPrevention": loop_prevention,
                "action": {"kind": "shell", "argv": [PY, "-c", SAME_FAILURE]},
            },
            {
                "id": "after",
                "dependsOn": ["connect"],
                "action": {"kind": "shell", "argv": ["true"]},
            },
        ],
    }


async def test_a_command_failing_the_same_way_is_stopped_and_its_verdict_is_kept(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path / "home", retry_base_s=0.01, retry_cap_s=0.02)
    app = await build(settings)
    try:
        run = await app.engine.submit(TaskSpec.model_validate(task()))
        assert await app.engine.wait(run, 60)
        live = await app.engine.result(run.id)
        metrics = app.engine.metrics.render().decode()
        resource = json.loads((await resources.read(app.engine, "loop-prevention")).text)
    finally:
        await app.aclose()

    # A new server reads the task from the store alone.
    again = await build(settings)
    try:
        stored = await again.engine.result(run.id)
    finally:
        await again.aclose()

    for result in (live, stored):
        subs = {s["id"]: s for s in result["subtasks"]}
        assert result["status"] == "loop_blocked", [
            (s["status"], s["attempts"], s["error"][-300:]) for s in subs.values()
        ]
        assert subs["connect"]["status"] == "loop_blocked"
        assert subs["connect"]["attempts"] == 3
        assert subs["connect"]["loop"]["detector"] == "repeated"
        assert subs["connect"]["loop"]["evidence"]["count"] == 3
        assert subs["after"]["status"] == "skipped"
    assert 'reynolds_loop_prevention_loop_detected_total{reason="repeated"} 1.0' in metrics
    (detection,) = resource["detections"]
    assert (detection["taskId"], detection["subtaskId"]) == (run.id, "connect")
    assert detection["detector"] == "repeated" and detection["evidence"]["count"] == 3
    assert detection["at"].endswith("Z")  # a timestamp as every answer gives one


async def test_a_step_allowed_to_repeat_its_failure_runs_all_its_retries(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path / "home", retry_base_s=0.01, retry_cap_s=0.02)
    app = await build(settings)
    try:
        run = await app.engine.submit(TaskSpec.model_validate(task(loop_prevention=False)))
        assert await app.engine.wait(run, 60)
        result = await app.engine.result(run.id)
    finally:
        await app.aclose()

    connect = next(s for s in result["subtasks"] if s["id"] == "connect")
    assert result["status"] == "failed"
    assert connect["status"] == "failed" and connect["attempts"] == 11
    assert "loop" not in connect
