"""`reynolds backup` and `reynolds restore`: a copy of the store, made online and put back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from reynolds.entrypoints.cli.state import CliState, state
from reynolds.errors import AlreadyRunning, StoreError


def backup(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Argument(
            help="Where to write it; default REYNOLDS_HOME/backups/reynolds-YYYYmmdd-HHMMSS.db "
            "(.dump for PostgreSQL).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Back up the store, also while the server runs (SQLite's backup API, or pg_dump)."""
    st = state(ctx)
    settings = st.settings
    # Imported here so that client commands never pay for the store stack.
    from reynolds.adapters.store import backup as backups

    url = settings.effective_database_url
    with _one_line_errors(st):
        destination = path or backups.default_path(settings.home, url, datetime.now())
        made = backups.backup(url, destination)
    st.out.print(f"Backup written to {escape(str(made.path))} ({made.describe()})")


def restore(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The backup file, as `reynolds backup` wrote it.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Replace the store with a backup, then migrate it to the current schema. Stop the server
    first: this refuses while one holds REYNOLDS_HOME."""
    st = state(ctx)
    settings = st.settings
    from reynolds.adapters.store import backup as backups
    from reynolds.adapters.store.connect import display_url
    from reynolds.adapters.store.integrity import StoreMarker, adopt
    from reynolds.adapters.store.lock import HomeLock

    url = settings.effective_database_url
    # Held throughout, so no server starts on the store while it is being replaced.
    with _one_line_errors(st), HomeLock(settings.lock_file):
        found = backups.inspect(url, path)
        question = (
            f"Replace every task in {display_url(url)} with {found.path} ({found.describe()})?"
        )
        if not yes and not _confirm(question):
            st.err.print("Restore cancelled; the store is unchanged")
            raise typer.Exit(1)
        _found, revision = backups.restore(url, path)
        # The home now has the restored store, which the next start checks for.
        adopt(url, StoreMarker(settings.home))
    st.out.print(
        f"Restored {escape(str(found.path))} into {escape(display_url(url))} "
        f"(schema revision {revision})"
    )


def _confirm(question: str) -> bool:
    try:
        return typer.confirm(question, default=False)
    except typer.Abort:  # end of input: nobody said yes
        typer.echo()
        return False


@contextmanager
def _one_line_errors(st: CliState) -> Iterator[None]:
    """A refusal or failure ends the command as one line and exit code 1, no traceback."""
    try:
        yield
    except AlreadyRunning as exc:
        holder = f"pid {exc.details['pid']}" if exc.details.get("pid") else "another process"
        st.err.print(
            f"[red]error:[/] Reynolds ({holder}) is running on {escape(str(st.settings.home))}: "
            "stop it first (reynolds stop), then restore"
        )
        raise typer.Exit(1) from None
    except StoreError as exc:
        st.err.print(f"[red]error:[/] {escape(exc.message)}")
        raise typer.Exit(1) from None
