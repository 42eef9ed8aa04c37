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


# The subtasks an answer lists by default (REYNOLDS_RESULT_SUBTASKS); the rest are paged.
RESULT_SUBTASKS = 500
FAILED = (Status.FAILED, Status.LOOP_BLOCKED)


@dataclass(frozen=True, slots=True)
class Listing:
    """What an answer lists of a task's subtasks: the first `limit` in the task's order
    (`shown`) and the first `limit` of those that failed, with the totals and counts."""

    shown: Sequence[Mapping[str, Any]]
    total: int
    counts: Mapping[str, int]
    failed: Sequence[Mapping[str, Any]]
    failed_total: int
    limit: int

    @classmethod
    def of(cls, rows: Sequence[Mapping[str, Any]], limit: int) -> Listing:
        """The listing of a task whose rows are all at hand."""
        failed = [row for row in rows if row["status"] in FAILED]
        return cls(
            shown=rows[:limit],
            total=len(rows),
            counts=Counter(str(row["status"]) for row in rows),
            failed=failed[:limit],
            failed_total=len(failed),
            limit=limit,
        )


def task_result(
    task: Mapping[str, Any],
    listing: Listing,
    comment: str,
    now: float,
    live_metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The contract's orchestrate_task / get_task_status result. Its long lists (subtasks,
    failures, the plan's parallel groups and critical path) stop at `listing.limit` entries;
    `truncated` then says what each holds in all and where the rest is paged."""
    views = [subtask_view(s) for s in listing.shown]
    failures = [
        {
            "id": row["id"],
            "status": row["status"],
            "reason": row.get("reason"),
            "error": (row.get("error") or row.get("reason") or "")[-500:],
        }
        for row in listing.failed
    ]
    plan, truncated = _listed_plan(task.get("plan"), listing.limit)
    if listing.total > len(views):
        truncated["subtasks"] = {
            "total": listing.total,
            "shown": len(views),
            "nextCursor": str(len(views)),
        }
    if listing.failed_total > len(failures):
        truncated["failures"] = {"total": listing.failed_total, "shown": len(failures)}
    out: dict[str, Any] = {
        "success": task["status"] == Status.SUCCEEDED,
        "taskId": task["id"],
        "status": task["status"],
        "type": task.get("type"),
        "priority": task.get("priority"),
        "plan": plan,
        "subtasks": views,
        "results": {"counts": dict(listing.counts), "failures": failures},
        "metrics": dict(task.get("metrics") or live_metrics or {}),
        "reynoldsComment": comment,
        "createdAt": iso(task.get("created_at")),
        "startedAt": iso(task.get("started_at")),
        "finishedAt": iso(task.get("finished_at")),
        "timestamp": iso(now),
    }
    if truncated:
        # Every subtask, with its parallel group and whether it is on the critical path.
        truncated["pages"] = f"/tasks/{task['id']}/subtasks"
        out["truncated"] = {"limit": listing.limit, **truncated}
    if task.get("message"):
        out["message"] = task["message"]
    if task.get("reason"):
        out["reason"] = task["reason"]
    if task.get("parent_id"):
        out["parentTaskId"] = task["parent_id"]
        out["depth"] = task.get("depth")
    return out


def _listed_plan(plan: Any, limit: int) -> tuple[Any, dict[str, Any]]:
    """`plan` with its parallel groups cut after `limit` subtask ids (the last group kept
    whole up to there) and its critical path after `limit` ids; what was cut, counted."""
    if not isinstance(plan, dict):
        return plan, {}
    truncated: dict[str, Any] = {}
    groups = plan.get("parallelGroups")
    path = plan.get("criticalPath")
    out = plan
    if isinstance(groups, list):
        ids = sum(len(group) for group in groups if isinstance(group, list))
        if ids > limit:
            kept, room = [], limit
            for group in groups:
                if room <= 0:
                    break
                kept.append(group[:room])
                room -= len(kept[-1])
            out = {**out, "parallelGroups": kept}
            truncated["parallelGroups"] = {
                "groups": len(groups),
                "subtasks": ids,
                "shownGroups": len(kept),
                "shownSubtasks": limit,
            }
    if isinstance(path, list) and len(path) > limit:
        out = {**out, "criticalPath": path[:limit]}
        truncated["criticalPath"] = {"total": len(path), "shown": limit}
    return out, truncated


def subtask_page(plan: Any, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Views of `rows` (a page of a task's subtasks), each with the parallel group it is
    in (its index in the plan's `parallelGroups`) and whether it is on the critical path:
    what a truncated answer's plan leaves out, subtask by subtask."""
    group_of: dict[str, int] = {}
    critical: set[str] = set()
    if isinstance(plan, dict):
        for index, group in enumerate(plan.get("parallelGroups") or []):
            for sub_id in group:
                group_of[sub_id] = index
        critical = set(plan.get("criticalPath") or [])
    views = []
    for row in rows:
        view = subtask_view(row)
        view["group"] = group_of.get(row["id"])
        view["critical"] = row["id"] in critical
        views.append(view)
    return views


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
