"""The http action runner against a real local server, and against a recording transport
wherever the host is not loopback: nothing here ever sends to a non-loopback address."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from reynolds.adapters.actions.http import HttpRunner, is_permitted
from reynolds.core.models import HttpAction
from reynolds.services.ports import ActionContext

pytestmark = pytest.mark.anyio

SLOW_RESPONSE_BOUND_S = 10.0


@dataclass
class LocalServer:
    url: str
    paths: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    state = LocalServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.paths.append(self.path)
            if self.path == "/hello":
                self._answer(200, b'{"hello": "world"}', "application/json")
            elif self.path == "/big":
                self._answer(200, "é".encode() * 50_000, "text/plain; charset=utf-8")
            elif self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "http://example.com/")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/slow":
                state.release.wait(SLOW_RESPONSE_BOUND_S)
                self._answer(200, b"late", "text/plain")
            else:
                self._answer(404, b"no such page", "text/plain")

        def do_POST(self) -> None:
            state.paths.append(self.path)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            echoed = {"json": json.loads(body), "header": self.headers.get("X-Reynolds")}
            self._answer(201, json.dumps(echoed).encode(), "application/json")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
async def runner() -> AsyncIterator[HttpRunner]:
    runner = HttpRunner()
    yield runner
    await runner.aclose()


class Recorder:
    """A transport that answers 200 itself and records every request it is given."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, text="recorded")


def get(url: str) -> HttpAction:
    return HttpAction(kind="http", url=url)


def context(timeout_s: float = 10.0, cap_bytes: int = 64 * 1024) -> ActionContext:
    return ActionContext("task", "subtask", 1, timeout_s, cap_bytes, ".")


async def test_a_get_to_a_local_server_succeeds_with_the_body(
    runner: HttpRunner, server: LocalServer
) -> None:
    result = await runner.run(get(f"{server.url}/hello"), context())
    assert result.ok
    assert result.exit_code == 200
    assert json.loads(result.output) == {"hello": "world"}
    assert result.output_bytes == len(result.output)
    assert not result.truncated


async def test_a_json_body_and_headers_are_sent(runner: HttpRunner, server: LocalServer) -> None:
    post = HttpAction.model_validate(
        {
            "kind": "http",
            "method": "POST",
            "url": f"{server.url}/echo",
            "json": {"n": 1},
            "headers": {"X-Reynolds": "yes"},
        }
    )
    result = await runner.run(post, context())
    assert result.ok
    assert result.exit_code == 201
    assert json.loads(result.output) == {"json": {"n": 1}, "header": "yes"}


async def test_a_status_outside_2xx_fails_with_that_status(
    runner: HttpRunner, server: LocalServer
) -> None:
    result = await runner.run(get(f"{server.url}/missing"), context())
    assert not result.ok
    assert result.exit_code == 404
    assert result.output == "no such page"
    assert result.error == "HTTP 404 Not Found"


async def test_a_redirect_is_reported_and_not_followed(
    runner: HttpRunner, server: LocalServer
) -> None:
    result = await runner.run(get(f"{server.url}/redirect"), context())
    assert not result.ok
    assert result.exit_code == 302
    assert server.paths == ["/redirect"]


@pytest.mark.parametrize(
    "url",
    [
        "http://10.255.255.1/",
        "https://example.com/path",
        "http://127.0.0.1@example.com/",
        "http://2130706433/",
        "http://localhost.example.com/",
        "http://[::ffff:a00:1]/",
    ],
)
async def test_a_host_that_is_not_loopback_is_denied_before_any_request(url: str) -> None:
    recorder = Recorder()
    runner = HttpRunner(transport=httpx.MockTransport(recorder))
    try:
        result = await runner.run(get(url), context())
    finally:
        await runner.aclose()
    assert not result.ok
    assert result.reason == "denied"
    assert "not permitted" in result.error
    assert recorder.requests == []


async def test_a_host_listed_for_the_pool_is_permitted() -> None:
    recorder = Recorder()
    runner = HttpRunner(transport=httpx.MockTransport(recorder))
    try:
        result = await runner.run(
            get("https://API.Example.com/v1"), context(), allowed_hosts={"api.example.com"}
        )
        unlisted = await runner.run(
            get("https://other.example.com/v1"), context(), allowed_hosts={"api.example.com"}
        )
    finally:
        await runner.aclose()
    assert result.ok
    assert result.output == "recorded"
    assert unlisted.reason == "denied"
    assert [str(request.url) for request in recorder.requests] == ["https://api.example.com/v1"]


@pytest.mark.parametrize(
    "url", ["http://localhost:9/", "http://127.3.4.5/", "http://[::1]:8080/", "http://LOCALHOST/"]
)
async def test_loopback_hosts_are_permitted_by_default(url: str) -> None:
    recorder = Recorder()
    runner = HttpRunner(transport=httpx.MockTransport(recorder))
    try:
        result = await runner.run(get(url), context())
    finally:
        await runner.aclose()
    assert result.ok
    assert len(recorder.requests) == 1


def test_permission_is_decided_on_the_host_alone() -> None:
    assert is_permitted("127.0.0.1")
    assert is_permitted("::1")
    assert is_permitted("db.internal", ["DB.internal"])
    assert is_permitted("::2", ["[::2]"])
    assert is_permitted("db.internal", "db.internal")
    assert not is_permitted("d", "db.internal")
    assert not is_permitted("10.0.0.1")
    assert not is_permitted("0.0.0.0")
    assert not is_permitted("localhost.")


async def test_a_slow_answer_times_out(runner: HttpRunner, server: LocalServer) -> None:
    result = await runner.run(get(f"{server.url}/slow"), context(timeout_s=0.3))
    assert not result.ok
    assert result.reason == "timeout"


async def test_the_body_beyond_the_cap_is_cut_and_marked(
    runner: HttpRunner, server: LocalServer
) -> None:
    result = await runner.run(get(f"{server.url}/big"), context(cap_bytes=1001))
    assert result.ok
    assert result.truncated
    assert result.output_bytes == 100_000
    kept, _, note = result.output.partition("\n[truncated")
    # The cap falls inside a two-byte character, which is dropped rather than mangled.
    assert kept == "é" * 500
    assert "first 1001 of 100000 bytes" in note


async def test_a_refused_connection_fails_with_an_error(runner: HttpRunner) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await runner.run(get(f"http://127.0.0.1:{port}/"), context())
    assert not result.ok
    assert result.reason == "error"
    assert "ConnectError" in result.error
