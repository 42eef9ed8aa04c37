"""Validating a task grows linearly with its subtasks: a 1 MiB body holds some ten thousand,
and validation runs on the server's event loop, so a quadratic check would stall every request
for a second at a time."""

from __future__ import annotations

import gc
import time
from typing import Any

from reynolds.core.models import TaskSpec


def explicit_task(subtasks: int) -> dict[str, Any]:
    action = {"kind": "shell", "argv": ["true"]}
    return {"type": "x", "subtasks": [{"id": f"s{i}", "action": action} for i in range(subtasks)]}


def validation_s(task: dict[str, Any]) -> float:
    """The best of five, with the collector held off: its full collections grow with the heap,
    not with what is measured, and on a busy machine they decide the ratio."""
    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            started = time.perf_counter()
            TaskSpec.model_validate(task)
            best = min(best, time.perf_counter() - started)
    finally:
        gc.enable()
    return best


def test_sixteen_times_the_subtasks_take_far_less_than_256_times_as_long() -> None:
    small, large = validation_s(explicit_task(600)), validation_s(explicit_task(9_600))
    # Linear growth gives about 16; quadratic about 256. The bound is generous for a busy machine.
    assert large / small < 64, (small, large)
