"""Servers sharing a database: who owns a task, and who may claim it to resume it. Run against
SQLite and PostgreSQL; concurrent claims (SKIP LOCKED) on PostgreSQL only."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, select, update
from sqlalchemy.pool import NullPool
from tests.helpers.polling import wait_for

from reynolds.adapters.store.ownership import home_server_id
from reynolds.adapters.store.schema import events, servers, tasks
from reynolds.adapters.store.sql import SqlStore
from reynolds.errors import StoreError

Row = dict[str, Any]
STALE_AFTER_S = 30.0
# Long enough that no heartbeat lands during a test: heartbeats are written by the tests.
QUIET_S = 3600.0


def task(task_id: str, **fields: Any) -> Row:
    row: Row = {
        "id": task_id,
        "type": "build",
        "priority": "medium",
        "status": "pending",
        "spec": {"name": task_id},
        "strategy": {"approach": "direct"},
        "created_at": 1000.0,
    }
    return row | fields


@pytest.fixture
def db(store_url: str) -> Iterator[Engine]:
    """The test's database, seen from outside the stores."""
    engine = create_engine(store_url, poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def server(make_store: Callable[..., SqlStore]) -> Callable[[], SqlStore]:
    """A started store whose heartbeat the test drives."""
    return lambda: make_store(heartbeat_interval_s=QUIET_S)


def owners(db: Engine) -> dict[str, str | None]:
    with db.connect() as conn:
        rows = conn.execute(select(tasks.c.id, tasks.c.owner))
        return {task_id: owner for task_id, owner in rows}


def server_rows(db: Engine) -> dict[str, Row]:
    with db.connect() as conn:
        return {row["id"]: dict(row) for row in conn.execute(select(servers)).mappings()}


def set_heartbeat(db: Engine, store: SqlStore, at: float) -> None:
    with db.begin() as conn:
        conn.execute(update(servers).where(servers.c.id == store.server_id).values(heartbeat_at=at))


def claimed(store: SqlStore, **options: Any) -> list[str]:
    return [row["id"] for row in store.claim_unfinished(STALE_AFTER_S, **options)]


# -- registration --


def test_a_started_store_is_a_server_with_its_host_and_pid_until_it_closes(
    server: Callable[[], SqlStore], db: Engine
) -> None:
    store = server()

    row = server_rows(db)[store.server_id]
    assert (row["host"], row["pid"]) == (socket.gethostname(), os.getpid())
    assert row["heartbeat_at"] >= row["started_at"] > time.time() - 60

    store.close()
    assert store.server_id not in server_rows(db)


def test_the_heartbeat_is_renewed_and_a_swept_server_registers_again(
    make_store: Callable[..., SqlStore], db: Engine
) -> None:
    store = make_store(heartbeat_interval_s=0.05)
    first = server_rows(db)[store.server_id]["heartbeat_at"]
    wait_for(
        lambda: server_rows(db)[store.server_id]["heartbeat_at"] > first,
        what="no heartbeat was written",
    )

    with db.begin() as conn:
        conn.execute(servers.delete())

    wait_for(lambda: store.server_id in server_rows(db), what="the server did not register again")


# -- owners and claims --


def test_a_task_is_owned_by_the_server_that_inserted_it(
    server: Callable[[], SqlStore], db: Engine
) -> None:
    a, b = server(), server()
    a.put_task(task("t1"))
    b.put_task(task("t2"))
    a.flush_sync()
    b.flush_sync()

    assert owners(db) == {"t1": a.server_id, "t2": b.server_id}


def test_updates_of_a_task_never_change_its_owner(
    server: Callable[[], SqlStore], db: Engine, store_url: str
) -> None:
    a, b = server(), server()
    a.put_task(task("t1"))
    a.flush_sync()

    # A whole row again (an upsert of an existing task), then a partial one, from another server.
    b.put_task(task("t1", status="running", started_at=1001.0))
    b.put_task({"id": "t1", "status": "succeeded", "finished_at": 1002.0})
    b.flush_sync()

    assert owners(db) == {"t1": a.server_id}
    row = b.get_task("t1")
    # Servers share only PostgreSQL, where a task's writes are fenced by its owner: b's are
    # left out. A SQLite store has one server (its home's lock) and no fence.
    fenced = store_url.startswith("postgresql")
    assert row is not None and row["status"] == ("pending" if fenced else "succeeded")


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)  # servers share only it
def test_a_server_found_dead_writes_nothing_over_its_successor(
    server: Callable[[], SqlStore], db: Engine
) -> None:
    a, b = server(), server()
    told: list[set[str]] = []
    a.on_lost(told.append)
    a.put_task(task("t1", status="running"))
    a.put_task(task("t2", status="running"))
    a.flush_sync()
    set_heartbeat(db, a, time.time() - STALE_AFTER_S - 1)
    assert claimed(b, others_only=True) == ["t1", "t2"]
    b.put_task({"id": "t1", "status": "succeeded", "finished_at": 2000.0})
    b.flush_sync()
    # a wakes up: its heartbeat again, a task of its own, and the writes it had pending.
    set_heartbeat(db, a, time.time())
    a.put_task(task("t3", status="running"))
    a.put_task({"id": "t1", "status": "failed", "finished_at": 1500.0})
    a.put_task({"id": "t2", "status": "failed", "finished_at": 1500.0})
    a.flush_sync()

    statuses = {
        row["id"]: row["status"] for row in (b.get_task(i) for i in ("t1", "t2", "t3")) if row
    }
    assert statuses == {"t1": "succeeded", "t2": "running", "t3": "running"}
    assert owners(db) == {"t1": b.server_id, "t2": b.server_id, "t3": a.server_id}
    assert told == [{"t1", "t2"}]
    # b, holding its claim, still writes: its epoch is the one its claim raised.
    b.put_task({"id": "t2", "status": "succeeded", "finished_at": 2001.0})
    b.flush_sync()
    row = a.get_task("t2")
    assert row is not None and row["status"] == "succeeded"
    # a claims nothing of b's while b lives, not even what it had before.
    assert claimed(a, others_only=True) == []


def test_only_its_owner_claims_a_task_while_the_owner_is_alive(
    server: Callable[[], SqlStore],
) -> None:
    a, b = server(), server()
    a.put_task(task("t1"))
    a.flush_sync()

    assert claimed(b) == []
    assert claimed(a) == ["t1"]


def test_a_stale_servers_unfinished_tasks_go_to_the_next_claimer_and_no_longer_to_it(
    server: Callable[[], SqlStore], db: Engine
) -> None:
    a, b = server(), server()
    a.put_task(task("t1", created_at=1001.0))
    a.put_task(task("t2", created_at=1000.0, status="running"))
    a.put_task(task("done", status="succeeded"))
    a.flush_sync()

    set_heartbeat(db, a, time.time() - STALE_AFTER_S - 1)

    assert claimed(b) == ["t2", "t1"]  # oldest first
    assert owners(db) == {"t1": b.server_id, "t2": b.server_id, "done": a.server_id}
    assert a.server_id not in server_rows(db)  # swept with the claim
    assert claimed(a) == []


def test_a_heartbeat_within_the_limit_keeps_the_tasks(
    server: Callable[[], SqlStore], db: Engine
) -> None:
    a, b = server(), server()
    a.put_task(task("t1"))
    a.flush_sync()

    set_heartbeat(db, a, time.time() - STALE_AFTER_S + 5)

    assert claimed(b) == []
    assert a.server_id in server_rows(db)


def test_a_server_that_stopped_cleanly_leaves_its_tasks_to_the_next_claimer_at_once(
    server: Callable[[], SqlStore], db: Engine
) -> None:
    a, b = server(), server()
    a.put_task(task("t1"))
    a.flush_sync()
    a.close()

    assert claimed(b) == ["t1"]
    assert owners(db) == {"t1": b.server_id}


def test_a_server_started_again_under_its_id_takes_its_tasks_back_at_once(
    make_store: Callable[..., SqlStore], server: Callable[[], SqlStore], db: Engine
) -> None:
    crashed, other = server(), server()
    crashed.put_task(task("t1"))
    crashed.flush_sync()
    # A crash leaves the row, its heartbeat still fresh; the home's next run has the same id.
    restarted = make_store(server_id=crashed.server_id, heartbeat_interval_s=QUIET_S)

    assert claimed(other) == []
    assert claimed(restarted) == ["t1"]


def test_tasks_written_before_owners_existed_go_to_the_first_claimer(
    server: Callable[[], SqlStore], db: Engine
) -> None:
    a, b = server(), server()
    a.put_task(task("t1"))
    a.flush_sync()
    with db.begin() as conn:
        conn.execute(update(tasks).values(owner=None))

    assert claimed(b) == ["t1"]
    assert claimed(a) == []


def test_a_claim_takes_at_most_its_limit_oldest_first(server: Callable[[], SqlStore]) -> None:
    a = server()
    for i in range(5):
        a.put_task(task(f"t{i}", created_at=1000.0 + i))
    a.flush_sync()

    assert claimed(a, limit=2) == ["t0", "t1"]


@pytest.mark.parametrize(
    "store_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_concurrent_claimers_share_orphaned_tasks_without_waiting_or_overlapping(
    server: Callable[[], SqlStore], db: Engine
) -> None:
    dead = server()
    for i in range(50):
        dead.put_task(task(f"t{i:02d}", created_at=1000.0 + i))
    dead.flush_sync()
    set_heartbeat(db, dead, time.time() - STALE_AFTER_S - 1)
    a, b = server(), server()

    # A's claim stops inside its transaction, its rows locked, until B has claimed.
    a_holds, release = threading.Event(), threading.Event()

    def hold(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.current_thread().name.startswith("claimer-a") and statement.startswith(
            "UPDATE tasks"
        ):
            a_holds.set()
            release.wait(30)

    event.listen(Engine, "after_cursor_execute", hold)
    try:
        with (
            ThreadPoolExecutor(1, thread_name_prefix="claimer-a") as pool_a,
            ThreadPoolExecutor(1, thread_name_prefix="claimer-b") as pool_b,
        ):
            try:
                first = pool_a.submit(claimed, a, limit=20)
                assert a_holds.wait(10), "A's claim did not start"
                # Without SKIP LOCKED, B would wait for A's transaction and time out here.
                second = pool_b.submit(claimed, b).result(timeout=10)
            finally:
                release.set()
            firsts = first.result(timeout=10)
    finally:
        event.remove(Engine, "after_cursor_execute", hold)

    assert firsts == [f"t{i:02d}" for i in range(20)]
    assert set(firsts).isdisjoint(second)
    assert set(firsts) | set(second) == {f"t{i:02d}" for i in range(50)}
    assert sorted(owners(db).values()) == sorted([a.server_id] * 20 + [b.server_id] * 30)


@pytest.mark.parametrize(
    "store_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_rows_a_server_paused_mid_commit_locked_are_freed_after_the_stall(
    make_store: Callable[..., SqlStore], db: Engine
) -> None:
    stall_s = 1.5
    a = make_store(heartbeat_interval_s=QUIET_S, stall_s=stall_s)
    b = make_store(heartbeat_interval_s=QUIET_S)
    a.put_task(task("t1", status="running"))
    a.flush_sync()
    # a stops inside a commit, its fence holding the task's row (FOR SHARE), and is found dead.
    paused = a._engine.connect()  # its own engine: the settings its sessions run with
    paused.execute(select(tasks.c.id).where(tasks.c.id == "t1").with_for_update(read=True))
    set_heartbeat(db, a, time.time() - STALE_AFTER_S - 1)
    try:
        assert claimed(b, others_only=True) == []  # skipped: locked by a's open transaction
        found = wait_for(
            lambda: claimed(b, others_only=True), stall_s + 10, "a's rows stayed locked"
        )
    finally:
        with contextlib.suppress(Exception):  # the database ended that session
            paused.close()
    assert found == ["t1"]
    assert owners(db) == {"t1": b.server_id}


@pytest.mark.parametrize(
    "store_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_cancel_asked_through_another_server_is_seen_by_the_owner_only(
    server: Callable[[], SqlStore],
) -> None:
    a, b = server(), server()
    a.put_task(task("run", status="running"))
    a.put_task(task("done", status="succeeded"))
    a.flush_sync()
    assert a.cancel_requests() == []

    assert b.request_cancel("run") is True
    assert b.request_cancel("done") is False  # ended: nothing to cancel
    assert b.request_cancel("missing") is False

    assert a.cancel_requests() == ["run"]
    assert b.cancel_requests() == []  # not b's task
    a.put_task({"id": "run", "status": "cancelled", "finished_at": 2000.0})
    a.flush_sync()
    assert a.cancel_requests() == []


@pytest.mark.parametrize(
    "store_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_live_servers_share_their_loads_and_the_first_by_id_leads(
    server: Callable[[], SqlStore], db: Engine
) -> None:
    a, b, c = sorted((server(), server(), server()), key=lambda s: s.server_id)
    loads = {s.server_id: {"at": 1.0, "pools": {"code": [i, i]}} for i, s in enumerate((a, b, c))}

    assert a.share_load(loads[a.server_id], STALE_AFTER_S) == (True, [])  # the others have none
    assert b.share_load(loads[b.server_id], STALE_AFTER_S) == (False, [loads[a.server_id]])
    leads, others = c.share_load(loads[c.server_id], STALE_AFTER_S)
    assert leads is False
    assert sorted(o["pools"]["code"][0] for o in others) == [0, 1]

    # a falls silent: b leads, and a's load no longer counts.
    set_heartbeat(db, a, time.time() - STALE_AFTER_S - 1)
    assert b.share_load(loads[b.server_id], STALE_AFTER_S) == (True, [loads[c.server_id]])


def test_a_server_follows_the_events_the_others_commit_from_where_each_of_them_was(
    server: Callable[[], SqlStore], db: Engine
) -> None:
    a, b, c = server(), server(), server()

    def add(store: SqlStore, *kinds: str) -> None:
        for kind in kinds:
            store.add_event({"task_id": store.server_id, "kind": kind})
        store.flush_sync()

    add(a, "before")
    add(c, "own")  # c's own events reach its listeners as it commits them, not from here
    if not c.shared:  # a SQLite file has one server: nothing to follow, and nothing named
        assert c.events_elsewhere(*c.event_cursors()) == []
        return
    # An event of a's that has its seq but is not committed yet while b commits a later one:
    # a follower that started from the newest seq of all would never see it.
    with db.connect() as slow:
        pending = slow.begin()
        slow.execute(
            events.insert().values(
                task_id=a.server_id, kind="in flight", at=1.0, server=a.server_id
            )
        )
        add(b, "after")
        after, start = c.event_cursors()
        pending.commit()
    later = server()  # registered once the follower had started

    def read() -> list[tuple[str, str]]:
        rows = c.events_elsewhere(after, start)
        for row in rows:
            after[row["server"]] = row["seq"]
        return [(row["task_id"], row["kind"]) for row in rows]

    assert read() == [(a.server_id, "in flight")]
    add(later, "new")
    add(b, "more")
    add(a, "last")
    assert read() == [(later.server_id, "new"), (b.server_id, "more"), (a.server_id, "last")]
    assert read() == []


# -- the id a home keeps --


def test_a_home_keeps_the_server_id_it_was_first_given(tmp_path: Path) -> None:
    path = tmp_path / "server_id"

    first = home_server_id(path)

    assert home_server_id(path) == first
    assert path.read_text(encoding="utf-8").strip() == first


def test_a_home_whose_id_file_holds_something_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "server_id"
    path.write_text("not an id\n", encoding="utf-8")

    with pytest.raises(StoreError, match="server id"):
        home_server_id(path)
