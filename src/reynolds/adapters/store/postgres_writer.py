"""PostgreSQL writes: each group of rows goes as one short statement whose columns travel as
arrays, turned back into rows by `unnest`. psycopg dumps the arrays in C and the server parses
one statement instead of thousands of VALUES, so the writer holds the GIL far less."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Dialect,
    Float,
    Integer,
    String,
    Table,
    bindparam,
    select,
    text,
)
from sqlalchemy.sql.elements import TextClause

from reynolds.adapters.store.batch import BatchWriter, primary_key, required_columns
from reynolds.adapters.store.schema import (
    audit,
    durations,
    events,
    orchestration_decisions,
    scaling_events,
)
from reynolds.services.ports import Row

if TYPE_CHECKING:
    from reynolds.adapters.store.ownership import Fence

Convert = Callable[[Any], Any]

# The SQL marked "noqa: S608 (1)" is built only from the names of schema.py's tables and
# columns, quoted by the dialect; values always travel as bound parameters.


def _text(value: Any) -> Any:
    # PostgreSQL text cannot hold NUL; process output sometimes does.
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


def _float(value: Any) -> Any:
    # psycopg refuses arrays that mix int and float. Only numbers are widened: anything else
    # fails in the driver with a message that does not quote the value.
    return float(value) if type(value) is int else value


def _int(value: Any) -> Any:
    return int(value) if type(value) is bool else value


def _json(value: Any) -> str:
    return json.dumps(value)


def _converter(column: Column[Any]) -> Convert:
    if isinstance(column.type, JSON):
        return _json
    if isinstance(column.type, Float):
        return _float
    if isinstance(column.type, Integer):
        return _int
    if isinstance(column.type, String):
        return _text
    return lambda value: value


@dataclass(frozen=True, slots=True)
class _Plan:
    """A statement and how to turn rows into its array parameters."""

    statement: TextClause
    columns: tuple[tuple[str, Convert], ...]
    fill: tuple[tuple[str, Any], ...]  # defaults of the columns the rows leave out

    def params(self, rows: list[Row]) -> dict[str, list[Any]]:
        params = {
            f"p{i}": [convert(row[name]) for row in rows]
            for i, (name, convert) in enumerate(self.columns)
        }
        for j, (_name, value) in enumerate(self.fill, start=len(self.columns)):
            params[f"p{j}"] = [value] * len(rows)
        return params


class PostgresBatchWriter(BatchWriter):
    """A BatchWriter whose statements take whole columns as arrays."""

    def __init__(
        self,
        dialect: Dialect,
        insert_values: Mapping[Table, Mapping[str, Any]] | None = None,
        fence: Fence | None = None,
    ) -> None:
        super().__init__(dialect, insert_values, fence)
        self._quote = dialect.identifier_preparer.quote
        self._plans: dict[tuple[str, frozenset[str]], _Plan | None] = {}
        self._events_plan = self._append_plan(events, "seq", returning=True)
        self._audit_plan = self._append_plan(audit, "seq")
        self._decisions_plan = self._append_plan(orchestration_decisions, "seq")
        self._scaling_plan = self._append_plan(scaling_events, "id")
        self._durations_select = select(durations).where(
            durations.c.key.in_(bindparam("keys", expanding=True))
        )

    def _append_plan(self, table: Table, key: str, *, returning: bool = False) -> _Plan:
        """One INSERT ... SELECT FROM unnest(...) of every column but the generated `key`."""
        names = [column.name for column in table.columns if column.name != key]
        tail = ""
        if returning:
            tail = " RETURNING " + ", ".join(self._quote(c.name) for c in table.columns)
        return self._make_plan(
            table,
            names,
            [],
            f"INSERT INTO {self._quote(table.name)} ({self._list(names)}) "  # noqa: S608 (1)
            f"SELECT * FROM {self._unnest(table, names)}{tail}",
        )

    def _write_group(
        self, conn: Connection, table: Table, columns: frozenset[str], rows: list[Row]
    ) -> None:
        cache_key = (table.name, columns)
        if cache_key not in self._plans:
            self._plans[cache_key] = self._plan(table, columns)
        plan = self._plans[cache_key]
        if plan is not None:
            conn.execute(plan.statement, plan.params(rows))

    def _durations_of(self, conn: Connection, keys: list[str]) -> list[Row]:
        found = conn.execute(self._durations_select, {"keys": keys}).mappings()
        return [dict(row) for row in found]

    def _insert_events(self, conn: Connection, rows: list[Row]) -> list[Row]:
        result = conn.execute(self._events_plan.statement, self._events_plan.params(rows))
        return [dict(row) for row in result.mappings()]

    def _insert_audit(self, conn: Connection, rows: list[Row]) -> None:
        conn.execute(self._audit_plan.statement, self._audit_plan.params(rows))

    def _insert_decisions(self, conn: Connection, rows: list[Row]) -> None:
        conn.execute(self._decisions_plan.statement, self._decisions_plan.params(rows))

    def _insert_scaling(self, conn: Connection, rows: list[Row]) -> None:
        conn.execute(self._scaling_plan.statement, self._scaling_plan.params(rows))

    def _plan(self, table: Table, columns: frozenset[str]) -> _Plan | None:
        key = list(primary_key(table))
        values = sorted(columns - set(key))
        target = self._quote(table.name)
        if required_columns(table) <= columns:
            # Insert-only values travel like defaults: inserted, never in the SET below.
            stamped = self.stamped(table, columns)
            named = columns | {name for name, _ in stamped}
            fill = stamped + [
                (column.name, column.default.arg)  # type: ignore[attr-defined]
                for column in table.columns
                if column.name not in named
                and column.default is not None
                and column.default.is_scalar
            ]
            names = [*key, *values, *(name for name, _ in fill)]
            conflict = (
                "DO UPDATE SET "
                + ", ".join(f"{self._quote(n)} = EXCLUDED.{self._quote(n)}" for n in values)
                if values
                else "DO NOTHING"
            )
            sql = (
                f"INSERT INTO {target} ({self._list(names)}) "  # noqa: S608 (1)
                f"SELECT * FROM {self._unnest(table, names)} "
                f"ON CONFLICT ({self._list(key)}) {conflict}"
            )
            return self._make_plan(table, [*key, *values], fill, sql)
        # A partial row is an UPDATE; see BatchWriter._build for why.
        if not values:
            return None
        names = [*key, *values]
        assignments = ", ".join(f"{self._quote(n)} = u.{self._quote(n)}" for n in values)
        match = " AND ".join(f"{target}.{self._quote(n)} = u.{self._quote(n)}" for n in key)
        sql = (
            f"UPDATE {target} SET {assignments} "  # noqa: S608 (1)
            f"FROM {self._unnest(table, names)} AS u({self._list(names)}) WHERE {match}"
        )
        return self._make_plan(table, names, [], sql)

    def _make_plan(
        self, table: Table, names: list[str], fill: list[tuple[str, Any]], sql: str
    ) -> _Plan:
        columns = tuple((name, _converter(table.c[name])) for name in names)
        return _Plan(text(sql), columns, tuple(fill))

    def _unnest(self, table: Table, names: list[str]) -> str:
        arrays = ", ".join(
            f"CAST(:p{i} AS {table.c[name].type.compile(dialect=self._dialect)}[])"
            for i, name in enumerate(names)
        )
        return f"unnest({arrays})"

    def _list(self, names: list[str]) -> str:
        return ", ".join(self._quote(name) for name in names)
