"""A real Reynolds server for the end-to-end tests, started and stopped through the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import Server, make_server, output


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the session, started with `reynolds start` and stopped at the end."""
    server = make_server(tmp_path_factory.mktemp("live"))
    started = server.run("start")
    assert started.returncode == 0, output(started)
    yield server
    server.run("stop")


@pytest.fixture
def idle_server(tmp_path: Path) -> Iterator[Server]:
    """A server's home and port with nothing started; whatever the test starts is stopped."""
    server = make_server(tmp_path)
    yield server
    server.run("stop")
