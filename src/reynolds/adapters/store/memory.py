"""A `Store` held in memory, for tests of what runs over the store (the scheduler first).

It keeps the SQL store's contract: the same tables and columns (schema.py), writes queued
and committed in batches by a writer thread, reads that see only committed rows, write
marks, flushes that fail when a batch was given up. Nothing survives `close`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from sqlalchemy import JSON, Table
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from reynolds.adapters.store import failed_attempts
from reynolds.adapters.store.batch import coalesce, observe, primary_key, required_columns
from reynolds.adapters.store.ownership import UNFINISHED
from reynolds.adapters.store.rows import (
    AUDIT_MAX_LIMIT,
    audit_row,
    decision_row,
    duration,
    event_row,
    scaling_row,
    table_row,
)
from reynolds.adapters.store.schema import (
    attempts,
    audit,
    experiments,
    subtasks,
    tasks,
)
from reynolds.errors import StoreError, StoreUnavailable
from reynolds.services.ports import Distribution, Row

logger = logging.getLogger(__name__)

_UPSERTED = (tasks, subtasks, attempts, experiments)
_FLUSH, _STOP = "flush", "stop"
_Item = tuple[Table | str, Any]


def _json_columns(table: Table) -> frozenset[str]:
    return frozenset(c.name for c in table.columns if isinstance(c.type, JSON))


def _defaults(table: Table) -> Row:
    """Every column of a new row: its scalar default, else None."""
    out: Row = {}
    for column in table.columns:
        default = column.default
        out[column.name] = default.arg if isinstance(default, ScalarElementColumnDefault) else None
    return out


_JSON = {table.name: _json_columns(table) for table in (*_UPSERTED, audit)}
_JSON["events"] = frozenset({"data"})
_JSON["orchestration_decisions"] = frozenset({"scores"})
_NEW_ROW = {table.name: _defaults(table) for table in _UPSERTED}
_REQUIRED = {table.name: required_columns(table) for table in _UPSERTED}
_KEYS = {table.name: primary_key(table) for table in _UPSERTED}


def _stored(table: str, row: Row) -> Row:
    """The row as a database gives it back: JSON values as fresh copies, string enums as
    their values. TypeError or ValueError when a JSON value cannot be encoded."""
    json_columns = _JSON.get(table, frozenset())
    out: Row = {}
    for name, value in row.items():
        if value is not None and name in json_columns:
            value = json.loads(json.dumps(value))
        elif isinstance(value, str) and type(value) is not str:
            value = str.__str__(value)
        out[name] = value
    return out


class _Tables:
    """The committed rows."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[tuple[Any, ...], Row]] = {t.name: {} for t in _UPSERTED}
        self.events: list[Row] = []
        self.durations: dict[str, Row] = {}
        self.audit: list[Row] = []
        self.decisions: list[Row] = []
        self.scaling: list[Row] = []
        self.seq = itertools.count(1)


class MemoryStore:
    """A `Store` in this process's memory; `server_id` owns the tasks it inserts."""

    # Kept for the SQL store's interface: a batch that cannot be encoded fails at once.
    retry_delays_s: tuple[float, ...] = ()

    def __init__(
        self,
        *,
        batch_interval_s: float = 0.005,
        server_id: str = "memory",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server_id = server_id
        self._batch_interval_s = batch_interval_s
        self._clock = clock
        self._tables = _Tables()
        self._lock = threading.Lock()  # guards reads against the writer's commits
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._marks = itertools.count(1)
        self._enqueued = 0
        self._durable = 0
        self._dropped = 0
        self._reported = 0
        self._last_error = ""
        self._thread: threading.Thread | None = None
        self._closed = False
        self._callbacks: list[Callable[[list[Row]], None]] = []

    # -- lifecycle --

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="memory-store", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Commit what is queued and stop the writer."""
        if self._thread is not None and not self._closed:
            try:
                self.flush_sync()
            finally:
                self._closed = True
                self._queue.put((_STOP, None))
                self._wake.set()
                self._thread.join(timeout=60)
        self._closed = True

    # -- queued writes --

    def put_task(self, row: Row) -> None:
        self._put(tasks, row)

    def put_subtask(self, row: Row) -> None:
        self._put(subtasks, row)

    def put_attempt(self, row: Row) -> None:
        self._put(attempts, row)

    def put_experiment(self, row: Row) -> None:
        self._put(experiments, row)

    def add_event(self, row: Row) -> None:
        self._enqueue("events", event_row(row, self._clock))

    def add_audit(self, row: Row) -> None:
        self._enqueue("audit", audit_row(row))

    def add_audit_later(self, build: Callable[[], Row]) -> None:
        self._enqueue("audit_later", build)

    def add_decision(self, row: Row) -> None:
        self._enqueue("orchestration_decisions", dict(decision_row(row)))

    def add_scaling_event(self, row: Row) -> None:
        self._enqueue("scaling_events", dict(scaling_row(row)))

    def record_duration(self, keys: Sequence[str], seconds: float, ok: bool) -> None:
        self._enqueue("durations", duration(keys, seconds, ok, self._clock))

    def on_commit(self, callback: Callable[[list[Row]], None]) -> None:
        self._callbacks.append(callback)

    def on_lost(self, callback: Callable[[set[str]], None]) -> None:
        """Nothing to tell: no other server shares a memory store."""

    def write_mark(self) -> int:
        return self._enqueued

    def durable(self, mark: int) -> bool:
        return self._durable >= mark

    async def flush(self) -> None:
        await asyncio.wrap_future(self._enqueue_flush())

    def flush_sync(self) -> None:
        self._enqueue_flush().result()

    def _put(self, table: Table, row: Row) -> None:
        self._enqueue(table, table_row(table, row))

    def _enqueue(self, kind: Table | str, payload: Any) -> None:
        if self._closed:
            raise StoreError("the store is closed")
        self._queue.put((kind, payload))
        self._enqueued = next(self._marks)

    def _enqueue_flush(self) -> Future[None]:
        if self._thread is None or not self._thread.is_alive() or self._closed:
            raise StoreUnavailable("the memory store is not running", store="memory")
        if threading.current_thread() is self._thread:
            raise StoreError("an on_commit callback cannot flush: it would wait for itself")
        future: Future[None] = Future()
        self._queue.put((_FLUSH, (future, self._dropped)))
        self._wake.set()
        return future

    # -- the writer thread --

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            if items[0][0] not in (_FLUSH, _STOP):
                self._wake.wait(self._batch_interval_s)
            self._wake.clear()
            collected = self._enqueued
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(items, collected)
            if any(kind == _STOP for kind, _ in items):
                return

    def _commit(self, items: list[_Item], collected: int) -> None:
        try:
            writes = [
                _encoded(kind, payload) for kind, payload in items if kind not in (_FLUSH, _STOP)
            ]
        except (TypeError, ValueError) as exc:
            self._dropped += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            logger.error(
                "store commit failed; %d writes given up: %s", len(items), self._last_error
            )
            writes = None
        committed: list[Row] = []
        if writes is not None:
            with self._lock:
                committed = self._apply([w for w in writes if w is not None])
            self._durable = max(self._durable, collected)
        if committed:
            for callback in tuple(self._callbacks):
                try:
                    callback(committed)
                except Exception:
                    logger.exception("store on_commit callback failed")
        self._resolve(items)

    def _apply(self, writes: list[tuple[str, Any]]) -> list[Row]:
        t = self._tables
        events: list[Row] = []
        upserts: dict[str, list[Row]] = {}
        for kind, payload in writes:
            if kind in t.rows:
                upserts.setdefault(kind, []).append(payload)
            elif kind == "events":
                events.append(payload | {"seq": next(t.seq)})
            elif kind == "durations":
                names, seconds, ok, at = payload
                for key in names:
                    t.durations[key] = observe(t.durations.get(key), key, seconds, ok, at)
            elif kind == "audit":
                t.audit.append(payload | {"seq": len(t.audit) + 1})
            elif kind == "orchestration_decisions":
                t.decisions.append(payload | {"seq": len(t.decisions) + 1})
            elif kind == "scaling_events":
                t.scaling.append(payload | {"id": len(t.scaling) + 1})
        # Puts of one key in one batch merge first, later fields winning, as the SQL store's.
        for table, rows in upserts.items():
            for row in coalesce(rows, _KEYS[table]):
                self._upsert(table, row)
        t.events.extend(events)
        return [dict(row) for row in events]

    def _upsert(self, table: str, row: Row) -> None:
        rows = self._tables.rows[table]
        key = tuple(row[name] for name in _KEYS[table])
        existing = rows.get(key)
        if existing is not None:
            existing.update(row)
        elif _REQUIRED[table] <= row.keys():
            owner = {"owner": self.server_id} if table == "tasks" and "owner" not in row else {}
            rows[key] = _NEW_ROW[table] | owner | row

    def _resolve(self, items: list[_Item]) -> None:
        flushed = False
        for kind, payload in items:
            if kind != _FLUSH:
                continue
            future, dropped_before = payload
            flushed = True
            if future.done() or not future.set_running_or_notify_cancel():
                continue
            if self._dropped > dropped_before or self._dropped > self._reported:
                future.set_exception(
                    StoreUnavailable(
                        f"some writes could not be committed to the memory store: "
                        f"{self._last_error}",
                        store="memory",
                    )
                )
            else:
                future.set_result(None)
        if flushed:
            self._reported = self._dropped

    # -- reads --

    def _select(self, table: str, keep: Callable[[Row], bool]) -> list[Row]:
        with self._lock:
            return [dict(row) for row in self._tables.rows[table].values() if keep(row)]

    def get_task(self, task_id: str) -> Row | None:
        found = self._select("tasks", lambda row: row["id"] == task_id)
        return found[0] if found else None

    def get_subtasks(self, task_id: str) -> list[Row]:
        found = self._select("subtasks", lambda row: row["task_id"] == task_id)
        return sorted(found, key=lambda row: row["seq"])

    def list_tasks(self, status: str | None = None, limit: int = 50) -> list[Row]:
        found = self._select("tasks", lambda row: status is None or row["status"] == status)
        found.sort(key=lambda row: (row["created_at"], row["id"]), reverse=True)
        return found[:limit]

    def unfinished_tasks(self) -> list[Row]:
        found = self._select("tasks", lambda row: row["status"] in UNFINISHED)
        return sorted(found, key=lambda row: row["created_at"])

    def share_load(self, load: Row, stale_after_s: float) -> tuple[bool, list[Row]]:
        """Alone: it acts for all, and no other server has a load."""
        return True, []

    def request_cancel(self, task_id: str) -> bool:
        """Never asked: no other server shares a memory store."""
        return False

    def cancel_requests(self) -> list[str]:
        return []

    def claim_unfinished(
        self, stale_after_s: float, limit: int | None = None, *, others_only: bool = False
    ) -> list[Row]:
        """Every unfinished task: no other server shares a memory store."""
        if others_only:
            return []
        with self._lock:
            found = [r for r in self._tables.rows["tasks"].values() if r["status"] in UNFINISHED]
            found.sort(key=lambda row: row["created_at"])
            found = found[:limit] if limit is not None else found
            for row in found:
                row["owner"] = self.server_id
            return [dict(row) for row in found]

    def task_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self._select("tasks", lambda row: True):
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return counts

    def durations(self, keys: Iterable[str]) -> Mapping[str, float]:
        with self._lock:
            stats = self._tables.durations
            return {key: stats[key]["mean_s"] for key in set(keys) if key in stats}

    def get_attempts(self, task_id: str) -> list[Row]:
        found = self._select("attempts", lambda row: row["task_id"] == task_id)
        return sorted(found, key=lambda row: (row["subtask_id"], row["attempt"]))

    def get_experiment(self, experiment_id: str) -> Row | None:
        found = self._select("experiments", lambda row: row["id"] == experiment_id)
        return found[0] if found else None

    def list_experiments(self, limit: int = 50) -> list[Row]:
        found = self._select("experiments", lambda row: True)
        found.sort(key=lambda row: (row["created_at"], row["id"]), reverse=True)
        return found[:limit]

    def distributions(self, keys: Iterable[str]) -> Mapping[str, Distribution]:
        with self._lock:
            stats = self._tables.durations
            return {
                key: (s["count"], s["failures"], s["mean_s"], s["m2"], tuple(s.get("recent") or ()))
                for key in set(keys)
                if (s := stats.get(key)) is not None
            }

    def outcomes(self, keys: Iterable[str]) -> Mapping[str, tuple[int, int, float]]:
        with self._lock:
            stats = self._tables.durations
            return {
                key: (stats[key]["count"], stats[key]["failures"], stats[key]["mean_s"])
                for key in set(keys)
                if key in stats
            }

    def events(self, task_id: str, after_seq: int = 0, limit: int = 1000) -> list[Row]:
        with self._lock:
            found = [
                dict(row)
                for row in self._tables.events
                if row["task_id"] == task_id and row["seq"] > after_seq
            ]
        return found[:limit]

    def last_event_seq(self, task_id: str) -> int:
        with self._lock:
            return max(
                (r["seq"] for r in self._tables.events if r["task_id"] == task_id), default=0
            )

    def event_cursors(self) -> tuple[dict[str, int], int]:
        with self._lock:
            return {}, max((r["seq"] for r in self._tables.events), default=0)

    def events_elsewhere(
        self, after: Mapping[str, int], start: int, limit: int = 1000
    ) -> list[Row]:
        return []  # one process's memory: no other server writes here

    def audit(
        self,
        task_id: str | None = None,
        since: float | None = None,
        limit: int = 100,
        before: tuple[float, int] | None = None,
    ) -> list[Row]:
        limit = max(1, min(int(limit), AUDIT_MAX_LIMIT))
        with self._lock:
            found = [
                dict(row)
                for row in self._tables.audit
                if (task_id is None or row["task_id"] == task_id)
                and (since is None or row["at"] >= since)
                and (before is None or (row["at"], row["seq"]) < before)
            ]
        found.sort(key=lambda row: (row["at"], row["seq"]))
        return found[-limit:]

    def decisions(self, task_id: str) -> dict[str, Row]:
        with self._lock:
            return {
                row["subtask_id"]: dict(row)
                for row in self._tables.decisions
                if row["task_id"] == task_id
            }

    def scaling_events(self, limit: int = 20) -> list[Row]:
        limit = max(1, min(int(limit), AUDIT_MAX_LIMIT))
        with self._lock:
            return [dict(row) for row in reversed(self._tables.scaling[-limit:])]

    def failure_patterns(self, limit_rows: int = 5000) -> list[Row]:
        with self._lock:
            rows = self._tables.rows
            found = [
                failed_attempts.as_row(
                    row,
                    rows["subtasks"].get((row["task_id"], row["subtask_id"])),
                    rows["tasks"].get((row["task_id"],)),
                )
                for row in rows["attempts"].values()
                if row["status"] == "failed"
            ]
        found.sort(key=failed_attempts.sort_key, reverse=True)
        return found[: max(0, int(limit_rows))]


def _encoded(kind: Table | str, payload: Any) -> tuple[str, Any] | None:
    """One queued write as it will be stored (None: an audit record that could not be made)."""
    if isinstance(kind, Table):
        return kind.name, _stored(kind.name, payload)
    if kind == "audit_later":
        try:
            return "audit", _stored("audit", audit_row(payload()))
        except Exception:  # one record's failure must not take its batch down
            logger.exception("an audit record could not be made; it is left out")
            return None
    if kind == "durations":
        return kind, payload
    return kind, _stored(kind, payload)
