"""`reynolds patterns`: the failure patterns the server learned from failed attempts."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from reynolds.entrypoints.cli import render
from reynolds.entrypoints.cli.state import print_json, state


def patterns(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="Show at most this many.")
    ] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (every pattern).")] = False,
) -> None:
    """What keeps failing: per action and pool, its failures, their main class and message."""
    st = state(ctx)
    with st.connect() as client:
        body = client.resource("patterns")
    body = body if isinstance(body, dict) else {}
    found = [p for p in body.get("failurePatterns") or [] if isinstance(p, dict)]
    window = body.get("window")
    if as_json:
        print_json({"failurePatterns": found, "window": window})
        return
    if not found:
        st.out.print("No failure patterns: no failed attempts recorded")
        return
    st.out.print(patterns_table(found[:limit]))
    more = f"; {len(found) - limit} more not shown (--limit, --json)" if len(found) > limit else ""
    st.out.print(f"Learned from the newest {render.cell(window)} failed attempts{more}")


def patterns_table(found: list[dict[str, Any]]) -> Table:
    table = Table(title="Failure patterns", title_justify="left")
    table.add_column("signature", overflow="fold")
    table.add_column("pool")
    table.add_column("failures", justify="right")
    table.add_column("main class")
    table.add_column("top message", overflow="fold")
    for pattern in found:
        classes = pattern.get("classes") or {}
        main = next(iter(classes), None) if isinstance(classes, dict) else None
        messages = [m for m in pattern.get("topMessages") or [] if isinstance(m, dict)]
        top = f"{messages[0].get('message')} (×{messages[0].get('count')})" if messages else None
        shown = render.cell(main)
        table.add_row(
            render.cell(pattern.get("signature")),
            render.cell(pattern.get("pool")),
            render.cell(pattern.get("failures")),
            shown if pattern.get("retryable", True) else f"[red]{shown}[/] (no retry)",
            render.cell(top),
        )
    return table
