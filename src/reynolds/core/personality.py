"""The Reynolds voice for result comments; plain when personality is off."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def task_comment(status: str, metrics: Mapping[str, Any], total: int, on: bool = True) -> str:
    """One line about how a task went, in character or plainly."""
    speedup = float(metrics.get("speedup") or 0.0)
    if status == "succeeded":
        if not on:
            return f"{total} subtasks succeeded; speedup {speedup:.1f}x over one at a time."
        if speedup >= 1.5:
            return (
                f"{total} subtasks, all done, {speedup:.1f}x faster than doing them one by one. "
                "Sequential execution called; I let it go to voicemail."
            )
        return f"All {total} subtasks landed. Smooth, quiet, done — my favourite kind of work."
    if status == "failed":
        failed = int((metrics.get("subtaskCounts") or {}).get("failed", 0))
        if not on:
            return f"{failed} of {total} subtasks failed; see each subtask's error."
        return (
            f"{failed} of {total} subtasks stumbled. No drama: the errors are right there, "
            "and everything that could finish, did."
        )
    if status == "cancelled":
        return (
            "Cancelled; running work was stopped."
            if not on
            else ("Cancelled as asked. Knowing when to stop is also Maximum Effort.")
        )
    if status == "planned":
        return (
            "Planned only: nothing to run yet."
            if not on
            else ("The plan is ready; give me something to run and I'll take it from here.")
        )
    if not on:
        return f"{status}: in progress."
    return "In motion. Parallel lanes open, coffee optional."
