"""A server that cannot start says why in one line and exits non-zero: a home it cannot write,
a pool file it cannot read, a port taken, a database URL that is none, a database that does not
answer, a full disk. Never a traceback."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from cli_support import Server, make_server, output
from failure_support import (
    UNPRIVILEGED,
    error_line,
    make_read_only,
    mount_tmpfs,
    run_cli,
    serve_briefly,
    small_tmpfs,
    the_one_line,
    unmount,
    unprivileged_can_run_python,
)
from tests.helpers.postgres import unreachable


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


@pytest.mark.parametrize("damage", ["a folder", "not UTF-8"])
def test_a_pool_file_that_cannot_be_read_stops_the_server_in_one_line(
    idle_server: Server, tmp_path: Path, damage: str
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    pools = config / "agents.yaml"
    if damage == "a folder":
        pools.mkdir()
    else:
        pools.write_bytes(b"pools:\n  code: \xff\xfe\n")

    code, out = serve_briefly(idle_server, env={"REYNOLDS_CONFIG_DIR": str(config)})

    assert code == 1, out
    assert str(pools) in the_one_line(out)


def test_a_port_in_use_is_refused_in_one_line_before_the_store_is_touched(
    idle_server: Server,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", idle_server.port))
        taken.listen()

        code, out = serve_briefly(idle_server)

    assert code == 1, out
    line = the_one_line(out)
    assert f"cannot listen on 127.0.0.1:{idle_server.port}" in line
    assert "in use" in line
    assert not (idle_server.home / "reynolds.db").exists()


def test_a_database_url_that_is_none_stops_the_server_in_one_line(idle_server: Server) -> None:
    code, out = serve_briefly(idle_server, env={"REYNOLDS_DATABASE_URL": "not a database"})

    assert code == 1, out
    assert "REYNOLDS_DATABASE_URL is not a database URL" in the_one_line(out)


@pytest.mark.postgres
def test_a_postgres_that_does_not_answer_stops_the_server_in_one_line(
    idle_server: Server, require_service: Callable[[str, str], NoReturn]
) -> None:
    problem = unreachable()
    if problem:
        require_service("PostgreSQL", problem)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"postgresql+psycopg://reynolds:s3cret-pw@127.0.0.1:{port}/reynolds"

    code, out = serve_briefly(idle_server, env={"REYNOLDS_DATABASE_URL": url})

    assert code == 1, out
    line = the_one_line(out)
    assert f"postgresql+psycopg://reynolds:***@127.0.0.1:{port}/reynolds" in line
    assert "not reachable" in line
    assert "s3cret-pw" not in out


def test_a_full_disk_at_start_stops_the_server_in_one_line(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "full", "256k") as mount:
        server = Server(home=mount / "home", port=make_server(tmp_path).port, workdir=tmp_path)
        filler = mount / "filler"
        with (
            filler.open("wb", buffering=0) as handle,
            pytest.raises(OSError, match="No space left"),
        ):
            while True:
                handle.write(b"\0" * 4096)

        code, out = serve_briefly(server)

    assert code == 1, out
    line = the_one_line(out)
    assert str(server.home) in line
    assert "No space left on device" in line
