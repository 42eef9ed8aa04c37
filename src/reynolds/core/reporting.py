"""Run metrics and the result shape of the contract, from plain rows (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reynolds.core.models import Status


def iso(ts: float | None) -> str | None:
    """An epoch time as ISO-8601 UTC, or None."""
    return (
        None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    )


def run_metrics(
    created_at: float,
    finished_at: float | None,
    subtasks: Sequence[Mapping[str, Any]],
    concurrency: int,
    ideal_makespan_s: float | None,
) -> dict[str, Any]:
    """Makespan from acceptance to the last finish, and what parallelism bought.

    - sequentialSeconds: the subtasks' own durations added up (what one at a time would take);
    - speedup: sequentialSeconds / makespanSeconds;
    - parallelExecutionRatio: the share of the granted parallel capacity (makespan × the
      concurrency actually usable) that subtasks kept busy;
    - orchestrationOverhead: the share of the makespan beyond what a perfect list scheduler
      would need with the same measured durations (`ideal_makespan_s`).
    """
    ends = [s["finished_at"] for s in subtasks if s.get("finished_at") is not None]
    end = finished_at if finished_at is not None else (max(ends) if ends else None)
    makespan = max(0.0, end - created_at) if end is not None else 0.0
    sequential = sum(
        s["finished_at"] - s["started_at"]
        for s in subtasks
        if s.get("started_at") is not None and s.get("finished_at") is not None
    )
    counts = Counter(str(s["status"]) for s in subtasks)
    total = len(subtasks)
    speedup = sequential / makespan if makespan > 0 else 0.0
    ratio = sequential / (makespan * max(concurrency, 1)) if makespan > 0 else 0.0
    overhead = 0.0
    if ideal_makespan_s is not None and makespan > 0:
        overhead = max(0.0, makespan - ideal_makespan_s) / makespan
    return {
        "makespanSeconds": round(makespan, 4),
        "sequentialSeconds": round(sequential, 4),
        "speedup": round(speedup, 3),
        "parallelExecutionRatio": round(min(ratio, 1.0), 4),
        "orchestrationOverhead": round(overhead, 4),
        "successRate": round(counts[Status.SUCCEEDED] / total, 4) if total else 0.0,
        "subtaskCounts": dict(counts),
    }


@dataclass(frozen=True, slots=True)
class TaskSeconds:
    """An ended task's times, as the metrics add them up over a window: across tasks,
    busy / capacity is the parallel execution ratio and overhead / makespan the orchestration
    overhead, each task weighing by its size (a short task cannot swing either)."""

    makespan_s: float
    busy_s: float  # subtask-seconds that ran, at most capacity_s
    capacity_s: float  # the makespan times the concurrency the task could use
    overhead_s: float  # the makespan beyond what a perfect list scheduler would need

    @classmethod
    def of(cls, metrics: Mapping[str, Any], concurrency: int) -> TaskSeconds:
        """From `run_metrics(..., concurrency, ...)`'s figures."""
        makespan = float(metrics["makespanSeconds"])
        capacity = makespan * max(concurrency, 1)
        return cls(
            makespan_s=makespan,
            busy_s=float(metrics["parallelExecutionRatio"]) * capacity,
            capacity_s=capacity,
            overhead_s=float(metrics["orchestrationOverhead"]) * makespan,
        )


def subtask_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "component": row.get("component"),
        "step": row.get("step"),
        "agentType": row.get("agent_type") or row.get("requested_agent"),
        "dependsOn": list(row.get("depends_on") or []),
        "status": row["status"],
        "attempts": row.get("attempts") or 0,
        "exitCode": row.get("exit_code"),
        "output": row.get("output") or "",
        "error": row.get("error") or (row.get("reason") or ""),
        "reason": row.get("reason"),
        "startedAt": iso(row.get("started_at")),
        "finishedAt": iso(row.get("finished_at")),
        "routing": row.get("routing"),
        **_detail(row.get("detail")),
    }


def _detail(detail: Any) -> dict[str, Any]:
    """What a subtask's stored detail adds to its view: the class of its latest failed attempt
    (`failureClass`), `loop` when loop prevention stopped it, the `usage` of its llm
    attempts, and in a task's workspace its `branch`, `commit`, `filesChanged` and `diffstat`
    (the merge step: `workspace.integration`)."""
    if not isinstance(detail, dict):
        return {}
    out = {key: detail[key] for key in ("failureClass", "loop", "usage") if key in detail}
    workspace = detail.get("workspace")
    if isinstance(workspace, dict):
        # A subtask's branch, commit, filesChanged and diffstat; the merge step's integration.
        out |= {"workspace": workspace} if "integration" in workspace else workspace
    return out


def task_result(
    task: Mapping[str, Any],
    subtasks: Sequence[Mapping[str, Any]],
    comment: str,
    now: float,
    live_metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The contract's orchestrate_task / get_task_status result."""
    views = [subtask_view(s) for s in subtasks]
    counts = Counter(v["status"] for v in views)
    failures = [
        {"id": v["id"], "status": v["status"], "reason": v["reason"], "error": v["error"][-500:]}
        for v in views
        if v["status"] in (Status.FAILED, Status.LOOP_BLOCKED)
    ]
    out: dict[str, Any] = {
        "success": task["status"] == Status.SUCCEEDED,
        "taskId": task["id"],
        "status": task["status"],
        "type": task.get("type"),
        "priority": task.get("priority"),
        "plan": task.get("plan"),
        "subtasks": views,
        "results": {"counts": dict(counts), "failures": failures},
        "metrics": dict(task.get("metrics") or live_metrics or {}),
        "reynoldsComment": comment,
        "createdAt": iso(task.get("created_at")),
        "startedAt": iso(task.get("started_at")),
        "finishedAt": iso(task.get("finished_at")),
        "timestamp": iso(now),
    }
    if task.get("message"):
        out["message"] = task["message"]
    if task.get("reason"):
        out["reason"] = task["reason"]
    if task.get("parent_id"):
        out["parentTaskId"] = task["parent_id"]
        out["depth"] = task.get("depth")
    return out


def task_summary(task: Mapping[str, Any], counts: Mapping[str, int] | None) -> dict[str, Any]:
    """One line of `list_tasks`."""
    metrics = task.get("metrics") or {}
    return {
        "taskId": task["id"],
        "type": task["type"],
        "description": task.get("description", ""),
        "status": task["status"],
        "priority": task.get("priority"),
        "createdAt": iso(task.get("created_at")),
        "finishedAt": iso(task.get("finished_at")),
        "subtaskCounts": dict(counts if counts is not None else metrics.get("subtaskCounts", {})),
    }
