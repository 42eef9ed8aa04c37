"""Backing up the store and restoring it, on SQLite and on PostgreSQL (a database of its own)."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy import create_engine, delete, insert, inspect, text
from sqlalchemy.pool import NullPool
from tests.helpers.postgres import dedicated_database, unreachable
from tests.helpers.stores import put_tasks, task_ids, task_row

from reynolds.adapters.store import backup as backups
from reynolds.adapters.store.migrate import head_revision, upgrade
from reynolds.adapters.store.schema import tasks
from reynolds.adapters.store.sql import SqlStore
from reynolds.errors import BackupError


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    require_service: Callable[[str, str], NoReturn],
) -> Iterator[str]:
    """An empty store's URL: a SQLite file in a new home, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'home' / 'reynolds.db'}"
        return
    problem = unreachable()
    if problem:
        require_service("PostgreSQL", problem)
    with dedicated_database("reynolds_backup") as database_url:
        yield database_url


def execute(url: str, *statements: Any) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        engine.dispose()


def schema_revision(url: str) -> str:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


# -- round trips --


def test_a_restored_backup_brings_back_its_tasks_and_only_those(url: str, tmp_path: Path) -> None:
    put_tasks(url, "t1", "t2")
    made = backups.backup(url, tmp_path / "saved" / "store.bak")
    execute(url, delete(tasks).where(tasks.c.id == "t1"))
    put_tasks(url, "t3")
    assert task_ids(url) == {"t2", "t3"}

    found, revision = backups.restore(url, made.path)

    assert task_ids(url) == {"t1", "t2"}
    assert revision == head_revision() == found.revision
    assert made.path.is_file()
    assert made.size_bytes == made.path.stat().st_size > 0


def test_a_backup_made_while_the_store_is_open_and_writing_holds_what_was_committed(
    url: str, tmp_path: Path
) -> None:
    store = SqlStore(url)
    store.start()
    try:
        for task_id in ("a", "b", "c"):
            store.put_task(task_row(task_id))
        store.flush_sync()

        made = backups.backup(url, tmp_path / "online.bak")

        store.put_task(task_row("after"))
        store.flush_sync()
    finally:
        store.close()
    backups.restore(url, made.path)
    assert task_ids(url) == {"a", "b", "c"}


def test_an_older_backup_is_brought_to_the_current_schema(url: str, tmp_path: Path) -> None:
    upgrade(url, "0002")
    execute(url, insert(tasks).values(task_row("old")))
    made = backups.backup(url, tmp_path / "old.bak")
    assert made.revision == "0002"
    # The store moves on: the current schema, a newer table with rows of its own.
    put_tasks(url, "new")
    assert "orchestration_decisions" in table_names(url)

    _found, revision = backups.restore(url, made.path)

    assert revision == head_revision() == schema_revision(url)
    assert task_ids(url) == {"old"}
    assert "orchestration_decisions" in table_names(url)


def test_a_backup_describes_what_it_holds(url: str, tmp_path: Path) -> None:
    put_tasks(url, "t1", "t2")

    made = backups.backup(url, tmp_path / "described.bak")

    assert made.revision == head_revision()
    assert {"tasks", "subtasks", "alembic_version"} <= made.tables
    if made.kind == "sqlite":
        assert made.tasks == 2
        assert "2 task(s)" in made.describe()
    assert f"schema revision {head_revision()}" in made.describe()


def test_a_backup_is_readable_by_its_owner_only(url: str, tmp_path: Path) -> None:
    put_tasks(url, "t1")

    made = backups.backup(url, tmp_path / "private.bak")

    assert stat.S_IMODE(made.path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_backup_never_overwrites_a_file(url: str, tmp_path: Path) -> None:
    put_tasks(url, "t1")
    existing = tmp_path / "taken.bak"
    existing.write_text("keep me", encoding="utf-8")

    with pytest.raises(BackupError, match="already exists"):
        backups.backup(url, existing)

    assert existing.read_text(encoding="utf-8") == "keep me"


def test_a_store_never_started_has_nothing_to_back_up(url: str, tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="nothing to back up"):
        backups.backup(url, tmp_path / "empty.bak")

    assert not (tmp_path / "empty.bak").exists()


# -- refusals: the store is left as it was --


def garbage(path: Path) -> None:
    path.write_bytes(b"this is not a backup\n" * 100)


def empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("spoil", [garbage, empty], ids=["garbage", "empty"])
def test_a_file_that_is_no_backup_is_refused_and_the_store_kept(
    url: str, tmp_path: Path, spoil: Callable[[Path], None]
) -> None:
    put_tasks(url, "kept")
    bad = tmp_path / "bad.bak"
    spoil(bad)

    with pytest.raises(BackupError, match=r"bad\.bak"):
        backups.restore(url, bad)

    assert task_ids(url) == {"kept"}


def test_a_truncated_backup_is_refused_and_the_store_kept(url: str, tmp_path: Path) -> None:
    put_tasks(url, *(f"t{i}" for i in range(200)))
    made = backups.backup(url, tmp_path / "whole.bak")
    cut = tmp_path / "cut.bak"
    data = made.path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    execute(url, delete(tasks).where(tasks.c.id != "t0"))

    with pytest.raises(BackupError, match=r"cut\.bak"):
        backups.restore(url, cut)

    assert task_ids(url) == {"t0"}


@pytest.mark.postgres
def test_a_dump_that_fails_midway_through_its_restore_leaves_the_database_as_it_was(
    require_service: Callable[[str, str], NoReturn], tmp_path: Path
) -> None:
    problem = unreachable()
    if problem:
        require_service("PostgreSQL", problem)
    with dedicated_database("reynolds_backup") as url:
        put_tasks(url, *(f"t{i}" for i in range(200)))
        made = backups.backup(url, tmp_path / "whole.dump")
        data = made.path.read_bytes()
        # Its table of contents is whole, so the dump passes the check; its data is cut.
        cut = tmp_path / "cut.dump"
        cut.write_bytes(data[: len(data) * 95 // 100])
        backups.inspect(url, cut)
        execute(url, delete(tasks).where(tasks.c.id != "t0"))

        with pytest.raises(BackupError, match="pg_restore failed; the database is unchanged"):
            backups.restore(url, cut)

        assert task_ids(url) == {"t0"}


def test_a_backup_from_a_newer_schema_is_refused(url: str, tmp_path: Path) -> None:
    put_tasks(url, "t1")
    # As a later version of Reynolds would leave it.
    execute(url, text("UPDATE alembic_version SET version_num = '9999'"))
    made = backups.backup(url, tmp_path / "newer.bak")
    execute(url, text("UPDATE alembic_version SET version_num = :v").bindparams(v=head_revision()))
    put_tasks(url, "t2")

    with pytest.raises(BackupError, match="9999"):
        backups.restore(url, made.path)

    assert task_ids(url) == {"t1", "t2"}


def test_a_missing_file_is_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no backup file"):
        backups.restore(url, tmp_path / "absent.bak")


# -- SQLite specifics --


def sqlite_file(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'home' / 'reynolds.db'}"


def test_a_sqlite_backup_is_one_self_contained_file(sqlite_url: str, tmp_path: Path) -> None:
    put_tasks(sqlite_url, "t1")

    made = backups.backup(sqlite_url, tmp_path / "one.db")

    header = made.path.read_bytes()[:20]
    # Bytes 18 and 19 are 1 for a rollback journal, 2 for WAL, which needs its -wal file.
    assert (header[18], header[19]) == (1, 1)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("one.db")) == ["one.db"]


def test_a_damaged_sqlite_backup_fails_the_integrity_check(sqlite_url: str, tmp_path: Path) -> None:
    put_tasks(sqlite_url, *(f"t{i}" for i in range(300)))
    made = backups.backup(sqlite_url, tmp_path / "good.db")
    damaged = bytearray(made.path.read_bytes())
    page = 4096
    damaged[3 * page : 3 * page + 64] = b"\xff" * 64
    bad = tmp_path / "damaged.db"
    bad.write_bytes(bytes(damaged))

    with pytest.raises(BackupError, match=r"damaged\.db"):
        backups.inspect(sqlite_url, bad)


def test_a_sqlite_database_without_our_tables_is_not_a_backup(
    sqlite_url: str, tmp_path: Path
) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()

    with pytest.raises(BackupError, match="not a Reynolds backup"):
        backups.inspect(sqlite_url, other)


def test_restoring_the_store_onto_itself_is_refused(sqlite_url: str) -> None:
    put_tasks(sqlite_url, "t1")

    with pytest.raises(BackupError, match="the store itself"):
        backups.restore(sqlite_url, sqlite_file(sqlite_url))

    assert task_ids(sqlite_url) == {"t1"}


def test_a_restore_into_a_home_with_no_store_yet_creates_it(
    sqlite_url: str, tmp_path: Path
) -> None:
    put_tasks(sqlite_url, "t1")
    made = backups.backup(sqlite_url, tmp_path / "seed.db")
    fresh = f"sqlite:///{tmp_path / 'elsewhere' / 'reynolds.db'}"

    backups.restore(fresh, made.path)

    assert task_ids(fresh) == {"t1"}
