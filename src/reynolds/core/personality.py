"""The Reynolds voice for result comments; plain when personality is off."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def task_comment(
    status: str,
    metrics: Mapping[str, Any],
    total: int,
    on: bool = True,
    reason: str | None = None,
) -> str:
    """One line about how a task went — what actually happened: the speed-up it achieved, a
    loop stopped, a budget or deadline hit — in character or plainly."""
    speedup = float(metrics.get("speedup") or 0.0)
    if reason in ("budget_exceeded", "deadline_exceeded"):
        what = "its deadline passed" if reason == "deadline_exceeded" else "its budget ran out"
        if not on:
            return f"Stopped: {what}; nothing new started after that."
        return f"Stopped because {what}. I keep promises, including the ones about money and time."
    if status == "loop_blocked":
        stopped = int((metrics.get("subtaskCounts") or {}).get("loop_blocked", 0))
        if not on:
            return f"Loop prevention stopped {stopped} subtask(s) repeating the same failure."
        return (
            f"I stopped {stopped} subtask(s) doing the same failing thing again. "
            "Fix the cause; I'll happily run it then."
        )
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
