"""`reynolds logs [component] [-f] [--task ID]`: a log of REYNOLDS_HOME/logs, its JSON lines
shown readable, a task's lines alone on request."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from reynolds.entrypoints.cli.lifecycle import tail_lines
from reynolds.entrypoints.cli.state import state

_COMPONENT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
# Fields a readable line shows in its head; the others follow as key=value.
_HEAD = ("timestamp", "level", "logger", "event")


def render(line: str) -> str:
    """One log line, readable: `time LEVEL logger: event key=value ...` on one line (a
    traceback below it, indented; a line that is not a JSON object as it is)."""
    try:
        record = json.loads(line)
    except ValueError:
        return line if line.endswith("\n") else line + "\n"
    if not isinstance(record, dict):
        return line if line.endswith("\n") else line + "\n"
    event = " ".join(str(record.get("event", "")).split())  # one line a record
    head = (
        f"{record.get('timestamp', '')} {str(record.get('level', '')).upper():7} "
        f"{record.get('logger', '')}: {event}"
    )
    rest = [
        f"{key}={_value(value)}"
        for key, value in record.items()
        if key not in _HEAD and key != "exception"
    ]
    text = " ".join([head, *rest])
    if "exception" in record:  # the traceback below it, indented
        text += "".join(f"\n    {line}" for line in str(record["exception"]).splitlines())
    return text + "\n"


def _value(value: Any) -> str:
    return value if isinstance(value, str) and " " not in value else json.dumps(value)


def about_task(line: str, task_id: str) -> bool:
    """Whether a JSON log line is about `task_id` (a plain line is about none)."""
    if task_id not in line:  # most lines are not: skip decoding them
        return False
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("taskId") == task_id


def logs(
    ctx: typer.Context,
    component: Annotated[
        str,
        typer.Argument(help="server (or reynolds), a pool's agents (devops-agent), a worker."),
    ] = "server",
    lines: Annotated[
        int, typer.Option("-n", "--lines", min=0, help="How many lines to show.")
    ] = 50,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines.")
    ] = False,
    task: Annotated[
        str | None, typer.Option("--task", help="Only the lines about this task.")
    ] = None,
) -> None:
    """Show the end of a log under REYNOLDS_HOME/logs, readable."""
    st = state(ctx)
    if not _COMPONENT.match(component):
        st.err.print(f"[red]error:[/] not a component name: {component!r}")
        raise typer.Exit(2)
    name = "server" if component in ("reynolds", "server") else component
    folder = st.settings.log_dir
    path = folder / f"{name}.log"
    if not path.is_file():
        there = sorted(p.stem for p in folder.glob("*.log")) if folder.is_dir() else []
        known = f"; logs here: {', '.join(there)}" if there else ""
        st.err.print(f"No log at {path} yet{known}")
        raise typer.Exit(1)
    if task is None:
        shown = tail_lines(path, lines)
    else:
        with path.open(encoding="utf-8", errors="replace") as handle:
            shown = [line for line in handle if about_task(line, task)][-lines:] if lines else []
    sys.stdout.writelines(render(line) for line in shown)
    sys.stdout.flush()
    if follow:
        try:
            _follow(path, task)
        except KeyboardInterrupt:
            return


def _follow(path: Path, task: str | None) -> None:
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        handle.seek(0, os.SEEK_END)
        while True:
            line = handle.readline()
            if line:
                if task is None or about_task(line, task):
                    sys.stdout.write(render(line))
                    sys.stdout.flush()
                continue
            if path.stat().st_size < handle.tell():
                handle.seek(0)  # the log was truncated or rotated
            time.sleep(0.25)
