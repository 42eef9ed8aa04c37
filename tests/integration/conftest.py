"""Store fixtures: every store test runs on SQLite and on PostgreSQL, each in a fresh database
(a file under tmp_path, or a schema of its own dropped afterwards)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from reynolds.adapters.store.memory import MemoryStore
from reynolds.adapters.store.sql import SqlStore
from reynolds.services.ports import Store

POSTGRES_URL = os.environ.get(
    "REYNOLDS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_url(require_service: Callable[[str, str], NoReturn]) -> str:
    engine = create_engine(POSTGRES_URL, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        shown = make_url(POSTGRES_URL).render_as_string(hide_password=True)
        require_service("PostgreSQL", f"cannot connect to {shown} ({type(exc.orig).__name__})")
    finally:
        engine.dispose()
    return POSTGRES_URL


@contextlib.contextmanager
def database_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of `kind` (sqlite or postgres) for one test, dropped afterwards."""
    if kind == "sqlite":
        # A folder that does not exist yet: the store must create it.
        yield f"sqlite:///{tmp_path / 'home' / 'reynolds.db'}"
        return
    base: str = request.getfixturevalue("postgres_url")
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, request, tmp_path) as url:
        yield url


@pytest.fixture
def make_sql_store(store_url: str) -> Iterator[Callable[..., SqlStore]]:
    """Build and start stores on the test's database; they are closed afterwards."""
    stores: list[SqlStore] = []

    def make(**options: float) -> SqlStore:
        store = SqlStore(store_url, **options)
        stores.append(store)
        store.start()
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def make_store(make_sql_store: Callable[..., SqlStore]) -> Callable[..., SqlStore]:
    """Stores on the test's database (test_store.py widens it to every kind of store)."""
    return make_sql_store


@pytest.fixture
def store(make_store: Callable[..., SqlStore]) -> SqlStore:
    return make_store()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "memory"])
def make_any_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., Store]]:
    """Build and start stores of every implementation of the Store port: SQLite, PostgreSQL
    and the in-memory one. For the port's contract suite."""
    stores: list[SqlStore | MemoryStore] = []
    with contextlib.ExitStack() as stack:
        url = None
        if request.param != "memory":
            url = stack.enter_context(database_url(request.param, request, tmp_path))

        def make(**options: float) -> Store:
            store = MemoryStore(**options) if url is None else SqlStore(url, **options)
            stores.append(store)
            store.start()
            return store

        yield make
        for store in stores:
            store.close()
