"""Folders only the server's user may enter: REYNOLDS_HOME (the store, its logs, the pid file)
and the secrets folder. Actions running as another user (REYNOLDS_ACTION_USER) must not read
them, and neither should anyone else on the machine.

Only what is recognisably Reynolds' own is tightened: a REYNOLDS_HOME or REYNOLDS_SECRETS_DIR
pointed at a folder holding other things (a shared /tmp, /var) keeps its mode.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("reynolds")

PRIVATE_MODE = 0o700
# What a Reynolds home holds: an existing folder with none of these is someone else's.
_HOME_ENTRIES = frozenset(
    {"reynolds.db", "scheduler.lock", "server_id", "store.json", "reynolds.pid", "logs", "backups"}
)


def make_private_dir(path: Path) -> None:
    """Create REYNOLDS_HOME (missing parents as usual) for its owner alone, or tighten an
    existing Reynolds home (or an empty folder) to that."""
    try:
        path.mkdir(mode=PRIVATE_MODE, parents=True)
        return
    except FileExistsError:
        pass
    if is_reynolds_home(path):
        _tighten(path)


def is_reynolds_home(path: Path) -> bool:
    """Whether `path` is missing, empty or a Reynolds home: one to make private. Asked before
    anything is put there, since what a start adds would make any folder look like one."""
    try:
        entries = {entry.name for entry in path.iterdir()}
    except FileNotFoundError:
        return True
    except OSError:
        return False  # not a folder, or not ours to list: whatever uses it will say so
    return not entries or bool(entries & _HOME_ENTRIES)


def make_private(path: Path) -> None:
    """Tighten `path` (see is_reynolds_home) to its owner alone."""
    _tighten(path)


def tighten(path: Path) -> None:
    """Take group's and others' access away from the secrets folder: a folder of plain files
    this user owns (anything else, such as a folder with folders in it, is left alone)."""
    try:
        if all(entry.is_file() and not entry.is_symlink() for entry in path.iterdir()):
            _tighten(path)
    except OSError:
        return


def _tighten(path: Path) -> None:
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    # Someone else's, already private, or sticky (shared on purpose, as /tmp is).
    if info.st_uid != os.geteuid() or not mode & 0o077 or mode & stat.S_ISVTX:
        return
    try:
        path.chmod(mode & PRIVATE_MODE)
    except OSError as exc:
        log.warning("could not make %s private (mode %o): %s", path, mode, exc)
