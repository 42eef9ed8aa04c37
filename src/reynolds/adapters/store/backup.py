"""Backups of the store, and putting one back.

SQLite: the online backup API, a consistent copy even while the server writes (WAL readers never
block the writer). PostgreSQL: `pg_dump --format=custom`, put back by `pg_restore` in one
transaction. A backup is checked before it is restored (integrity, our tables, a schema revision
this version knows), and migrated to the latest schema afterwards, so an older backup comes back
in the current shape. The password never reaches an argv or an environment: the tools read
it from a private password file (PGPASSFILE).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from reynolds.adapters.store.connect import display_url, migrate, reason
from reynolds.adapters.store.integrity import is_damage
from reynolds.adapters.store.migrate import known_revisions
from reynolds.adapters.store.schema import metadata
from reynolds.errors import BackupError, StoreError

Kind = Literal["sqlite", "postgresql"]

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"
# Enough to tell a Reynolds store from any other database.
REQUIRED_TABLES = frozenset({"alembic_version", "tasks", "subtasks"})
_BUSY_TIMEOUT_S = 10.0
_CONNECT_TIMEOUT_S = "10"
# What the PostgreSQL tools keep of the caller's environment, besides `LC_*` and `PG*`.
_KEPT = frozenset({"PATH", "HOME", "LANG", "TMPDIR", "TZ"})
# A `pg_restore --list` line for a table: "215; 1259 16393 TABLE public tasks owner".
_TOC_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE \S+ (\S+) ", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Backup:
    """A checked backup file: where, how big, its schema revision, what it holds."""

    path: Path
    kind: Kind
    size_bytes: int
    revision: str
    tables: frozenset[str]
    tasks: int | None = None  # counted for SQLite; a dump is not read that far

    def describe(self) -> str:
        counted = "" if self.tasks is None else f", {self.tasks} task(s)"
        return f"{self.size_bytes:,} bytes, schema revision {self.revision}{counted}"


@dataclass(frozen=True, slots=True)
class LibpqTarget:
    """How pg_dump and pg_restore reach the database: a URI without the password, which they
    read from a private password file instead."""

    dsn: str
    password: str | None

    def env(self, passfile: Path | None = None) -> dict[str, str]:
        """What the tools run with: the basics and the caller's libpq settings (`PG*`), the
        password only as `passfile` (see `password_file`), nothing else of the caller's."""
        env = {
            name: value
            for name, value in os.environ.items()
            if name in _KEPT or name.startswith(("LC_", "PG"))
        }
        env.pop("PGPASSWORD", None)
        env.pop("PGPASSFILE", None)
        if passfile is not None:
            env["PGPASSFILE"] = str(passfile)
        # libpq waits forever for an unreachable host by default.
        env.setdefault("PGCONNECT_TIMEOUT", _CONNECT_TIMEOUT_S)
        return env

    @contextlib.contextmanager
    def password_file(self) -> Iterator[Path | None]:
        """A libpq password file holding the password, readable by its owner alone, removed
        on exit (None without a password): /proc would show PGPASSWORD to every process of
        the user while the tool runs."""
        if self.password is None:
            yield None
            return
        escaped = self.password.replace("\\", "\\\\").replace(":", "\\:")
        with tempfile.TemporaryDirectory(prefix="reynolds-pg-") as folder:
            path = Path(folder) / "pgpass"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(f"*:*:*:*:{escaped}\n")
            yield path

    def hide(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text


def store_kind(url: str) -> Kind:
    """`sqlite` or `postgresql`; BackupError for anything else."""
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise BackupError("REYNOLDS_DATABASE_URL is not a database URL") from None
    if backend == "sqlite":
        return "sqlite"
    if backend == "postgresql":
        return "postgresql"
    raise BackupError(f"backups are made of SQLite and PostgreSQL stores, not {backend}")


def default_path(home: Path, url: str, now: datetime) -> Path:
    """`home/backups/reynolds-YYYYmmdd-HHMMSS.db` (`.dump` for PostgreSQL)."""
    suffix = ".dump" if store_kind(url) == "postgresql" else ".db"
    return home / "backups" / f"reynolds-{now:%Y%m%d-%H%M%S}{suffix}"


def libpq_target(url: str) -> LibpqTarget:
    """The SQLAlchemy URL as libpq takes it (no `+psycopg`), its password set apart."""
    parsed = make_url(url)
    dsn = URL.create(
        "postgresql",
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    ).render_as_string(hide_password=False)
    return LibpqTarget(dsn, parsed.password)


def backup(url: str, destination: Path) -> Backup:
    """Copy the store at `url` to `destination` (never overwritten), check the copy, and
    describe it. The file appears only once complete, readable by its owner alone."""
    kind = store_kind(url)
    destination = destination.expanduser().absolute()
    if destination.exists():
        raise BackupError(f"{destination} already exists: choose another path")
    partial = destination.with_name(f".{destination.name}.partial")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)  # left by an interrupted backup
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        if kind == "sqlite":
            _backup_sqlite(url, partial)
        else:
            _backup_postgres(url, partial)
        made = _read(kind, partial)
        if not made.tables >= REQUIRED_TABLES:
            raise BackupError(f"{display_url(url)} holds no Reynolds store yet: nothing to back up")
        _publish(partial, destination)
    except FileExistsError:
        raise BackupError(f"{destination} already exists: choose another path") from None
    except OSError as exc:
        raise BackupError(f"cannot write {destination}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return dataclasses.replace(made, path=destination)


def _publish(partial: Path, destination: Path) -> None:
    """Give the finished file its name, unless something took that name meanwhile."""
    try:
        # A hard link never replaces an existing file; os.replace would.
        os.link(partial, destination)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links
        if destination.exists():
            raise FileExistsError(destination) from None
        os.replace(partial, destination)


def inspect(url: str, source: Path) -> Backup:
    """Check that `source` is a backup the store at `url` can take back, and describe it."""
    source = source.expanduser().absolute()
    if not source.is_file():
        raise BackupError(f"no backup file at {source}")
    found = _read(store_kind(url), source)
    missing = REQUIRED_TABLES - found.tables
    if missing:
        raise BackupError(f"{source} is not a Reynolds backup: no {', '.join(sorted(missing))}")
    if not found.revision:
        raise BackupError(f"{source} records no schema revision")
    if found.revision not in known_revisions():
        raise BackupError(
            f"{source} has schema revision {found.revision!r}, which this version of Reynolds "
            "does not know (was it made by a newer one?)"
        )
    return found


def restore(url: str, source: Path) -> tuple[Backup, str]:
    """Replace the store at `url` with the backup at `source`, then migrate it. Returns the
    backup and the schema revision the store is at now. The server must not be running."""
    source = source.expanduser().absolute()
    found = inspect(url, source)
    if found.kind == "sqlite":
        _restore_sqlite(url, source)
    else:
        _restore_postgres(url, source, found.tables)
    try:
        revision = migrate(url)
    except StoreError as exc:
        raise BackupError(f"restored {source.name}, but {exc}") from None
    return found, revision


def _read(kind: Kind, source: Path) -> Backup:
    """What the file holds, once it is known to be readable as a backup of this kind."""
    with source.open("rb") as handle:
        head = handle.read(len(SQLITE_MAGIC))
    if kind == "sqlite" and head.startswith(PGDUMP_MAGIC):
        raise BackupError(f"{source} is a PostgreSQL dump, and this store is SQLite")
    if kind == "postgresql" and head.startswith(SQLITE_MAGIC):
        raise BackupError(f"{source} is a SQLite backup, and this store is PostgreSQL")
    return _inspect_sqlite(source, head) if kind == "sqlite" else _inspect_postgres(source)


# -- SQLite --


def _sqlite_file(url: str) -> Path:
    database = make_url(url).database
    if database in (None, "", ":memory:"):
        raise BackupError("a SQLite store in memory has nothing to back up")
    return Path(database).expanduser().absolute()


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S)


def _backup_sqlite(url: str, partial: Path) -> None:
    database = _sqlite_file(url)
    if not database.is_file():
        raise BackupError(f"no database at {database} yet: nothing to back up")
    try:
        source = sqlite3.connect(database, timeout=_BUSY_TIMEOUT_S)
        try:
            target = sqlite3.connect(partial)
            try:
                # One step: a single read transaction, so the copy is one consistent moment.
                source.backup(target)
                # The copy stands alone as one file, without -wal and -shm beside it.
                target.execute("PRAGMA journal_mode=DELETE")
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {database}: {exc}") from None


def _inspect_sqlite(source: Path, head: bytes) -> Backup:
    if not head.startswith(SQLITE_MAGIC):
        raise BackupError(f"{source} is not a SQLite database")
    try:
        connection = _read_only(source)
        try:
            problems = [row[0] for row in connection.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise BackupError(f"{source} is damaged (SQLite integrity check: {problems[0]})")
            tables = frozenset(
                row[0]
                for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            )
            revision, tasks = "", None
            if tables >= REQUIRED_TABLES:
                row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
                revision = row[0] if row else ""
                tasks = connection.execute("SELECT count(*) FROM tasks").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{source} is not a readable SQLite database ({exc})") from None
    return Backup(source, "sqlite", source.stat().st_size, revision, tables, tasks)


def _restore_sqlite(url: str, source: Path) -> None:
    database = _sqlite_file(url)
    if database.exists() and database.samefile(source):
        raise BackupError(f"{source} is the store itself")
    database.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            _copy_sqlite(source, database)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            _replace_damaged(source, database)
    except sqlite3.Error as exc:
        raise BackupError(f"restoring {source} into {database} failed: {exc}") from None
    except OSError as exc:
        raise BackupError(
            f"restoring {source} into {database} failed: {exc.strerror or exc}"
        ) from None


def _copy_sqlite(source: Path, database: Path) -> None:
    backup_file = _read_only(source)
    try:
        store = sqlite3.connect(database, timeout=_BUSY_TIMEOUT_S)
        try:
            # The backup API replaces every page in one transaction: a failure leaves the
            # store as it was.
            backup_file.backup(store)
        finally:
            store.close()
    finally:
        backup_file.close()


def _replace_damaged(source: Path, database: Path) -> None:
    """A store too damaged to be written over (its header, say) is replaced as a file: the
    backup is copied beside it, and takes its place with its WAL gone (a stale WAL would be
    replayed into the new file)."""
    fresh = database.with_name(f".{database.name}.restoring")
    fresh.unlink(missing_ok=True)
    try:
        _copy_sqlite(source, fresh)
        with contextlib.suppress(OSError):
            shutil.copymode(database, fresh)
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        os.replace(fresh, database)
    finally:
        fresh.unlink(missing_ok=True)


# -- PostgreSQL --


def _backup_postgres(url: str, partial: Path) -> None:
    target = libpq_target(url)
    argv = ["--format=custom", f"--file={partial}", "--no-password", f"--dbname={target.dsn}"]
    done = _run("pg_dump", argv, target)
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed: {_tool_error(done, target)}")


def _inspect_postgres(source: Path) -> Backup:
    listing = _run("pg_restore", ["--list", str(source)])
    if listing.returncode != 0:
        raise BackupError(f"{source} is not a dump pg_restore can read ({_tool_error(listing)})")
    tables = frozenset(_TOC_TABLE.findall(listing.stdout))
    revision = ""
    if "alembic_version" in tables:
        data = _run(
            "pg_restore", ["--data-only", "--table=alembic_version", "--file=-", str(source)]
        )
        if data.returncode != 0:
            raise BackupError(f"cannot read {source} ({_tool_error(data)})")
        revision = _copy_values(data.stdout, "alembic_version")
    return Backup(source, "postgresql", source.stat().st_size, revision, tables)


def _restore_postgres(url: str, source: Path, tables: frozenset[str]) -> None:
    target = libpq_target(url)
    argv = [
        "--clean",
        "--if-exists",
        # All or nothing: a failure leaves the database as it was.
        "--single-transaction",
        "--exit-on-error",
        # Objects belong to whoever restores; the role that made the dump may not exist here.
        "--no-owner",
        "--no-privileges",
        "--no-password",
        f"--dbname={target.dsn}",
        str(source),
    ]
    done = _run("pg_restore", argv, target)
    if done.returncode != 0:
        raise BackupError(
            f"pg_restore failed; the database is unchanged: {_tool_error(done, target)}"
        )
    _drop_tables_missing_from(url, tables)


def _drop_tables_missing_from(url: str, tables: frozenset[str]) -> None:
    # Tables that migrations newer than the backup created are not in the dump, so --clean
    # leaves them; the upgrade would then fail to create them, and their rows belong to the
    # data just replaced.
    newer = [table for table in reversed(metadata.sorted_tables) if table.name not in tables]
    if not newer:
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            for table in newer:
                table.drop(connection, checkfirst=True)
    except SQLAlchemyError as exc:
        raise BackupError(f"restored, but removing newer tables failed: {reason(exc)}") from None
    finally:
        engine.dispose()


def _run(
    tool: str, args: list[str], target: LibpqTarget | None = None
) -> subprocess.CompletedProcess[str]:
    executable = shutil.which(tool)
    if executable is None:
        raise BackupError(f"{tool} not found on PATH: install the PostgreSQL client tools")
    try:
        if target is None:
            return _call([executable, *args], None)
        with target.password_file() as passfile:
            return _call([executable, *args], target.env(passfile))
    except OSError as exc:
        raise BackupError(f"cannot run {tool}: {exc.strerror or exc}") from None


def _call(argv: list[str], env: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )


def _tool_error(done: subprocess.CompletedProcess[str], target: LibpqTarget | None = None) -> str:
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    chosen = next((line for line in lines if "error" in line), lines[0] if lines else "")
    message = chosen or f"exit status {done.returncode}"
    return target.hide(message) if target is not None else message


def _copy_values(sql: str, table: str) -> str:
    """The first value of `table`'s COPY block in a plain-text dump ("" when it has no rows)."""
    lines = sql.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("COPY ") and f"{table} " in line and index + 1 < len(lines):
            value = lines[index + 1].split("\t", 1)[0]
            return "" if value == "\\." else value
    return ""
