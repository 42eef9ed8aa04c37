"""`reynolds tasks list|show|cancel`."""

from __future__ import annotations

from typing import Annotated

import typer

from reynolds.entrypoints.cli import render
from reynolds.entrypoints.cli.state import print_json, state

tasks_app = typer.Typer(help="List, show and cancel tasks.", no_args_is_help=True)


@tasks_app.command("list")
def list_tasks(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="Only tasks with this status.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The most recent tasks, newest first."""
    st = state(ctx)
    with st.connect() as client:
        tasks = client.list_tasks(status=status, limit=limit)
    if as_json:
        print_json({"tasks": tasks})
    elif tasks:
        st.out.print(render.tasks_table([t for t in tasks if isinstance(t, dict)]))
    else:
        st.out.print("No tasks" + (f" with status {status}" if status else ""))


@tasks_app.command("show")
def show(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One task: its plan, subtasks and metrics."""
    st = state(ctx)
    with st.connect() as client:
        result = client.task(task_id)
    if as_json:
        print_json(result)
        return
    render.render_plan(st.out, result)
    render.render_result(st.out, result)
    st.comment(result.get("reynoldsComment"))


@tasks_app.command("cancel")
def cancel(ctx: typer.Context, task_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Cancel a task: pending subtasks never start, running ones are stopped."""
    st = state(ctx)
    with st.connect() as client:
        result = client.cancel(task_id)
    status = result.get("status") if isinstance(result, dict) else None
    st.out.print(f"Task {render.cell(task_id)}: {render.styled(status or 'cancel requested')}")
