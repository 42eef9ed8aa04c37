"""`reynolds audit`: who ran what, and what was refused."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from reynolds.core.audit import PAGE_DEFAULT, PAGE_MAX
from reynolds.entrypoints.cli import render
from reynolds.entrypoints.cli.state import print_json, state

_DECISION_STYLE = {"allowed": "green", "denied": "red", "rejected": "yellow"}


def audit(
    ctx: typer.Context,
    task: Annotated[str | None, typer.Option("--task", help="Only this task's records.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="10m, 2h, 1d, or an ISO-8601 time such as 2026-11-25T10:00Z."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=PAGE_MAX, help="Records on a page, the newest.")
    ] = PAGE_DEFAULT,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Read the page of older records it names.")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Read every page, back to the oldest record.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The audit log: one record per tool call and per action attempt, oldest first."""
    st = state(ctx)
    pages: list[list[dict[str, Any]]] = []
    with st.connect() as client:
        while True:
            records, cursor = client.audit(task_id=task, since=since, limit=limit, cursor=cursor)
            pages.append(records)
            if not every or cursor is None:
                break
    # Pages go back in time, each oldest first.
    records = [record for page in reversed(pages) for record in page]
    if as_json:
        print_json({"records": records, "nextCursor": cursor})
    elif records:
        st.out.print(audit_table(records))
        if cursor is not None:
            st.out.print(f"Older records: the same command with --cursor {cursor}, or --all")
    else:
        st.out.print("No audit records" + (f" for task {render.cell(task)}" if task else ""))


def audit_table(records: list[dict[str, Any]]) -> Table:
    """The records as a Rich table; argv is shown as recorded (already redacted)."""
    table = Table(title="Audit", title_justify="left")
    for name in ("time", "token", "what", "task / subtask", "pool", "decision", "outcome"):
        table.add_column(name)
    table.add_column("exit", justify="right")
    table.add_column("time s", justify="right")
    for r in records:
        decision = str(r.get("decision") or "-")
        style = _DECISION_STYLE.get(decision)
        shown = f"[{style}]{escape(decision)}[/]" if style else escape(decision)
        if r.get("detail"):
            shown += f"\n[dim]{escape(str(r['detail']))}[/]"
        table.add_row(
            render.cell(r.get("at")),
            render.cell(r.get("tokenName")),
            _what(r),
            _where(r),
            render.cell(r.get("pool")),
            shown,
            render.cell(r.get("outcome")),
            render.cell(r.get("exitCode")),
            _seconds(r.get("durationSeconds")),
        )
    return table


def _what(record: dict[str, Any]) -> str:
    if record.get("kind") == "tool":
        return f"tool {render.cell(record.get('tool'))}"
    argv = record.get("argv")
    text = " ".join(str(a) for a in argv) if isinstance(argv, list) else ""
    cwd = f" (in {record['cwd']})" if record.get("cwd") else ""
    return f"{render.cell(record.get('actionKind'))}: {escape(text + cwd)}"


def _where(record: dict[str, Any]) -> str:
    task = record.get("taskId")
    if not task:
        return "-"
    sub = record.get("subtaskId")
    attempt = record.get("attempt")
    tail = f" / {sub}" + (f" #{attempt}" if attempt else "") if sub else ""
    return escape(f"{task}{tail}")


def _seconds(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"
