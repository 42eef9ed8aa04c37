"""Validating a task grows linearly with its subtasks: a 1 MiB body holds some ten thousand,
and validation runs on the server's event loop, so a quadratic check would stall every request
for a second at a time."""

from __future__ import annotations

import time
from typing import Any

from reynolds.core.models import TaskSpec


def explicit_task(subtasks: int) -> dict[str, Any]:
    action = {"kind": "shell", "argv": ["true"]}
    return {"type": "x", "subtasks": [{"id": f"s{i}", "action": action} for i in range(subtasks)]}


def validation_s(task: dict[str, Any]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        TaskSpec.model_validate(task)
        best = min(best, time.perf_counter() - started)
    return best


def test_four_times_the_subtasks_take_far_less_than_sixteen_times_as_long() -> None:
    small, large = validation_s(explicit_task(2_000)), validation_s(explicit_task(8_000))
    # Linear growth gives about 4; quadratic about 16. The bound is generous for a busy machine.
    assert large / small < 8, (small, large)
