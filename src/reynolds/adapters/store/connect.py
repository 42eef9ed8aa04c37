"""Connecting to the database behind the store: its URL shown without the password, whether it
answers, the engine the store uses, its schema brought up to date, its errors in one line."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from reynolds.errors import StoreError, StoreUnavailable

_BUSY_TIMEOUT_MS = 10_000


def display_url(url: str) -> str:
    """The URL as it may be printed or logged: its password replaced by `***`."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a database URL)"


# A transaction of the store waits on its own client for milliseconds; one idle this long is
# a paused or lost server's.
STALL_S = 10.0


def ping(url: str, *, timeout_s: float = 5.0) -> None:
    """Connect and run `SELECT 1`, or raise StoreError saying why not, in one line
    (StoreUnavailable when the database does not answer)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError("REYNOLDS_DATABASE_URL is not a database URL") from None
    connect_args = (
        {"connect_timeout": max(1, round(timeout_s))}
        if parsed.get_backend_name() == "postgresql"
        else {}
    )
    engine = create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        message = reason(exc)
        if parsed.password:
            message = message.replace(parsed.password, "***")
        raise StoreUnavailable(f"{display_url(url)} is not reachable: {message}") from None
    finally:
        engine.dispose()


def reason(exc: BaseException) -> str:
    """The first line of the driver's message, without SQLAlchemy's statement and links."""
    cause = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__


def migrate(url: str) -> str:
    """Bring the schema to the latest revision and return it; StoreUnavailable, in one line,
    if not."""
    from alembic.util import CommandError

    from reynolds.adapters.store.migrate import head_revision, upgrade

    try:
        upgrade(url)
    except (SQLAlchemyError, CommandError) as exc:
        raise StoreUnavailable(
            f"migrating {display_url(url)} to the current schema failed: {reason(exc)}"
        ) from None
    return head_revision()


def make_engine(url: str, *, stall_s: float = STALL_S) -> Engine:
    """The pooled engine the store reads and writes with: SQLite in WAL mode (a file: the
    writer and the readers share it) or PostgreSQL with pre-ping; StoreError otherwise.

    On PostgreSQL a session left idle inside a transaction for `stall_s` is ended by the
    database: a server paused mid-commit (SIGSTOP, a frozen VM) would otherwise hold its
    tasks' rows locked, and the servers taking over from it skip locked rows."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError("REYNOLDS_DATABASE_URL is not a database URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise StoreError("SQLite needs a file: the writer and the readers share it")
        # Parameters stay out of error messages: rows may hold secrets from task output.
        engine = create_engine(parsed, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        stall_ms = max(1, round(stall_s * 1000))
        # Added to the URL's own `options` (a search_path, say), which connect_args replaces.
        given = parsed.query.get("options", "")
        options = [given] if isinstance(given, str) else list(given)
        options.append(f"-c idle_in_transaction_session_timeout={stall_ms}")
        return create_engine(
            parsed,
            hide_parameters=True,
            pool_pre_ping=True,
            connect_args={"options": " ".join(o for o in options if o)},
        )
    raise StoreError(f"unsupported database {backend!r}: use sqlite or postgresql+psycopg")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # Under WAL, NORMAL loses at most the last commits on power loss, never consistency.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    cursor.close()


def describe(exc: BaseException) -> str:
    """What failed, without the row values some database messages quote."""
    cause = getattr(exc, "orig", None) or exc
    sqlstate = getattr(cause, "sqlstate", None)
    diag = getattr(cause, "diag", None)
    if sqlstate and diag is not None and not sqlstate.startswith("08"):
        where = ".".join(part for part in (diag.table_name, diag.column_name) if part)
        detail = ", ".join(
            part
            for part in (where, diag.constraint_name and f"constraint {diag.constraint_name}")
            if part
        )
        return f"{type(cause).__name__} (SQLSTATE {sqlstate}{', ' + detail if detail else ''})"
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0][:200] if lines else ''}"
