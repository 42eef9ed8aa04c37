"""A server that cannot start says why in one line and exits non-zero: a home it cannot write.
Never a traceback."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_support import Server, make_server, output
from failure_support import (
    UNPRIVILEGED,
    error_line,
    make_read_only,
    mount_tmpfs,
    run_cli,
    serve_briefly,
    the_one_line,
    unmount,
    unprivileged_can_run_python,
)


@dataclass(frozen=True)
class ReadOnlyHome:
    """A server whose home cannot be written, and how to run the CLI so that it cannot."""

    server: Server
    prefix: tuple[str, ...]
    reason: str


@pytest.fixture
def read_only_home(tmp_path: Path) -> Iterator[ReadOnlyHome]:
    """A home on a read-only mount; where mounting is not allowed, a 0555 folder and the CLI
    run as `nobody` (root writes through permissions, so they alone would not stop it)."""
    port = make_server(tmp_path).port
    mount_point = tmp_path / "ro"
    if mount_tmpfs(mount_point, "4m"):
        try:
            home = mount_point / "home"
            (home / "logs").mkdir(parents=True)
            if make_read_only(mount_point):
                yield ReadOnlyHome(Server(home, port, tmp_path), (), "Read-only file system")
                return
        finally:
            unmount(mount_point)
    if not unprivileged_can_run_python():
        pytest.skip("neither a read-only mount nor running this interpreter as nobody works here")
    # Outside tmp_path, whose parents only root may enter.
    shared = Path(tempfile.mkdtemp(prefix="reynolds-ro-"))
    home = shared / "home"
    try:
        shared.chmod(0o755)
        (home / "logs").mkdir(parents=True)
        (shared / "work").mkdir(mode=0o777)
        for folder in (home / "logs", home):
            folder.chmod(0o555)
        yield ReadOnlyHome(Server(home, port, shared / "work"), UNPRIVILEGED, "Permission denied")
    finally:
        for folder in (home, home / "logs"):
            if folder.exists():
                folder.chmod(0o755)
        shutil.rmtree(shared, ignore_errors=True)


@pytest.mark.xfail(strict=True, reason="a read-only REYNOLDS_HOME ends in a traceback")
def test_every_command_that_writes_a_read_only_home_says_so_in_one_line(
    read_only_home: ReadOnlyHome, tmp_path: Path
) -> None:
    server, prefix = read_only_home.server, read_only_home.prefix
    expected = f"cannot write REYNOLDS_HOME {server.home}: {read_only_home.reason}"

    code, out = serve_briefly(server, prefix=prefix)
    assert code == 1, out
    assert expected in the_one_line(out)

    for args in (("start",), ("restore", str(tmp_path / "any.db"), "--yes")):
        done = run_cli(server, *args, prefix=prefix)
        assert done.returncode == 1, output(done)
        assert expected in error_line(output(done)), args
    # A backup names the file it could not write, in the home.
    done = run_cli(server, "backup", prefix=prefix)
    assert done.returncode == 1, output(done)
    line = error_line(output(done))
    assert f"cannot write {server.home / 'backups'}" in line
    assert read_only_home.reason in line
