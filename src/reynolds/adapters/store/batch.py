"""One writer batch: coalesces the queued rows and writes them in few statements."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import JSON, Connection, Dialect, Executable, Table, bindparam, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.elements import ClauseElement

from reynolds.adapters.store.schema import (
    RECENT_DURATIONS,
    audit,
    durations,
    events,
    orchestration_decisions,
    scaling_events,
)
from reynolds.services.ports import Row

if TYPE_CHECKING:
    from reynolds.adapters.store.ownership import Fence

Duration = tuple[tuple[str, ...], float, bool, float]  # keys, seconds, ok, at

# Bounded so one IN (...) never exceeds SQLite's variable limit.
IN_CHUNK = 500
# SQLAlchemy reserves a column's own name for its SET value; the WHERE key needs another.
_KEY_PREFIX = "key_"


def primary_key(table: Table) -> tuple[str, ...]:
    return tuple(column.name for column in table.primary_key)


def required_columns(table: Table) -> frozenset[str]:
    """Columns an INSERT cannot do without: NOT NULL, no default, not generated."""
    return frozenset(
        column.name
        for column in table.columns
        if not column.nullable
        and column.default is None
        and column.server_default is None
        and column is not table.autoincrement_column
    )


def coalesce(rows: Iterable[Row], key: Sequence[str]) -> list[Row]:
    """Merge rows sharing a primary key, in order, so that later fields win."""
    merged: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        pk = tuple(row[name] for name in key)
        existing = merged.get(pk)
        if existing is None:
            merged[pk] = dict(row)
        else:
            existing.update(row)
    return list(merged.values())


def observe(stats: Row | None, key: str, seconds: float, ok: bool, at: float) -> Row:
    """Fold one duration into running statistics (Welford's online mean and variance) and
    the window of the latest ones."""
    recent = list((stats.get("recent") if stats else None) or [])[1 - RECENT_DURATIONS :]
    recent.append(round(seconds, 6))
    count = (stats["count"] if stats else 0) + 1
    mean = stats["mean_s"] if stats else 0.0
    delta = seconds - mean
    mean += delta / count
    return {
        "key": key,
        "count": count,
        "failures": (stats["failures"] if stats else 0) + (0 if ok else 1),
        "mean_s": mean,
        "m2": (stats["m2"] if stats else 0.0) + delta * (seconds - mean),
        "last_s": seconds,
        "updated_at": at,
        "recent": recent,
    }


@dataclass(slots=True)
class Batch:
    """The writes taken from the queue for one commit."""

    upserts: dict[Table, list[Row]] = field(default_factory=dict)
    events: list[Row] = field(default_factory=list)
    durations: list[Duration] = field(default_factory=list)
    audit: list[Row] = field(default_factory=list)
    decisions: list[Row] = field(default_factory=list)
    scaling: list[Row] = field(default_factory=list)

    def task_ids(self) -> set[str]:
        """The tasks whose state this batch writes (audit records and durations are not a
        task's state)."""
        ids: set[str] = set()
        for table, rows in self.upserts.items():
            key = "id" if table.name == "tasks" else "task_id"
            ids.update(row[key] for row in rows if row.get(key) is not None)
        for row in (*self.events, *self.decisions):
            if row.get("task_id") is not None:
                ids.add(row["task_id"])
        return ids

    def without(self, lost: set[str]) -> Batch:
        """This batch less the writes of the tasks in `lost`."""

        def kept(rows: list[Row], key: str = "task_id") -> list[Row]:
            return [row for row in rows if row.get(key) not in lost]

        upserts = {
            table: kept(rows, "id" if table.name == "tasks" else "task_id")
            for table, rows in self.upserts.items()
        }
        return Batch(
            upserts={table: rows for table, rows in upserts.items() if rows},
            events=kept(self.events),
            durations=self.durations,
            audit=self.audit,
            decisions=kept(self.decisions),
            scaling=self.scaling,
        )

    def __len__(self) -> int:
        rows = sum(len(rows) for rows in self.upserts.values())
        appended = len(self.events) + len(self.durations) + len(self.audit) + len(self.decisions)
        return rows + appended + len(self.scaling)


class BatchWriter:
    """Writes a Batch with one executemany per table and set of columns (SQLite).

    `insert_values` are columns set on the rows an upsert inserts and never on those it
    updates, per table (the server that owns a new task).
    """

    def __init__(
        self,
        dialect: Dialect,
        insert_values: Mapping[Table, Mapping[str, Any]] | None = None,
        fence: Fence | None = None,
    ) -> None:
        self._dialect = dialect
        self._fence = fence
        self._insert_values = dict(insert_values or {})
        self._raw: dict[tuple[str, frozenset[str]], _Raw | None] = {}
        self._events = _Append(events, dialect)
        self._durations_names = tuple(column.name for column in durations.columns)
        quote = dialect.identifier_preparer.quote
        # Built from schema.py's names only, quoted; the keys are bound parameters.
        self._durations_sql = (
            f"SELECT {', '.join(quote(n) for n in self._durations_names)} "  # noqa: S608
            f"FROM {quote(durations.name)} WHERE {quote('key')} IN ("
        )
        self._audit = _Append(audit, dialect)
        self._decisions = _Append(orchestration_decisions, dialect)
        self._scaling = _Append(scaling_events, dialect, key="id")

    def write(self, conn: Connection, batch: Batch) -> list[Row]:
        """Write `batch` on `conn`, inside its transaction; return the events with their seq.
        With a fence, the writes of tasks another server has taken are left out."""
        if self._fence is not None:
            lost = self._fence.check(conn, batch.task_ids())
            if lost:
                batch = batch.without(lost)
        for table, rows in batch.upserts.items():
            self._upsert(conn, table, coalesce(rows, primary_key(table)))
        if batch.durations:
            self._record_durations(conn, batch.durations)
        if batch.audit:
            self._insert_audit(conn, batch.audit)
        if batch.decisions:
            self._insert_decisions(conn, batch.decisions)
        if batch.scaling:
            self._insert_scaling(conn, batch.scaling)
        if not batch.events:
            return []
        # New dicts: on a retry the same rows go in again and must come out unchanged.
        inserted = self._insert_events(conn, [dict(row) for row in batch.events])
        inserted.sort(key=lambda row: row["seq"])
        return inserted

    def _upsert(self, conn: Connection, table: Table, rows: list[Row]) -> None:
        groups: dict[frozenset[str], list[Row]] = {}
        for row in rows:
            groups.setdefault(frozenset(row), []).append(row)
        for columns, group in groups.items():
            self._write_group(conn, table, columns, group)

    def _write_group(
        self, conn: Connection, table: Table, columns: frozenset[str], rows: list[Row]
    ) -> None:
        cache_key = (table.name, columns)
        if cache_key not in self._raw:
            statement, _ = self._build(table, columns)
            self._raw[cache_key] = (
                None
                if statement is None
                else _Raw.of(cast(ClauseElement, statement), table, columns, self._dialect)
            )
        raw = self._raw[cache_key]
        if raw is not None:
            _cursor(conn).executemany(raw.sql, raw.params(rows))

    def _build(self, table: Table, columns: frozenset[str]) -> tuple[Executable | None, bool]:
        """The statement for rows holding exactly `columns`, and whether it is an UPDATE."""
        key = primary_key(table)
        values = sorted(columns - set(key))
        if required_columns(table) <= columns:
            insert = sqlite.insert(table)
            stamped = self.stamped(table, columns)
            if stamped:
                insert = insert.values(dict(stamped))
            if not values:
                return insert.on_conflict_do_nothing(index_elements=list(key)), False
            # Only the columns the put named: the others keep what the row already holds.
            update_set = {name: insert.excluded[name] for name in values}
            return insert.on_conflict_do_update(index_elements=list(key), set_=update_set), False
        # An INSERT missing a NOT NULL column fails even when the row exists (SQLite and
        # PostgreSQL both check it before the conflict), so a partial put is a plain UPDATE.
        if not values:
            return None, True
        statement = (
            update(table)
            .where(*(table.c[name] == bindparam(_KEY_PREFIX + name) for name in key))
            .values({name: bindparam(name) for name in values})
        )
        return statement, True

    def stamped(self, table: Table, columns: frozenset[str]) -> list[tuple[str, Any]]:
        """The insert-only values of `table` that rows holding `columns` leave out."""
        given = self._insert_values.get(table, {})
        return [(name, value) for name, value in given.items() if name not in columns]

    def _insert_events(self, conn: Connection, rows: list[Row]) -> list[Row]:
        """Append events and return them with their `seq`.

        One executemany, then the last rowid: `seq` is the table's rowid, and inside this
        transaction (which holds SQLite's only write lock) each insert takes the next one,
        so the batch's seqs are the `len(rows)` numbers ending there, in order."""
        self._events.insert(conn, rows)
        last = _cursor(conn).execute("SELECT last_insert_rowid()").fetchone()[0]
        first = int(last) - len(rows) + 1
        return [{**row, "seq": first + i} for i, row in enumerate(rows)]

    def _durations_of(self, conn: Connection, keys: list[str]) -> list[Row]:
        """The durations rows of `keys` that exist, through sqlite3 itself: SQLAlchemy's
        expanding IN and result processing cost about a third of a one-attempt commit."""
        sql = self._durations_sql + ", ".join("?" * len(keys)) + ")"
        names = self._durations_names
        found = []
        for values in _cursor(conn).execute(sql, keys).fetchall():
            row = dict(zip(names, values, strict=True))
            if row["recent"] is not None:
                row["recent"] = json.loads(row["recent"])
            found.append(row)
        return found

    def _insert_audit(self, conn: Connection, rows: list[Row]) -> None:
        """Append audit rows; each holds every column but `seq` (see SqlStore.add_audit).

        Straight to sqlite3's executemany: the values need no processing but JSON's, and
        SQLAlchemy's per-row handling would cost the writer (and the GIL) about half again."""
        self._audit.insert(conn, rows)

    def _insert_decisions(self, conn: Connection, rows: list[Row]) -> None:
        """Append routing decisions; each holds every column but `seq`."""
        self._decisions.insert(conn, rows)

    def _insert_scaling(self, conn: Connection, rows: list[Row]) -> None:
        """Append scaling events; each holds every column but `id`."""
        self._scaling.insert(conn, rows)

    def _record_durations(self, conn: Connection, records: list[Duration]) -> None:
        keys = sorted({key for record in records for key in record[0]})
        current: dict[str, Row] = {}
        for start in range(0, len(keys), IN_CHUNK):
            for row in self._durations_of(conn, keys[start : start + IN_CHUNK]):
                current[row["key"]] = row
        for record_keys, seconds, ok, at in records:
            for key in record_keys:
                current[key] = observe(current.get(key), key, seconds, ok, at)
        self._upsert(conn, durations, [current[key] for key in keys])


class _Append:
    """A plain multi-row INSERT of every column but the generated key, through sqlite3's
    executemany."""

    def __init__(self, table: Table, dialect: Dialect, key: str = "seq") -> None:
        names = [column.name for column in table.columns if column.name != key]
        quote = dialect.identifier_preparer.quote
        # Built from schema.py's names only, quoted; the values are bound parameters.
        self.sql = (
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "  # noqa: S608
            f"VALUES ({', '.join('?' for _ in names)})"
        )
        self.values = itemgetter(*names)
        self.json = tuple(i for i, name in enumerate(names) if isinstance(table.c[name].type, JSON))

    def insert(self, conn: Connection, rows: list[Row]) -> None:
        params = []
        for row in rows:
            values = list(self.values(row))
            for i in self.json:
                if values[i] is not None:
                    values[i] = json.dumps(values[i])
            params.append(tuple(values))
        _cursor(conn).executemany(self.sql, params)


def _cursor(conn: Connection) -> Any:
    """A cursor of the driver's own connection, inside `conn`'s transaction: plain
    executemany without SQLAlchemy's per-statement execution machinery (SQLite only)."""
    return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True)
class _Raw:
    """A compiled upsert or update as plain SQL for sqlite3's executemany: SQLAlchemy's
    per-row parameter handling cost the writer thread (and so the GIL) more than the SQL.

    Each positional parameter is a row's column (JSON ones dumped) or a constant of the
    statement (an insert-only value)."""

    sql: str
    sources: tuple[tuple[str | None, Any, bool], ...]  # (row column or None, constant, json)

    @classmethod
    def of(
        cls, statement: ClauseElement, table: Table, columns: frozenset[str], dialect: Dialect
    ) -> _Raw:
        compiled: Any = statement.compile(dialect=dialect, column_keys=sorted(columns))
        binds = compiled.binds
        key = primary_key(table)
        sources: list[tuple[str | None, Any, bool]] = []
        for name in compiled.positiontup or ():
            column = name
            if name.startswith(_KEY_PREFIX) and name[len(_KEY_PREFIX) :] in key:
                column = name[len(_KEY_PREFIX) :]
            is_json = column in table.c and isinstance(table.c[column].type, JSON)
            if column in columns:
                sources.append((column, None, is_json))
            else:
                # A column's scalar default, or a value the statement itself carries.
                default = table.c[column].default if column in table.c else None
                if default is not None and default.is_scalar:
                    value = default.arg
                else:
                    value = binds[name].effective_value
                sources.append((None, json.dumps(value) if is_json else value, False))
        return cls(str(compiled), tuple(sources))

    def params(self, rows: list[Row]) -> list[tuple[Any, ...]]:
        out = []
        for row in rows:
            values = []
            for column, constant, is_json in self.sources:
                if column is None:
                    values.append(constant)
                    continue
                value = row[column]
                values.append(json.dumps(value) if is_json and value is not None else value)
            out.append(tuple(values))
        return out
