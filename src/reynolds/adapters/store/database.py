"""The database behind the store, seen from outside it: how to show its URL, whether it answers."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from reynolds.errors import StoreError, StoreUnavailable


def display_url(url: str) -> str:
    """The URL as it may be printed or logged: its password replaced by `***`."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a database URL)"


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
