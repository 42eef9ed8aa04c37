"""Directories only the server's user may enter: REYNOLDS_HOME (the store, its logs, the pid
file) and the secrets folder. Actions running as another user (REYNOLDS_ACTION_USER) must not
read them, and neither should anyone else on the machine."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("reynolds")

PRIVATE_MODE = 0o700


def make_private_dir(path: Path) -> None:
    """Create `path` (missing parents as usual) for its owner alone, or tighten it to that."""
    path.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
    tighten(path)


def tighten(path: Path) -> None:
    """Take group's and others' access away from a directory this user owns; a directory of
    someone else's (a mounted secrets folder) is left as it is."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.geteuid() or not mode & 0o077:
        return
    try:
        path.chmod(mode & PRIVATE_MODE)
    except OSError as exc:
        log.warning("could not make %s private (mode %o): %s", path, mode, exc)
