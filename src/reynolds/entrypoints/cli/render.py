"""Rich renderings of what the server answers: status, pools, tasks and task results."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "loop_blocked": "red",
    "skipped": "dim",
    "running": "cyan",
    "ready": "blue",
    "pending": "dim",
    "planned": "magenta",
}


def styled(status: Any) -> str:
    text = escape(str(status or "-"))
    style = _STATUS_STYLE.get(str(status))
    return f"[{style}]{text}[/]" if style else text


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def seconds(value: Any) -> str:
    return f"{value:.2f} s" if isinstance(value, int | float) else "-"


def times(value: Any) -> str:
    return f"{value:.2f}x" if isinstance(value, int | float) else "-"


def counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def duration(subtask: dict[str, Any]) -> str:
    started, finished = parse_time(subtask.get("startedAt")), parse_time(subtask.get("finishedAt"))
    if started is None or finished is None:
        return "-"
    return seconds((finished - started).total_seconds())


def cell(value: Any) -> str:
    return "-" if value is None or value == "" else escape(str(value))


def render_status(console: Console, status: dict[str, Any]) -> None:
    store = status.get("store")
    store_text = store.get("kind") or store.get("url") if isinstance(store, dict) else store
    console.print(
        f"[bold]Reynolds[/] {cell(status.get('version'))}: backend "
        f"{cell(status.get('backend'))}, store {cell(store_text)}, "
        f"up {seconds(status.get('uptimeSeconds'))}"
    )
    pools = [p for p in status.get("pools") or [] if isinstance(p, dict)]
    if pools:
        console.print(pools_table(pools))
    counts = status.get("tasks") or {}
    if isinstance(counts, dict) and counts:
        table = Table(title="Tasks", title_justify="left")
        table.add_column("status")
        table.add_column("count", justify="right")
        for name, count in counts.items():
            table.add_row(styled(name), cell(count))
        console.print(table)
    else:
        console.print("Tasks: none yet")


def pools_table(pools: list[dict[str, Any]]) -> Table:
    table = Table(title="Agent pools", title_justify="left")
    for column in ("pool", "replicas", "busy", "queue", "utilization", "success", "circuit"):
        table.add_column(column, justify="left" if column in ("pool", "circuit") else "right")
    for pool in pools:
        replicas = cell(pool.get("replicas"))
        if pool.get("minReplicas") is not None and pool.get("maxReplicas") is not None:
            replicas += f" ({pool['minReplicas']}..{pool['maxReplicas']})"
        table.add_row(
            cell(pool.get("type") or pool.get("name")),
            replicas,
            cell(pool.get("busy")),
            cell(pool.get("queueDepth")),
            percent(pool.get("utilization")),
            percent(pool.get("successRate")),
            circuit(pool.get("circuit"), pool.get("breaker")),
        )
    return table


def circuit(state: Any, breaker: Any) -> str:
    """A breaker's state, with the seconds left before its probe while it is open."""
    text = cell(state)
    wait = breaker.get("reopensInSeconds") if isinstance(breaker, dict) else None
    return f"{text} (probe in {wait:g} s)" if isinstance(wait, int | float) else text


def downstreams_table(downstreams: list[dict[str, Any]]) -> Table:
    """Downstreams with a breaker that saw failures or an adaptive limit."""
    table = Table(title="Downstreams", title_justify="left")
    for column in ("downstream", "circuit", "failures in a row", "limit", "in flight"):
        table.add_column(column, justify="right" if column == "in flight" else "left")
    for row in downstreams:
        given, held = row.get("breaker"), row.get("limiter")
        breaker: dict[str, Any] = given if isinstance(given, dict) else {}
        limiter: dict[str, Any] | None = held if isinstance(held, dict) else None
        limit = "-"
        if limiter:
            limit = f"{limiter.get('limit')} of {limiter.get('ceiling')}"
            if limiter.get("heldForSeconds"):
                limit += f", held {limiter['heldForSeconds']:g} s"
        table.add_row(
            cell(row.get("downstream")),
            circuit(breaker.get("state"), breaker),
            cell(breaker.get("failuresInRow")),
            escape(limit),
            cell(row.get("inFlight")),
        )
    return table


def percent(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value * 100:.0f}%" if value <= 1 else f"{value:.0f}%"


def render_plan(console: Console, result: dict[str, Any]) -> None:
    """The task id and the plan summary: groups, critical path, estimated speedup."""
    console.print(f"Task [bold]{cell(result.get('taskId'))}[/]: {styled(result.get('status'))}")
    plan = result.get("plan") or {}
    if not isinstance(plan, dict) or not plan:
        return
    groups = plan.get("parallelGroups") or []
    path = plan.get("criticalPath") or []
    speedup = plan.get("estimatedSpeedup")
    console.print(
        f"Plan: {counted(len(result.get('subtasks') or []), 'subtask')} in "
        f"{counted(len(groups), 'parallel group')}, critical path {len(path)} long, "
        f"estimated speedup {times(speedup)}"
    )
    if path:
        console.print(f"Critical path: {escape(' -> '.join(str(p) for p in path))}")


def subtasks_table(subtasks: list[dict[str, Any]], title: str = "Subtasks") -> Table:
    """One row per subtask; in a task workspace, its branch and how many files it changed."""
    branches = any("branch" in sub for sub in subtasks)
    table = Table(title=title, title_justify="left")
    table.add_column("subtask", overflow="fold")
    table.add_column("agent")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("exit code", justify="right")
    table.add_column("duration", justify="right")
    if branches:
        table.add_column("branch", overflow="fold")
        table.add_column("files", justify="right")
    for sub in subtasks:
        row = [
            cell(sub.get("id")),
            cell(sub.get("agentType")),
            styled(sub.get("status")),
            cell(sub.get("attempts")),
            cell(sub.get("exitCode")),
            duration(sub),
        ]
        if branches:
            files = sub.get("filesChanged")
            row += [cell(sub.get("branch")), cell(len(files) if isinstance(files, list) else None)]
        table.add_row(*row)
    return table


def render_integration(console: Console, subtasks: list[dict[str, Any]]) -> None:
    """What a task workspace's merge step merged and left out."""
    for sub in subtasks:
        workspace = sub.get("workspace")
        done = workspace.get("integration") if isinstance(workspace, dict) else None
        if not isinstance(done, dict):
            continue
        merged, skipped = done.get("merged") or [], done.get("skipped") or []
        console.print(
            f"Merged {len(merged)} branch(es) into {cell(done.get('into'))} "
            f"(at {cell(str(done.get('commit') or '')[:12])}); {len(skipped)} left out"
        )
        for left in skipped:
            files = ", ".join(left.get("files") or []) or "-"
            console.print(
                f"  [red]{cell(left.get('branch'))}[/]: {cell(left.get('reason'))} in "
                f"{escape(files)}"
            )


def render_result(console: Console, result: dict[str, Any]) -> None:
    """A finished (or current) task: subtasks, their errors, and the metrics."""
    subtasks = [s for s in result.get("subtasks") or [] if isinstance(s, dict)]
    if subtasks:
        console.print(subtasks_table(subtasks))
        render_integration(console, subtasks)
    for sub in subtasks:
        if sub.get("status") in ("failed", "loop_blocked") and sub.get("error"):
            first = str(sub["error"]).strip().splitlines()
            console.print(f"[red]{cell(sub.get('id'))}[/]: {escape(first[-1] if first else '')}")
    metrics = result.get("metrics") or {}
    if isinstance(metrics, dict) and metrics:
        speedup = metrics.get("speedup")
        console.print(
            f"Makespan {seconds(metrics.get('makespanSeconds'))}, sequential "
            f"{seconds(metrics.get('sequentialSeconds'))}, speedup {times(speedup)}, success rate "
            f"{percent(metrics.get('successRate'))}"
        )
    console.print(f"Task {cell(result.get('taskId'))}: {styled(result.get('status'))}")
    if result.get("message"):
        console.print(escape(str(result["message"])))


def tasks_table(tasks: list[dict[str, Any]]) -> Table:
    table = Table(title="Tasks", title_justify="left")
    table.add_column("task", overflow="fold")
    table.add_column("type")
    table.add_column("status")
    table.add_column("priority")
    table.add_column("created")
    table.add_column("finished")
    table.add_column("subtasks")
    for task in tasks:
        counts = task.get("subtaskCounts") or {}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items()) if counts else "-"
        table.add_row(
            cell(task.get("taskId")),
            cell(task.get("type")),
            styled(task.get("status")),
            cell(task.get("priority")),
            cell(task.get("createdAt")),
            cell(task.get("finishedAt")),
            escape(summary),
        )
    return table
