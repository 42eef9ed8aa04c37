"""The newest failed attempts with what failure patterns are learned from, one query for both
SQL dialects and one row shape for every store.

A row: task_id, subtask_id, attempt, pool, task_type, failure_class, error, finished_at; the
subtask's `output` (its end, OUTPUT_TAIL_CHARS characters) when the attempt is the subtask's
latest, whose output it is, and its error is empty (or spaces), else None; and `action`, the
subtask's action with only the fields its signature reads (never a prompt, a body or keyword
arguments).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, and_, case, func, or_, select

from reynolds.adapters.store.schema import attempts, subtasks, tasks
from reynolds.services.ports import Row

OUTPUT_TAIL_CHARS = 2000
# The action's fields a signature reads; `argv` and `server` are JSON (`server` a name, or the
# command or URL an older task gave), the rest strings.
ACTION_FIELDS = ("kind", "argv", "callable", "method", "url", "server", "tool", "model")
_JSON_FIELDS = frozenset({"argv", "server"})


def _action(values: Mapping[str, Any]) -> Row | None:
    action = {name: values[name] for name in ACTION_FIELDS if values.get(name) is not None}
    return action or None


def as_row(
    attempt: Mapping[str, Any], subtask: Mapping[str, Any] | None, task: Mapping[str, Any] | None
) -> Row:
    """A failed attempt's row, from its attempts, subtasks and tasks rows (the memory store)."""
    spec = (subtask or {}).get("spec")
    action = spec.get("action") if isinstance(spec, Mapping) else None
    output = (subtask or {}).get("output")
    latest = subtask is not None and subtask.get("attempts") == attempt["attempt"]
    silent = not (attempt["error"] or "").strip(" ")
    return {
        "task_id": attempt["task_id"],
        "subtask_id": attempt["subtask_id"],
        "attempt": attempt["attempt"],
        "pool": attempt["agent_type"],
        "task_type": (task or {}).get("type"),
        "failure_class": attempt["failure_class"],
        "error": attempt["error"],
        "output": output[-OUTPUT_TAIL_CHARS:] if latest and silent and output is not None else None,
        "finished_at": attempt["finished_at"],
        "action": _action(action) if isinstance(action, Mapping) else None,
    }


def query(limit_rows: int) -> Select[Any]:
    """The newest `limit_rows` failed attempts, newest first (SQLite and PostgreSQL).

    The newest are chosen first, from the attempts alone; only theirs are joined to read the
    actions and outputs, the costly part (a database sorts the rows it has made whole)."""
    newest = (
        select(
            attempts.c.task_id,
            attempts.c.subtask_id,
            attempts.c.attempt,
            attempts.c.agent_type.label("pool"),
            attempts.c.failure_class,
            attempts.c.error,
            attempts.c.finished_at,
            func.coalesce(attempts.c.finished_at, 0.0).label("at"),
        )
        .where(attempts.c.status == "failed")
        .order_by(*_NEWEST_FIRST)
        .limit(max(0, int(limit_rows)))
        .subquery()
    )
    joined = newest.outerjoin(
        subtasks,
        and_(subtasks.c.task_id == newest.c.task_id, subtasks.c.id == newest.c.subtask_id),
    ).outerjoin(tasks, tasks.c.id == newest.c.task_id)
    spec = subtasks.c.spec
    fields = [
        (
            spec[("action", name)] if name in _JSON_FIELDS else spec[("action", name)].as_string()
        ).label(f"action_{name}")
        for name in ACTION_FIELDS
    ]
    return (
        select(
            newest.c.task_id,
            newest.c.subtask_id,
            newest.c.attempt,
            newest.c.pool,
            tasks.c.type.label("task_type"),
            newest.c.failure_class,
            newest.c.error,
            _output(newest.c.attempt, newest.c.error).label("output"),
            newest.c.finished_at,
            *fields,
        )
        .select_from(joined)
        .order_by(
            newest.c.at.desc(),
            newest.c.task_id.desc(),
            newest.c.subtask_id.desc(),
            newest.c.attempt.desc(),
        )
    )


_NEWEST_FIRST = (
    func.coalesce(attempts.c.finished_at, 0.0).desc(),
    attempts.c.task_id.desc(),
    attempts.c.subtask_id.desc(),
    attempts.c.attempt.desc(),
)


def _output(attempt: Any, error: Any) -> Any:
    """The end of the subtask's output, for its latest attempt when that said nothing on its
    error stream: reading a long output whole is what costs."""
    output = subtasks.c.output
    length = func.length(output)
    tail = case(
        (length > OUTPUT_TAIL_CHARS, func.substr(output, length - (OUTPUT_TAIL_CHARS - 1))),
        else_=output,
    )
    silent = or_(error.is_(None), func.trim(error) == "")
    return case((and_(subtasks.c.attempts == attempt, silent), tail), else_=None)


def from_query(row: Mapping[str, Any]) -> Row:
    """A row of `query`, in the shape `as_row` gives."""
    out = {key: value for key, value in row.items() if not key.startswith("action_")}
    out["action"] = _action({name: row[f"action_{name}"] for name in ACTION_FIELDS})
    return out


def sort_key(row: Mapping[str, Any]) -> tuple[float, str, str, int]:
    """The order of `query`, for a store that sorts in Python (reverse it: newest first)."""
    return (row["finished_at"] or 0.0, row["task_id"], row["subtask_id"], row["attempt"])
