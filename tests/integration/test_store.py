"""The Store contract, run against SQLite, PostgreSQL and the in-memory store; what only the
SQL store has (its tables, migrations, SQLite files) against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from reynolds.adapters.store import schema
from reynolds.adapters.store.schema import RECENT_DURATIONS
from reynolds.adapters.store.sql import SqlStore
from reynolds.errors import StoreError
from reynolds.services.ports import Store

Row = dict[str, Any]


# Here `store` and `make_store` are every implementation of the port; `sql_store` and
# `make_sql_store` the SQL store alone, on the test's `store_url`.
@pytest.fixture
def make_store(make_any_store: Callable[..., Store]) -> Callable[..., Store]:
    return make_any_store


@pytest.fixture
def store(make_any_store: Callable[..., Store]) -> Store:
    return make_any_store()


@pytest.fixture
def sql_store(make_sql_store: Callable[..., SqlStore]) -> SqlStore:
    return make_sql_store()


def task(task_id: str, **fields: Any) -> Row:
    row: Row = {
        "id": task_id,
        "type": "build",
        "priority": "medium",
        "status": "pending",
        "spec": {"name": task_id, "steps": [{"id": "a"}]},
        "strategy": {"approach": "direct"},
        "created_at": 1000.0,
    }
    return row | fields


def subtask(task_id: str, subtask_id: str, seq: int, **fields: Any) -> Row:
    row: Row = {
        "task_id": task_id,
        "id": subtask_id,
        "seq": seq,
        "depends_on": [],
        "spec": {"action": {"kind": "shell", "argv": ["true"]}},
        "status": "pending",
    }
    return row | fields


def table_rows(url: str, table: Any) -> list[Row]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [dict(row) for row in conn.execute(select(table)).mappings()]
    finally:
        engine.dispose()


# -- rows --


def test_a_put_task_reads_back_with_its_json_and_defaults(store: Store) -> None:
    store.put_task(task("t1", plan={"levels": [["a"]]}))
    store.flush_sync()

    row = store.get_task("t1")

    assert row is not None
    assert row["spec"] == {"name": "t1", "steps": [{"id": "a"}]}
    assert row["plan"] == {"levels": [["a"]]}
    assert row["description"] == ""
    assert row["finished_at"] is None
    assert store.get_task("missing") is None


def test_a_partial_put_changes_only_the_columns_it_names(store: Store) -> None:
    store.put_subtask(subtask("t1", "a", 0, component="api", output="first"))
    store.flush_sync()

    store.put_subtask({"task_id": "t1", "id": "a", "status": "succeeded", "finished_at": 5.0})
    store.flush_sync()

    (row,) = store.get_subtasks("t1")
    assert row["status"] == "succeeded"
    assert row["finished_at"] == 5.0
    assert row["component"] == "api"
    assert row["output"] == "first"
    assert row["spec"] == {"action": {"kind": "shell", "argv": ["true"]}}


def test_a_put_can_clear_a_column_with_none(store: Store) -> None:
    store.put_subtask(subtask("t1", "a", 0, pid=42, pid_start=7))
    store.put_subtask(subtask("t1", "b", 1, pid=43, pid_start=8))
    store.flush_sync()

    for name in ("a", "b"):
        store.put_subtask({"task_id": "t1", "id": name, "pid": None, "pid_start": None})
    store.flush_sync()

    assert [(row["pid"], row["pid_start"]) for row in store.get_subtasks("t1")] == [
        (None, None),
        (None, None),
    ]


def test_a_partial_put_for_a_row_never_written_creates_nothing(store: Store) -> None:
    store.put_subtask({"task_id": "t1", "id": "ghost", "status": "running"})
    store.flush_sync()

    assert store.get_subtasks("t1") == []


def test_puts_of_one_key_in_one_batch_merge_with_later_fields_winning(
    make_store: Callable[..., Store],
) -> None:
    # A long interval: everything up to the flush lands in one batch.
    store = make_store(batch_interval_s=30.0)
    store.put_subtask({"task_id": "t1", "id": "a", "status": "running", "started_at": 2.0})
    store.put_subtask(subtask("t1", "a", 0, status="ready"))
    store.put_subtask({"task_id": "t1", "id": "a", "attempts": 1, "status": "running"})
    store.put_subtask({"task_id": "t1", "id": "a", "pid": 42})
    store.flush_sync()

    (row,) = store.get_subtasks("t1")
    assert (row["status"], row["started_at"], row["attempts"], row["pid"]) == (
        "running",
        2.0,
        1,
        42,
    )


def test_attempts_are_keyed_by_task_subtask_and_number(sql_store: Store, store_url: str) -> None:
    store = sql_store
    for attempt in (1, 2):
        store.put_attempt(
            {"task_id": "t1", "subtask_id": "a", "attempt": attempt, "status": "running"}
        )
    store.put_attempt({"task_id": "t1", "subtask_id": "a", "attempt": 1, "status": "failed"})
    store.flush_sync()

    rows = sorted(table_rows(store_url, schema.attempts), key=lambda r: r["attempt"])
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, "failed"), (2, "running")]


def test_a_string_enum_is_stored_as_its_value(store: Store) -> None:
    class Status(StrEnum):
        RUNNING = "running"

    store.put_task(task("t1", status=Status.RUNNING))
    store.flush_sync()

    row = store.get_task("t1")
    assert row is not None and row["status"] == "running"


def test_output_with_nul_bytes_is_stored(store: Store) -> None:
    store.put_subtask(subtask("t1", "a", 0, output="bin\x00ary"))
    store.add_event({"task_id": "t1", "kind": "log", "data": {"line": "a\x00b"}, "at": 1.0})
    store.flush_sync()

    (row,) = store.get_subtasks("t1")
    # PostgreSQL text cannot hold NUL, so it becomes U+FFFD there.
    assert row["output"] in ("bin\x00ary", "bin\ufffdary")
    assert store.events("t1")[0]["data"] == {"line": "a\x00b"}


def test_subtasks_come_back_in_decomposition_order(store: Store) -> None:
    for seq, name in enumerate(["c", "a", "b"]):
        store.put_subtask(subtask("t1", name, seq))
    store.put_subtask(subtask("t2", "z", 0))
    store.flush_sync()

    assert [row["id"] for row in store.get_subtasks("t1")] == ["c", "a", "b"]


def test_a_row_with_an_unknown_column_or_no_key_is_refused_at_once(store: Store) -> None:
    with pytest.raises(StoreError):
        store.put_task(task("t1", colour="red"))
    with pytest.raises(StoreError):
        store.put_subtask({"id": "a", "status": "running"})
    with pytest.raises(StoreError):
        store.add_event({"task_id": "t1"})


# -- task queries --


def test_tasks_are_listed_newest_first_filtered_and_limited(store: Store) -> None:
    for i, status in enumerate(["succeeded", "running", "pending", "succeeded"]):
        store.put_task(task(f"t{i}", status=status, created_at=1000.0 + i))
    store.flush_sync()

    assert [row["id"] for row in store.list_tasks()] == ["t3", "t2", "t1", "t0"]
    assert [row["id"] for row in store.list_tasks(status="succeeded")] == ["t3", "t0"]
    assert [row["id"] for row in store.list_tasks(limit=2)] == ["t3", "t2"]
    assert store.task_counts() == {"succeeded": 2, "running": 1, "pending": 1}


def test_unfinished_tasks_are_those_pending_ready_or_running(store: Store) -> None:
    statuses = ["pending", "ready", "running", "succeeded", "failed", "cancelled", "planned"]
    for i, status in enumerate(statuses):
        store.put_task(task(f"t{i}", status=status, created_at=1000.0 + i))
    store.flush_sync()

    assert [row["status"] for row in store.unfinished_tasks()] == ["pending", "ready", "running"]


# -- events --


def test_on_commit_receives_the_committed_events_with_their_seq(store: Store) -> None:
    received: list[Row] = []
    store.on_commit(received.extend)
    for i in range(5):
        store.add_event({"task_id": "t1", "subtask_id": f"s{i}", "kind": "started", "at": 1.0})
    store.flush_sync()

    seqs = [row["seq"] for row in received]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert [row["subtask_id"] for row in received] == [f"s{i}" for i in range(5)]
    assert received == store.events("t1")


def test_events_are_read_after_a_seq_in_order_and_limited(store: Store) -> None:
    for i in range(6):
        store.add_event({"task_id": "t1", "kind": "tick", "data": {"i": i}})
        store.add_event({"task_id": "t2", "kind": "tick", "data": {"i": i}})
    store.flush_sync()

    first = store.events("t1", limit=2)
    rest = store.events("t1", after_seq=first[-1]["seq"])

    assert [row["data"]["i"] for row in first] == [0, 1]
    assert [row["data"]["i"] for row in rest] == [2, 3, 4, 5]
    assert all(row["at"] > 0 for row in first + rest)


def test_a_failing_callback_does_not_stop_the_others(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[Row] = []

    def broken(rows: list[Row]) -> None:
        raise RuntimeError("listener bug")

    store.on_commit(broken)
    store.on_commit(received.extend)
    store.add_event({"task_id": "t1", "kind": "started"})
    store.flush_sync()

    assert len(received) == 1
    assert "on_commit callback failed" in caplog.text


# -- durations --


def test_durations_keep_running_statistics_per_key(sql_store: Store, store_url: str) -> None:
    store = sql_store
    store.record_duration(["build", "build:api"], 1.0, True)
    store.flush_sync()
    store.record_duration(["build"], 3.0, False)
    store.record_duration(["build"], 5.0, True)
    store.flush_sync()

    rows = {row["key"]: row for row in table_rows(store_url, schema.durations)}
    build = rows["build"]
    assert (build["count"], build["failures"], build["last_s"]) == (3, 1, 5.0)
    assert math.isclose(build["mean_s"], 3.0)
    assert math.isclose(build["m2"], 8.0)  # (1-3)² + (3-3)² + (5-3)²
    assert store.durations(["build", "build:api", "unknown"]) == {
        "build": pytest.approx(3.0),
        "build:api": 1.0,
    }


def test_a_single_string_is_one_duration_key(store: Store) -> None:
    store.record_duration("build", 2.0, True)
    store.flush_sync()

    assert store.durations(["build", "b"]) == {"build": 2.0}


def test_outcomes_count_attempts_and_failures_per_key(store: Store) -> None:
    store.record_duration(["pool:devops", "step:x"], 1.0, True)
    store.record_duration(["pool:devops"], 3.0, False)
    store.record_duration(["pool:devops"], 2.0, True)
    store.flush_sync()

    assert store.outcomes(["pool:devops", "step:x", "pool:none"]) == {
        "pool:devops": (3, 1, 2.0),
        "step:x": (1, 0, 1.0),
    }


def test_a_duration_that_is_not_a_finite_number_is_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        store.record_duration(["k"], math.nan, True)


# -- flush and failure --


def test_flush_returns_once_everything_before_it_is_readable(store: Store) -> None:
    for i in range(500):
        store.put_subtask(subtask("t1", f"s{i}", i))
    asyncio.run(store.flush())

    assert len(store.get_subtasks("t1")) == 500


def test_async_flush_lets_the_event_loop_run_while_it_waits(store: Store) -> None:
    async def scenario() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        for i in range(200):
            store.put_subtask(subtask("t1", f"s{i}", i))
        running = asyncio.create_task(ticker())
        await store.flush()
        running.cancel()
        return ticks

    assert asyncio.run(scenario()) > 0


def test_a_callback_that_flushes_gets_an_error_instead_of_a_deadlock(store: Store) -> None:
    errors: list[Exception] = []

    def flushing(rows: list[Row]) -> None:
        try:
            store.flush_sync()
        except StoreError as exc:
            errors.append(exc)

    store.on_commit(flushing)
    store.add_event({"task_id": "t1", "kind": "started"})
    store.flush_sync()

    assert len(errors) == 1


def test_writes_from_many_threads_are_all_committed(store: Store) -> None:
    def writer(n: int) -> None:
        for i in range(100):
            store.put_subtask(subtask(f"t{n}", f"s{i}", i))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.flush_sync()

    assert [len(store.get_subtasks(f"t{n}")) for n in range(4)] == [100] * 4


def test_a_batch_that_cannot_commit_fails_the_flush_and_the_store_goes_on(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    store.retry_delays_s = (0.0, 0.0)
    store.put_task(task("good-before"))
    store.flush_sync()
    store.put_task(task("bad", spec={"token": "s3cret-value", "handle": object()}))

    with pytest.raises(StoreError):
        store.flush_sync()

    store.put_task(task("good-after"))
    store.flush_sync()
    assert store.get_task("good-after") is not None
    assert store.get_task("bad") is None
    assert "given up" in caplog.text
    assert "s3cret-value" not in caplog.text


def test_the_store_refuses_work_before_start_and_after_close(store_url: str) -> None:
    store = SqlStore(store_url)
    with pytest.raises(StoreError):
        store.flush_sync()
    store.start()
    store.put_task(task("t1"))
    store.close()

    with pytest.raises(StoreError):
        store.put_task(task("t2"))
    with pytest.raises(StoreError):
        store.flush_sync()


def test_close_commits_what_is_queued(store_url: str) -> None:
    store = SqlStore(store_url, batch_interval_s=30.0)
    store.start()
    store.put_task(task("t1"))
    store.close()

    reopened = SqlStore(store_url)
    reopened.start()
    try:
        assert reopened.get_task("t1") is not None
    finally:
        reopened.close()


# -- migrations --


def test_starting_again_on_a_migrated_database_keeps_its_rows(
    make_sql_store: Callable[..., SqlStore],
) -> None:
    first = make_sql_store()
    first.put_task(task("t1"))
    first.close()

    second = make_sql_store()
    second.start()

    assert second.get_task("t1") is not None


def test_the_migrations_create_exactly_the_schema(sql_store: Store, store_url: str) -> None:
    engine = create_engine(store_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    finally:
        engine.dispose()

    assert differences == []


# -- the audit log --


def audit_row(at: float, **fields: Any) -> Row:
    row: Row = {"at": at, "kind": "action", "decision": "allowed"}
    return row | fields


def test_audit_records_read_back_with_every_field(store: Store) -> None:
    store.add_audit(
        audit_row(
            5.0,
            token_name="ci",
            action="shell",
            pool="devops",
            task_id="t1",
            subtask_id="build:web",
            attempt=2,
            argv=["make", "--token=***"],
            cwd="web",
            env_names=["A", "B"],
            outcome="exit",
            exit_code=2,
            duration_s=0.25,
            output_bytes=5_000_000_000,
        )
    )
    store.flush_sync()

    (row,) = store.audit()
    assert row["seq"] >= 1
    assert row | {"seq": None} == {
        "seq": None,
        "at": 5.0,
        "kind": "action",
        "token_name": "ci",
        "tool": None,
        "action": "shell",
        "pool": "devops",
        "task_id": "t1",
        "subtask_id": "build:web",
        "attempt": 2,
        "argv": ["make", "--token=***"],
        "cwd": "web",
        "env_names": ["A", "B"],
        "decision": "allowed",
        "outcome": "exit",
        "detail": None,
        "exit_code": 2,
        "duration_s": 0.25,
        "output_bytes": 5_000_000_000,
    }


def test_audit_reads_the_newest_records_oldest_first_by_task_and_time(store: Store) -> None:
    for i in range(6):
        store.add_audit(audit_row(float(i), task_id="t1" if i % 2 else "t2", attempt=i))
    store.flush_sync()

    assert [r["attempt"] for r in store.audit()] == [0, 1, 2, 3, 4, 5]
    assert [r["attempt"] for r in store.audit(limit=2)] == [4, 5]
    assert [r["attempt"] for r in store.audit(task_id="t1")] == [1, 3, 5]
    assert [r["attempt"] for r in store.audit(since=3.0)] == [3, 4, 5]
    assert [r["attempt"] for r in store.audit(task_id="t2", since=1.0, limit=1)] == [4]


def test_audit_pages_walk_back_from_the_newest_by_time_then_sequence(store: Store) -> None:
    # Two records share each time: the sequence orders them, on either side of a page's end.
    for i in range(9):
        store.add_audit(audit_row(float(i // 2), task_id="t1" if i % 3 else "t2", attempt=i))
    store.flush_sync()

    def walk(**filters: Any) -> list[list[int]]:
        pages, before = [], None
        while True:
            rows = store.audit(limit=2, before=before, **filters)
            if not rows:
                return pages
            pages.append([r["attempt"] for r in rows])
            before = (rows[0]["at"], rows[0]["seq"])

    assert walk() == [[7, 8], [5, 6], [3, 4], [1, 2], [0]]
    assert walk(task_id="t1") == [[7, 8], [4, 5], [1, 2]]
    assert walk(since=2.0) == [[7, 8], [5, 6], [4]]
    assert walk(task_id="t2", since=1.0) == [[3, 6]]


def test_audit_records_share_a_batch_with_the_rows_they_describe(
    make_store: Callable[..., Store],
) -> None:
    store = make_store(batch_interval_s=0.2)
    store.put_task(task("t1"))
    store.put_attempt({"task_id": "t1", "subtask_id": "a", "attempt": 1, "status": "succeeded"})
    store.add_audit(audit_row(1.0, task_id="t1", detail="nul \x00 byte"))
    store.add_event({"task_id": "t1", "kind": "started"})
    store.flush_sync()

    assert store.get_task("t1") is not None
    (row,) = store.audit(task_id="t1")
    assert row["detail"].startswith("nul ")


def test_an_audit_record_without_its_decision_or_with_unknown_fields_is_refused(
    store: Store,
) -> None:
    with pytest.raises(StoreError):
        store.add_audit({"at": 1.0, "kind": "tool"})
    with pytest.raises(StoreError):
        store.add_audit(audit_row(1.0, output="the whole stdout"))
    with pytest.raises(StoreError):
        store.add_audit(audit_row(1.0, seq=7))


def test_an_audit_record_made_later_is_made_on_the_writer_thread_in_its_turn(
    store: Store,
) -> None:
    made_on: list[int] = []

    def build() -> Row:
        made_on.append(threading.get_ident())
        return audit_row(2.0, task_id="t1", attempt=2)

    store.add_audit(audit_row(1.0, task_id="t1", attempt=1))
    store.add_audit_later(build)
    store.add_audit(audit_row(3.0, task_id="t1", attempt=3))
    store.flush_sync()

    assert [r["attempt"] for r in store.audit(task_id="t1")] == [1, 2, 3]
    assert [r["seq"] for r in store.audit(task_id="t1")] == sorted(
        r["seq"] for r in store.audit(task_id="t1")
    )
    assert made_on and made_on[0] != threading.get_ident()


def test_an_audit_record_that_cannot_be_made_is_left_out_and_the_rest_commit(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> Row:
        raise ValueError("no record today")

    store.add_audit_later(broken)
    store.add_audit_later(lambda: audit_row(1.0, task_id="t1", output="the whole stdout"))
    store.add_audit(audit_row(2.0, task_id="t1"))
    store.put_task(task("t1"))
    store.flush_sync()

    assert [r["at"] for r in store.audit(task_id="t1")] == [2.0]
    assert store.get_task("t1") is not None
    assert caplog.text.count("an audit record could not be made") == 2


def test_many_audit_records_commit_in_one_flush(store: Store) -> None:
    for i in range(2000):
        store.add_audit(audit_row(float(i), task_id="bulk", argv=["true"], exit_code=0))
    store.flush_sync()

    assert len(store.audit(task_id="bulk", limit=5000)) == 2000


# -- SQLite specifics --


def test_sqlite_uses_wal_in_a_folder_it_creates(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "reynolds.db"
    store = SqlStore(f"sqlite:///{path}")
    store.start()
    store.put_task(task("t1"))
    store.flush_sync()
    store.close()

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_an_in_memory_sqlite_database_is_refused() -> None:
    with pytest.raises(StoreError):
        SqlStore("sqlite://")


def test_a_write_mark_becomes_durable_once_its_writes_are_committed(store: Store) -> None:
    before = store.write_mark()
    assert store.durable(before)
    store.put_task(task("t-mark"))
    mark = store.write_mark()
    assert mark > before
    store.flush_sync()
    assert store.durable(mark)
    assert store.get_task("t-mark") is not None
    store.put_task(task("t-later"))
    assert store.durable(mark)  # an older mark stays durable while newer writes wait


# -- routing decisions and scaling events --


def decision_row(subtask_id: str, attempt: int, pool: str) -> Row:
    return {
        "task_id": "t1",
        "subtask_id": subtask_id,
        "attempt": attempt,
        "pool": pool,
        "selection": "weighted",
        "scores": {"devops": 0.55, "code": 0.95},
        "reason": "capability match",
        "at": float(attempt),
    }


def test_routing_decisions_read_back_as_the_latest_per_subtask(store: Store) -> None:
    store.add_decision(decision_row("a", 1, "devops"))
    store.add_decision(decision_row("a", 2, "code"))
    store.add_decision(decision_row("b", 1, "devops"))
    store.flush_sync()
    found = store.decisions("t1")
    assert {sid: (row["attempt"], row["pool"]) for sid, row in found.items()} == {
        "a": (2, "code"),
        "b": (1, "devops"),
    }
    assert found["a"]["scores"] == {"devops": 0.55, "code": 0.95}
    assert store.decisions("other") == {}


def test_a_routing_decision_missing_a_column_is_refused(store: Store) -> None:
    row = decision_row("a", 1, "devops")
    del row["scores"]
    with pytest.raises(StoreError, match="routing decision"):
        store.add_decision(row)


def test_scaling_events_read_back_newest_first(store: Store) -> None:
    for i, (old, new) in enumerate([(1, 2), (2, 3), (3, 2)]):
        store.add_scaling_event(
            {
                "pool": "devops",
                "from_replicas": old,
                "to_replicas": new,
                "reason": "queue 8 ≥ 8",
                "source": "auto" if i else "manual",
                "at": float(i),
            }
        )
    store.flush_sync()
    rows = store.scaling_events(2)
    assert [(r["from_replicas"], r["to_replicas"], r["source"]) for r in rows] == [
        (3, 2, "auto"),
        (2, 3, "auto"),
    ]
    with pytest.raises(StoreError, match="scaling event"):
        store.add_scaling_event({"pool": "devops"})


def test_the_longest_subtask_ids_a_task_can_make_are_kept_whole(store: Store) -> None:
    # A step name (up to 100 characters), ':' and a component (up to 500): two ids that differ
    # only past the 200th character must stay two subtasks, everywhere a subtask id is kept.
    step, component = "s" * 100, "c" * 499
    first, second = f"{step}:{component}a", f"{step}:{component}b"
    for seq, sid in enumerate((first, second)):
        store.put_subtask(subtask("t1", sid, seq))
        store.put_attempt({"task_id": "t1", "subtask_id": sid, "attempt": 1, "status": "failed"})
        store.add_event({"task_id": "t1", "subtask_id": sid, "kind": "x", "data": {}, "at": 1.0})
        store.add_audit(
            {"at": 1.0, "kind": "action", "task_id": "t1", "subtask_id": sid, "decision": "allowed"}
        )
        store.add_decision(
            {
                "task_id": "t1",
                "subtask_id": sid,
                "attempt": 1,
                "pool": "code",
                "selection": "least_busy",
                "scores": {},
                "reason": "r",
                "at": 1.0,
            }
        )
    store.flush_sync()

    assert [row["id"] for row in store.get_subtasks("t1")] == [first, second]
    assert [event["subtask_id"] for event in store.events("t1")] == [first, second]
    assert {record["subtask_id"] for record in store.audit("t1", None, 10)} == {first, second}
    assert set(store.decisions("t1")) == {first, second}


def test_subtasks_stored_before_ids_grew_survive_the_upgrade(store_url: str) -> None:
    from reynolds.adapters.store.migrate import upgrade

    upgrade(store_url, "0005")
    engine = create_engine(store_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(schema.subtasks.insert(), [subtask("t1", "a:old", 0) | {"spec": {}}])
    finally:
        engine.dispose()
    upgraded = SqlStore(store_url)
    upgraded.start()  # migrates to the head
    try:
        long_id = "s:" + "c" * 600
        upgraded.put_subtask(subtask("t1", long_id, 1))
        upgraded.flush_sync()
        assert [row["id"] for row in upgraded.get_subtasks("t1")] == ["a:old", long_id]
    finally:
        upgraded.close()


def test_distributions_give_count_failures_mean_and_the_sum_of_squares(store: Store) -> None:
    store.record_duration(["step:x"], 1.0, True)
    store.record_duration(["step:x"], 3.0, False)
    store.record_duration(["step:x"], 5.0, True)
    store.flush_sync()
    found = store.distributions(["step:x", "step:none"])
    assert list(found) == ["step:x"]
    count, failures, mean, m2, recent = found["step:x"]
    assert (count, failures) == (3, 1)
    assert math.isclose(mean, 3.0) and math.isclose(m2, 8.0)
    assert recent == (1.0, 3.0, 5.0)


def test_distributions_keep_the_latest_durations_oldest_first(store: Store) -> None:
    for i in range(RECENT_DURATIONS + 6):
        store.record_duration(["step:x"], float(i), True)
        if i % 20 == 0:
            store.flush_sync()  # the window is carried over from what is stored
    store.flush_sync()
    *_, recent = store.distributions(["step:x"])["step:x"]
    assert recent == tuple(float(i) for i in range(6, RECENT_DURATIONS + 6))


# -- experiments --


def test_experiments_are_stored_with_their_scenario_and_report_newest_first(
    store: Store,
) -> None:
    for i, created in enumerate((10.0, 30.0, 20.0)):
        store.put_experiment(
            {
                "id": f"e{i}",
                "name": f"trial {i}",
                "mode": "simulate",
                "status": "running",
                "scenario": {"name": f"trial {i}", "strategies": [{"name": "a"}]},
                "created_at": created,
            }
        )
    store.flush_sync()
    store.put_experiment({"id": "e1", "status": "completed", "report": {"winner": None}})
    store.flush_sync()
    done = store.get_experiment("e1")
    assert done is not None
    assert (done["status"], done["report"], done["scenario"]["strategies"]) == (
        "completed",
        {"winner": None},
        [{"name": "a"}],
    )
    assert [row["id"] for row in store.list_experiments(limit=2)] == ["e1", "e2"]
    assert store.get_experiment("nope") is None


def test_a_tasks_attempts_come_back_by_subtask_then_attempt(store: Store) -> None:
    for subtask, attempt, status in (
        ("b", 1, "succeeded"),
        ("a", 2, "succeeded"),
        ("a", 1, "failed"),
    ):
        store.put_attempt(
            {
                "task_id": "t",
                "subtask_id": subtask,
                "attempt": attempt,
                "status": status,
                "started_at": 1.0,
                "finished_at": 2.5,
            }
        )
    store.put_attempt({"task_id": "other", "subtask_id": "a", "attempt": 1, "status": "failed"})
    store.flush_sync()
    found = [(r["subtask_id"], r["attempt"], r["status"]) for r in store.get_attempts("t")]
    assert found == [("a", 1, "failed"), ("a", 2, "succeeded"), ("b", 1, "succeeded")]
