"""REYNOLDS_HOME, the state folder: made, and shown to take a write, before anything is kept in
it, so that a read-only or full one is refused in one line rather than deep in a start-up."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from reynolds.errors import HomeNotWritable


def not_writable(home: Path, exc: OSError) -> HomeNotWritable:
    """The one-line refusal for a write into `home` that failed with `exc`."""
    return HomeNotWritable(
        f"cannot write REYNOLDS_HOME {home}: {exc.strerror or exc}", home=str(home)
    )


@contextlib.contextmanager
def writing(home: Path) -> Iterator[None]:
    """Turn an OSError of the writes inside into HomeNotWritable naming `home`."""
    try:
        yield
    except OSError as exc:
        raise not_writable(home, exc) from None


def prepare_home(home: Path, *folders: Path) -> None:
    """Create `home` and `folders` and write a few bytes there (an empty file still fits on a
    full disk); HomeNotWritable saying why when any of it fails."""
    probe = home / f".write-check-{os.getpid()}"
    with writing(home):
        for folder in (home, *folders):
            # For its owner alone from the start (private_dirs tightens an older home).
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"reynolds\n")
            finally:
                os.close(fd)
        finally:
            with contextlib.suppress(FileNotFoundError):
                probe.unlink()
