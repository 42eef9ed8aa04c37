"""`reynolds orchestrate FILE`: submit a task, then watch it to the end."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table

from reynolds.core.models import FINISHED
from reynolds.entrypoints.cli import render
from reynolds.entrypoints.cli.client import ReynoldsClient
from reynolds.entrypoints.cli.state import CliState, print_json, state
from reynolds.entrypoints.cli.taskfile import (
    Approach,
    TaskFileError,
    read_task_file,
    with_overrides,
)

POLL_S = 0.2
LIVE_ROWS = 15
EXIT_BY_STATUS = {"succeeded": 0, "planned": 3, "loop_blocked": 4}


def orchestrate(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            help="The task as .json, .yaml or .yml: a task or {task, strategy}; - reads stdin."
        ),
    ],
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Watch the task to the end.")
    ] = True,
    approach: Annotated[
        Approach | None, typer.Option("--approach", help="Override the strategy.")
    ] = None,
    max_concurrency: Annotated[
        int | None,
        typer.Option("--max-concurrency", min=1, help="Override the strategy's concurrency cap."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print only the final result as JSON.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Run it even if loop prevention refuses it as a resubmission loop."
        ),
    ] = False,
) -> None:
    """Run a task; exits 0 succeeded, 1 failed or cancelled, 2 invalid input, 3 planned,
    4 stopped by loop prevention."""
    st = state(ctx)
    try:
        arguments = read_task_file(file, sys.stdin)
    except TaskFileError as exc:
        st.err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    arguments = with_overrides(arguments, approach=approach, max_concurrency=max_concurrency)
    with st.connect() as client:
        forced = {"force": True} if force else {}
        parent = parent_of(os.environ)
        result = client.call_tool(
            "orchestrate_task", {**arguments, **forced, **parent, "wait": False}
        )
        if not as_json:
            render.render_plan(st.out, result)
            st.comment(result.get("reynoldsComment"))
        if wait and result.get("status") not in FINISHED:
            try:
                result = _watch(st, client, result, show=not as_json)
            except KeyboardInterrupt:
                task_id = result.get("taskId")
                st.err.print(
                    f"Stopped watching; task {task_id} keeps running. "
                    f"Cancel it with: reynolds tasks cancel {task_id}"
                )
                raise typer.Exit(130) from None
    finish(st, result, as_json=as_json, waited=wait)


def parent_of(environ: Mapping[str, str]) -> dict[str, str]:
    """Inside an action (REYNOLDS_TASK_ID set), the task and subtask submitting this one."""
    task_id = environ.get("REYNOLDS_TASK_ID")
    if not task_id:
        return {}
    subtask_id = environ.get("REYNOLDS_SUBTASK_ID")
    return {"parentTaskId": task_id, **({"parentSubtaskId": subtask_id} if subtask_id else {})}


def finish(st: CliState, result: dict[str, Any], *, as_json: bool, waited: bool) -> None:
    """Print the outcome and exit with the code its status maps to."""
    status = str(result.get("status"))
    if as_json:
        print_json(result)
    elif status == "planned" or (status == "loop_blocked" and result.get("taskId") is None):
        # Nothing ran: a plan without steps, or a resubmission loop prevention refused.
        st.out.print(escape(str(result.get("message") or "Nothing to run yet.")))
    elif waited:
        render.render_result(st.out, result)
    else:
        st.out.print(f"Follow it with: reynolds tasks show {result.get('taskId')}")
    if not waited and status not in FINISHED:
        raise typer.Exit(0)
    raise typer.Exit(EXIT_BY_STATUS.get(status, 1))


def _watch(
    st: CliState, client: ReynoldsClient, result: dict[str, Any], *, show: bool
) -> dict[str, Any]:
    """Poll the task until it finishes; a live display on a terminal, lines elsewhere."""
    task_id = str(result["taskId"])
    if show and st.out.is_terminal:
        with Live(_live_view(result), console=st.out, transient=True) as live:
            while result.get("status") not in FINISHED:
                time.sleep(POLL_S)
                result = client.task(task_id)
                live.update(_live_view(result))
        return result
    reported: set[str] = set()
    while True:
        if show:
            _report_finished(st, result, reported)
        if result.get("status") in FINISHED:
            return result
        time.sleep(POLL_S)
        result = client.task(task_id)


def _report_finished(st: CliState, result: dict[str, Any], reported: set[str]) -> None:
    for sub in result.get("subtasks") or []:
        sub_id = str(sub.get("id"))
        if sub.get("status") in FINISHED and sub_id not in reported:
            reported.add(sub_id)
            st.out.print(
                f"  {render.cell(sub_id)}: {render.styled(sub.get('status'))} "
                f"({render.duration(sub)})"
            )


def _live_view(result: dict[str, Any]) -> RenderableType:
    subtasks = [s for s in result.get("subtasks") or [] if isinstance(s, dict)]
    done = sum(s.get("status") in FINISHED for s in subtasks)
    running = [s for s in subtasks if s.get("status") == "running"]
    finished = [s for s in subtasks if s.get("status") in FINISHED]
    shown = (running + finished[::-1])[:LIVE_ROWS]
    header = Table.grid(padding=(0, 1))
    header.add_row(
        ProgressBar(total=max(len(subtasks), 1), completed=done, width=40),
        f"{done}/{len(subtasks)} finished, {len(running)} running",
    )
    return Group(header, render.subtasks_table(shown, title=f"Task {result.get('taskId')}"))
