"""What the store's writer queue holds: each write checked when it is queued (a bad row is the
caller's StoreError at once, never a failed batch later), then gathered into a `Batch`."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table

from reynolds.adapters.store.batch import Batch, primary_key
from reynolds.adapters.store.schema import audit, orchestration_decisions, scaling_events
from reynolds.errors import StoreError
from reynolds.services.ports import Row

logger = logging.getLogger(__name__)

# Queue items are (kind, payload); kind is a table for upserts, else one of these.
EVENT, DURATION, AUDIT, AUDIT_LATER = "event", "duration", "audit", "audit_later"
DECISION, SCALING, FLUSH, STOP = "decision", "scaling", "flush", "stop"
Item = tuple[Table | str, Any]
# The most rows one read of the audit log or the scaling events returns.
AUDIT_MAX_LIMIT = 10_000

_EVENT_COLUMNS = ("task_id", "subtask_id", "kind", "data", "at")
_AUDIT_COLUMNS = tuple(column.name for column in audit.columns if column.name != "seq")
_AUDIT_KEYS = frozenset(_AUDIT_COLUMNS)
_AUDIT_REQUIRED = ("at", "kind", "decision")
_DECISION_KEYS = frozenset(
    column.name for column in orchestration_decisions.columns if column.name != "seq"
)
_SCALING_KEYS = frozenset(column.name for column in scaling_events.columns if column.name != "id")


def table_row(table: Table, row: Row) -> Row:
    """A copy of `row` for an upsert into `table` (the caller may go on changing its own),
    or StoreError when it lacks its key or names an unknown column."""
    unknown = row.keys() - table.columns.keys()
    missing = [name for name in primary_key(table) if name not in row]
    if unknown or missing:
        raise StoreError(
            f"a {table.name} row needs its key and only known columns",
            unknown=sorted(unknown),
            missing=missing,
        )
    return dict(row)


def event_row(row: Row, clock: Callable[[], float] = time.time, server: str | None = None) -> Row:
    """The event with every column, stamped with `clock` when it has no time and with the
    `server` writing it (on a store servers share; None otherwise)."""
    unknown = row.keys() - _EVENT_COLUMNS
    if unknown or "task_id" not in row or "kind" not in row:
        raise StoreError("an event needs task_id and kind", unknown=sorted(unknown))
    return {
        "task_id": row["task_id"],
        "subtask_id": row.get("subtask_id"),
        "kind": row["kind"],
        "data": row.get("data"),
        "at": clock() if row.get("at") is None else row["at"],
        "server": server,
    }


def audit_row(row: Row) -> Row:
    """`row` with every audit column, or StoreError naming what is wrong with it."""
    # Every column present, so that one statement writes the whole batch's records; the
    # engine passes them all, which is the cheap path (one per action attempt).
    if row.keys() == _AUDIT_KEYS:
        full = dict(row)
    else:
        full = {name: row.get(name) for name in _AUDIT_COLUMNS}
    unknown = row.keys() - _AUDIT_KEYS
    missing = [name for name in _AUDIT_REQUIRED if full[name] is None]
    if unknown or missing:
        raise StoreError(
            "an audit record needs at, kind and decision, and only known columns",
            unknown=sorted(unknown),
            missing=missing,
        )
    return full


def decision_row(row: Row) -> Row:
    """A routing decision naming every column but `seq`."""
    return _exactly(row, _DECISION_KEYS, "a routing decision needs exactly its columns")


def scaling_row(row: Row) -> Row:
    """A change of a pool's replicas naming every column but `id`."""
    return _exactly(row, _SCALING_KEYS, "a scaling event needs exactly its columns")


def duration(
    keys: Sequence[str], seconds: float, ok: bool, clock: Callable[[], float] = time.time
) -> tuple[Any, ...]:
    """One measured duration for each of `keys` (a bare string is one key), taken now."""
    if not math.isfinite(seconds) or seconds < 0:
        raise StoreError("a duration must be a finite number of seconds", seconds=seconds)
    names = (keys,) if isinstance(keys, str) else tuple(keys)
    return (names, float(seconds), bool(ok), clock())


def to_batch(items: list[Item]) -> Batch:
    """The writes among `items` as one batch (flushes and stops are not writes)."""
    batch = Batch()
    for kind, payload in items:
        if isinstance(kind, Table):
            batch.upserts.setdefault(kind, []).append(payload)
        elif kind == EVENT:
            batch.events.append(payload)
        elif kind == DURATION:
            batch.durations.append(payload)
        elif kind == AUDIT:
            batch.audit.append(payload)
        elif kind == AUDIT_LATER:
            row = _built_audit_row(payload)
            if row is not None:
                batch.audit.append(row)
        elif kind == DECISION:
            batch.decisions.append(payload)
        elif kind == SCALING:
            batch.scaling.append(payload)
    return batch


def _exactly(row: Row, keys: frozenset[str], message: str) -> Row:
    if row.keys() != keys:
        raise StoreError(
            message, unknown=sorted(row.keys() - keys), missing=sorted(keys - row.keys())
        )
    return row


def _built_audit_row(build: Callable[[], Row]) -> Row | None:
    try:
        return audit_row(build())
    except Exception:  # one record's failure must not take its batch down
        logger.exception("an audit record could not be made; it is left out")
        return None
