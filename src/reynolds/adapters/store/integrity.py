"""Is the store whole, and the one this REYNOLDS_HOME had? Checked before the server serves,
and again by every health check.

At start, a SQLite store passes `PRAGMA quick_check` (every page's structure; about 0.12 s for
89 MB in the page cache, 0.6 s read cold: see benchmarks/store_check.py). Each store has an
identity, one row made when it is created; the home remembers it in `store.json`, per database.
A database the home had that is now missing, empty, without Reynolds tables or holding another
store is refused, instead of being silently replaced by a new, empty one. Deleting `store.json`
starts afresh knowingly; `reynolds restore` records the restored store's identity.

While running, `failure` maps a driver error to StoreDamaged (a corrupt SQLite file) or
StoreUnavailable (anything else), and `probe` reads the identity afresh, from a new
connection for SQLite: a pooled one would keep reading a deleted file, or pages it cached.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, func, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from reynolds.adapters.home import writing
from reynolds.adapters.store.connect import display_url, ping, reason
from reynolds.adapters.store.schema import store_identity, tasks
from reynolds.errors import StoreDamaged, StoreError, StoreUnavailable

MARKER_NAME = "store.json"
RESTORE = "put a backup back with `reynolds restore PATH`"
# SQLite's primary result codes for a file that is not (or no longer) a database.
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_BUSY_TIMEOUT_S = 10.0
_UNDEFINED_TABLE = "42P01"  # PostgreSQL's SQLSTATE for a table that does not exist
_IN_HOME = "REYNOLDS_HOME/"


class StoreMarker:
    """`REYNOLDS_HOME/store.json`: the identity of the store in each database this home has
    used, keyed by the database (a SQLite file in the home by its name there, so that the
    home may move)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / MARKER_NAME

    def expected(self, url: str) -> str | None:
        """The identity this home recorded for the store at `url`, if any."""
        found = self._read().get(self._key(url))
        return found if isinstance(found, str) else None

    def record(self, url: str, store_id: str) -> None:
        """Remember `store_id` as the store at `url` (HomeNotWritable when it cannot)."""
        stores = self._read()
        if stores.get(self._key(url)) == store_id:
            return
        stores[self._key(url)] = store_id
        body = {
            "about": "The stores this REYNOLDS_HOME has had. One of them missing, emptied or "
            "replaced is refused at start; delete this file to start afresh on a new store.",
            "stores": stores,
        }
        partial = self.path.with_name(self.path.name + ".partial")
        with writing(self.home):
            self.home.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
            os.replace(partial, self.path)

    def _read(self) -> dict[str, Any]:
        try:
            body = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"{self.path} is not readable ({exc}): delete it to check the store as a new one"
            ) from None
        stores = body.get("stores") if isinstance(body, dict) else None
        return dict(stores) if isinstance(stores, dict) else {}

    def _key(self, url: str) -> str:
        file = sqlite_file(url)
        if file is None:
            return display_url(url)
        try:
            return _IN_HOME + str(file.relative_to(self.home.absolute()))
        except ValueError:
            return str(file)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite store, None for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser().absolute()


def shown(url: str) -> str:
    """How the store is named in messages: its file, or its URL without the password."""
    file = sqlite_file(url)
    return str(file) if file is not None else display_url(url)


def is_damage(exc: BaseException) -> bool:
    """Whether `exc` says the SQLite file is corrupt or not a database."""
    cause = getattr(exc, "orig", None) or exc
    code = getattr(cause, "sqlite_errorcode", None)
    return (
        isinstance(cause, sqlite3.DatabaseError)
        and isinstance(code, int)
        and (code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB))
    )


def damaged(store: str, detail: str, *, running: bool) -> StoreDamaged:
    """The refusal of a corrupt store: what is wrong, and what to do, at start or while the
    server runs."""
    first = "stop the server, then " if running else "Reynolds will not start on it; "
    return StoreDamaged(f"the store {store} is damaged ({detail}): {first}{RESTORE}", store=store)


def failure(exc: BaseException, url: str) -> StoreUnavailable:
    """The error a failed statement on the store at `url` becomes, in one line."""
    store = shown(url)
    if is_damage(exc):
        return damaged(store, reason(exc), running=True)
    why = reason(exc)
    password = make_url(url).password
    if password:
        why = why.replace(password, "***")
    return StoreUnavailable(f"the store {store} failed: {why}", store=store)


def check_before_start(url: str, marker: StoreMarker | None) -> None:
    """Refuse a store that is damaged, or not the one `marker` says this home had; a database
    the home never had passes (it becomes a new store). Raises StoreDamaged or, when the
    database cannot be reached, StoreUnavailable."""
    expected = marker.expected(url) if marker is not None else None
    file = sqlite_file(url)
    if file is not None:
        found = _check_sqlite(file, expected, marker)
    else:
        ping(url)
        found = _read_identity(url)
    if expected is not None and found != expected:
        assert marker is not None
        raise _not_the_store(shown(url), found, expected, marker)


def adopt(url: str, marker: StoreMarker | None) -> str:
    """The store's identity, made now if it has none (a new store, or one older than
    identities), and recorded in `marker`."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            found = _identity(conn)
            if found is None:
                insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
                row = {"singleton": 1, "id": str(uuid.uuid4()), "created_at": time.time()}
                conn.execute(insert(store_identity).values(row).on_conflict_do_nothing())
                found = _identity(conn)
    except SQLAlchemyError as exc:
        raise failure(exc, url) from None
    finally:
        engine.dispose()
    assert found is not None
    if marker is not None:
        marker.record(url, found)
    return found


def probe(url: str, engine: Engine, store_id: str) -> None:
    """Read the store's identity and newest task afresh: StoreDamaged when the store is gone or
    another; a failed read raises the driver's error. PostgreSQL is read through `engine`;
    SQLite through a new connection, which cannot create the file."""
    file = sqlite_file(url)
    if file is None:
        with engine.connect() as conn:
            try:
                found = _identity(conn)
                conn.execute(select(func.max(tasks.c.created_at))).scalar()
            except ProgrammingError as exc:
                if getattr(exc.orig, "sqlstate", None) != _UNDEFINED_TABLE:
                    raise
                found = None
    else:
        if not file.exists():
            raise StoreDamaged(
                f"the store {file} is missing: it was deleted while the server ran; "
                f"stop the server, then {RESTORE}",
                store=str(file),
            )
        reader = sqlite3.connect(f"{file.as_uri()}?mode=rw", uri=True, timeout=_BUSY_TIMEOUT_S)
        try:
            row = reader.execute("SELECT id FROM store_identity WHERE singleton = 1").fetchone()
            reader.execute("SELECT max(created_at) FROM tasks").fetchone()
        except sqlite3.OperationalError as exc:
            if not str(exc).startswith("no such table"):
                raise
            row = None
        finally:
            reader.close()
        found = row[0] if row else None
    if found != store_id:
        raise StoreDamaged(
            f"the store {shown(url)} is no longer the one the server started on "
            f"({_name(found)} instead of {_name(store_id)}): stop the server, then {RESTORE}",
            store=shown(url),
        )


def _check_sqlite(file: Path, expected: str | None, marker: StoreMarker | None) -> str | None:
    """quick_check, then the identity; the identity (None when none) of a whole file."""
    if not file.exists() or file.stat().st_size == 0:
        if expected is not None:
            assert marker is not None
            what = "is missing" if not file.exists() else "is empty (0 bytes)"
            raise _vanished(str(file), what, expected, marker)
        return None
    try:
        connection = sqlite3.connect(f"{file.as_uri()}?mode=rw", uri=True, timeout=_BUSY_TIMEOUT_S)
        try:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise damaged(str(file), f"SQLite quick_check: {problems[0]}", running=False)
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_schema")}
            row = None
            if "store_identity" in tables:
                query = "SELECT id FROM store_identity WHERE singleton = 1"
                row = connection.execute(query).fetchone()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        if is_damage(exc):
            raise damaged(str(file), f"SQLite quick_check: {exc}", running=False) from None
        raise StoreUnavailable(f"cannot read the store {file}: {exc}", store=str(file)) from None
    if expected is not None and "tasks" not in tables:
        assert marker is not None
        raise _vanished(str(file), "holds no Reynolds store", expected, marker)
    return str(row[0]) if row else None


def _read_identity(url: str) -> str | None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("tasks"):
                return _NO_TABLES
            return _identity(conn) if inspect(conn).has_table("store_identity") else None
    except SQLAlchemyError as exc:
        raise failure(exc, url) from None
    finally:
        engine.dispose()


# What `_read_identity` finds in a database without Reynolds tables.
_NO_TABLES = "(no tables)"


def _identity(conn: Connection) -> str | None:
    query = select(store_identity.c.id).where(store_identity.c.singleton == 1)
    found = conn.execute(query).scalar_one_or_none()
    return str(found) if found is not None else None


def _not_the_store(
    store: str, found: str | None, expected: str, marker: StoreMarker
) -> StoreDamaged:
    if found == _NO_TABLES:
        return _vanished(store, "holds no Reynolds store", expected, marker)
    if found is None:
        what = "holds a store without an identity (a copy older than this home's?)"
    else:
        what = f"holds another store ({_name(found)})"
    return _vanished(store, what, expected, marker)


def _vanished(store: str, what: str, expected: str, marker: StoreMarker) -> StoreDamaged:
    return StoreDamaged(
        f"the store {store} {what}, but this REYNOLDS_HOME had store {_name(expected)} there "
        f"(recorded in {marker.path}): {RESTORE}, or, to start afresh on a new store, "
        f"delete {marker.path}",
        store=store,
    )


def _name(store_id: str | None) -> str:
    return "none" if store_id is None else store_id[:8]
