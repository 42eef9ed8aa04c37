"""The store checks itself: at start (a whole SQLite file, the store its home had) and while it
runs (a failed read or commit is StoreDamaged or StoreUnavailable, damage is remembered, the
probe reads afresh). On SQLite, and on PostgreSQL where the case exists there."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from tests.helpers.damage import damage_open_store
from tests.helpers.postgres import dedicated_database, unreachable
from tests.helpers.stores import task_row

from reynolds.adapters.store.integrity import StoreMarker
from reynolds.adapters.store.sql import SqlStore
from reynolds.errors import StoreDamaged, StoreUnavailable


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def sqlite_url(home: Path) -> str:
    return f"sqlite:///{home / 'reynolds.db'}"


@pytest.fixture
def started() -> Iterator[Callable[..., SqlStore]]:
    """Start stores (with their home's marker); they are closed afterwards."""
    stores: list[SqlStore] = []

    def start(url: str, home: Path) -> SqlStore:
        store = SqlStore(url, marker=StoreMarker(home))
        store.start()
        stores.append(store)
        return store

    yield start
    for store in stores:
        # The last flush of a damaged store fails, as it should.
        with contextlib.suppress(StoreUnavailable):
            store.close()


def a_store_with_tasks(url: str, home: Path, *task_ids: str) -> None:
    store = SqlStore(url, marker=StoreMarker(home))
    store.start()
    for task_id in task_ids:
        store.put_task(task_row(task_id))
    store.flush_sync()
    store.close()


# -- at start --


def test_a_new_store_gets_an_identity_that_its_home_remembers(
    home: Path, started: Callable[..., SqlStore]
) -> None:
    store = started(sqlite_url(home), home)

    assert store.identity
    assert StoreMarker(home).expected(sqlite_url(home)) == store.identity


def test_a_home_moved_elsewhere_still_knows_its_store(tmp_path: Path, home: Path) -> None:
    a_store_with_tasks(sqlite_url(home), home, "t1")
    moved = tmp_path / "moved"
    shutil.move(home, moved)
    (moved / "reynolds.db").unlink()

    with pytest.raises(StoreDamaged, match="is missing, but this REYNOLDS_HOME had store"):
        SqlStore(sqlite_url(moved), marker=StoreMarker(moved)).start()


def test_another_store_copied_over_this_homes_is_refused(tmp_path: Path, home: Path) -> None:
    a_store_with_tasks(sqlite_url(home), home, "mine")
    other = tmp_path / "other"
    a_store_with_tasks(sqlite_url(other), other, "theirs")
    shutil.copyfile(other / "reynolds.db", home / "reynolds.db")

    with pytest.raises(StoreDamaged, match=r"holds another store \(\w{8}\)") as refused:
        SqlStore(sqlite_url(home), marker=StoreMarker(home)).start()

    assert f"delete {home / 'store.json'}" in refused.value.message


def test_a_store_is_whole_again_once_its_home_knowingly_forgets_the_old_one(
    home: Path, started: Callable[..., SqlStore]
) -> None:
    a_store_with_tasks(sqlite_url(home), home, "t1")
    (home / "reynolds.db").write_bytes(b"")
    (home / "store.json").unlink()

    store = started(sqlite_url(home), home)

    assert store.get_task("t1") is None
    assert StoreMarker(home).expected(sqlite_url(home)) == store.identity


# -- while running --


def test_a_damaged_read_raises_store_damaged_naming_the_file_and_is_remembered(
    home: Path, started: Callable[..., SqlStore]
) -> None:
    a_store_with_tasks(sqlite_url(home), home, "t1")
    store = started(sqlite_url(home), home)
    assert store.failure is None
    damage_open_store(home / "reynolds.db", "tasks")

    with pytest.raises(StoreDamaged, match=f"the store {home / 'reynolds.db'} is damaged"):
        store.get_task("t1")

    assert isinstance(store.failure, StoreDamaged)
    with pytest.raises(StoreDamaged):
        store.probe()  # although the pages the probe reads are whole


def test_a_commit_on_a_damaged_store_is_given_up_at_once_and_flush_says_why(
    home: Path, started: Callable[..., SqlStore]
) -> None:
    store = started(sqlite_url(home), home)
    store.retry_delays_s = (5.0,)  # a retry would take this long
    damage_open_store(home / "reynolds.db")
    store.put_task(task_row("lost"))

    began = time.monotonic()
    with pytest.raises(StoreDamaged, match="is damaged"):
        store.flush_sync()

    assert time.monotonic() - began < 4.0, "a damaged file is not worth retrying"
    # The writer lives on, and every later flush reports the damage.
    with pytest.raises(StoreDamaged):
        store.flush_sync()


def test_the_probe_reads_afresh_and_finds_a_deleted_file(
    home: Path, started: Callable[..., SqlStore]
) -> None:
    store = started(sqlite_url(home), home)
    store.probe()
    (home / "reynolds.db").unlink()

    with pytest.raises(StoreDamaged, match="is missing"):
        store.probe()

    assert not (home / "reynolds.db").exists()


def test_the_probe_finds_an_empty_store_swapped_in_while_running(
    tmp_path: Path, home: Path, started: Callable[..., SqlStore]
) -> None:
    store = started(sqlite_url(home), home)
    (home / "reynolds.db").unlink()
    (home / "reynolds.db").write_bytes(b"")

    with pytest.raises(StoreDamaged, match="no longer the one the server started on"):
        store.probe()


@pytest.fixture
def postgres_url(require_service: Callable[[str, str], NoReturn]) -> Iterator[str]:
    problem = unreachable()
    if problem:
        require_service("PostgreSQL", problem)
    with dedicated_database("reynolds_integrity") as url:
        yield url


def drop_everything(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_postgres_store_whose_tables_are_dropped_is_refused_and_fails_its_probe(
    postgres_url: str, home: Path, started: Callable[..., SqlStore]
) -> None:
    store = started(postgres_url, home)
    store.probe()
    drop_everything(postgres_url)

    with pytest.raises(StoreDamaged, match="no longer the one the server started on"):
        store.probe()
    with pytest.raises(StoreDamaged, match="holds no Reynolds store"):
        SqlStore(postgres_url, marker=StoreMarker(home)).start()


@pytest.mark.postgres
def test_a_postgres_database_new_to_a_home_becomes_its_store(
    postgres_url: str, tmp_path: Path, started: Callable[..., SqlStore]
) -> None:
    first = started(postgres_url, tmp_path / "first")
    # Servers share a database: a second home adopts the store the first one made.
    second = started(postgres_url, tmp_path / "second")

    assert first.identity == second.identity
    assert StoreMarker(tmp_path / "second").expected(postgres_url) == first.identity
