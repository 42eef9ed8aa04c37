"""A PostgreSQL database of a test's own, created on the test server and dropped afterwards.

A whole database rather than a schema: pg_dump and pg_restore work on databases, and a restore
with --clean must not touch the tables of tests running beside it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

POSTGRES_URL = os.environ.get(
    "REYNOLDS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def unreachable(url: str = POSTGRES_URL) -> str | None:
    """Why the server at `url` cannot be used, or None when it answers."""
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return None
    except OperationalError as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        return f"cannot connect to {shown} ({type(exc.orig).__name__})"
    finally:
        engine.dispose()


@contextmanager
def dedicated_database(prefix: str, base_url: str = POSTGRES_URL) -> Iterator[str]:
    """The URL of a new, empty database, dropped (connections and all) on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
