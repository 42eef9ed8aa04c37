"""Failed attempts are classified from what really failed — a missing file, a missing command,
a refused connection, a timeout, an HTTP answer — and a class no retry cures is not retried."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reynolds.bootstrap import Container, build
from reynolds.core.models import TaskSpec
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio
PY = sys.executable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Container]:
    container = await build(Settings(home=tmp_path / "home", retry_base_s=0.01, retry_cap_s=0.02))
    try:
        yield container
    finally:
        await container.aclose()


def answering(status: int, path: str) -> Iterator[str]:
    """A loopback URL whose every path answers `status`, for the fixture's life."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{path}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def refusing() -> Iterator[str]:
    """A loopback URL whose every path answers 401."""
    yield from answering(401, "secret")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def one(app: Container, action: dict[str, Any], **options: Any) -> dict[str, Any]:
    task = {"type": "classes", "subtasks": [{"id": "s", "action": action, **options}]}
    run = await app.engine.submit(TaskSpec.model_validate(task))
    assert await app.engine.wait(run, 60)
    result = await app.engine.result(run.id)
    sub: dict[str, Any] = result["subtasks"][0]
    return sub


def shell(*argv: str) -> dict[str, Any]:
    return {"kind": "shell", "argv": list(argv)}


async def test_a_missing_file_is_not_found_and_not_retried(app: Container) -> None:
    sub = await one(app, shell("ls", "/no/such/file/here"), retries=3)

    assert (sub["status"], sub["failureClass"], sub["attempts"]) == ("failed", "not_found", 1)


async def test_a_missing_command_is_not_found_and_not_retried(app: Container) -> None:
    sub = await one(app, shell("no-such-command-anywhere"), retries=3)

    assert (sub["failureClass"], sub["attempts"]) == ("not_found", 1)


async def test_bad_usage_is_validation_and_not_retried(app: Container) -> None:
    sub = await one(
        app, shell(PY, "-c", "import sys; sys.exit('invalid value for --mode')"), retries=3
    )

    assert (sub["failureClass"], sub["attempts"]) == ("validation", 1)


async def test_an_http_401_is_authentication_and_not_retried(app: Container, refusing: str) -> None:
    sub = await one(app, {"kind": "http", "method": "GET", "url": refusing}, retries=3)

    assert (sub["exitCode"], sub["failureClass"], sub["attempts"]) == (401, "authentication", 1)


async def test_a_refused_connection_is_connection_and_retried(app: Container) -> None:
    connect = f"import socket; socket.create_connection(('127.0.0.1', {closed_port()}))"
    sub = await one(app, shell(PY, "-c", connect), retries=1)

    assert (sub["status"], sub["failureClass"], sub["attempts"]) == ("failed", "connection", 2)


async def test_a_timeout_is_timeout_and_retried(app: Container) -> None:
    sub = await one(app, shell("sleep", "5"), retries=1, timeoutSeconds=0.2)

    assert (sub["failureClass"], sub["attempts"]) == ("timeout", 2)


async def test_a_file_that_may_not_be_run_is_permission_and_not_retried(
    app: Container, tmp_path: Path
) -> None:
    script = tmp_path / "deploy.sh"
    script.write_text("#!/bin/sh\necho deployed\n")
    script.chmod(0o644)  # no x bit: exec fails with EACCES, root or not

    sub = await one(app, shell(str(script)), retries=3)

    assert (sub["status"], sub["failureClass"], sub["attempts"]) == ("failed", "permission", 1)


@pytest.fixture
def unavailable() -> Iterator[str]:
    """A loopback URL whose every path answers 503 Service Unavailable."""
    yield from answering(503, "busy")


async def test_an_http_503_is_resource_and_retried(app: Container, unavailable: str) -> None:
    sub = await one(app, {"kind": "http", "method": "GET", "url": unavailable}, retries=1)

    assert (sub["exitCode"], sub["failureClass"], sub["attempts"]) == (503, "resource", 2)


async def test_an_error_no_rule_recognises_is_unknown_and_retried(app: Container) -> None:
    odd = "import sys; sys.exit('the flux capacitor overheated')"
    sub = await one(app, shell(PY, "-c", odd), retries=1)

    assert (sub["status"], sub["failureClass"], sub["attempts"]) == ("failed", "unknown", 2)
