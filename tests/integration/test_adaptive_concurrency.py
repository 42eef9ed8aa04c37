"""Adaptive concurrency and downstream breakers against a real local HTTP server: a server
that answers 429 above three concurrent calls gets about three from a task allowed twelve,
a Retry-After is honoured, and a host that refuses connections is held open, then probed."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helpers.polling import wait_for_async

from reynolds.bootstrap import Container, build
from reynolds.core.models import Status, TaskSpec
from reynolds.services import resources
from reynolds.services.tools import CallContext, call_tool
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio

CAPACITY = 3  # calls the server serves at once; one more is answered 429
WORK_S = 0.1  # how long a served call takes
CALLS = 60
MAX_CONCURRENCY = 12


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Overloadable:
    """A server that serves CAPACITY calls at once and answers 429 to any more; it keeps
    every change of the number of calls in flight, so concurrency can be measured."""

    url: str = ""
    retry_after: str | None = None  # sent with every 429 when set
    busy_first: int = 0  # answer the first N calls 429 whatever the concurrency
    in_flight: int = 0
    calls: int = 0
    rejected: int = 0
    changes: list[tuple[float, int]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mean_concurrency(self, start_share: float) -> float:
        """Time-weighted calls in flight from `start_share` of the way through to the end."""
        first, last = self.changes[0][0], self.changes[-1][0]
        begin = first + (last - first) * start_share
        total, level, at = 0.0, 0, first
        for when, now_level in self.changes:
            if when > begin:
                total += level * (when - max(at, begin))
            level, at = now_level, when
        return total / (last - begin)


@contextmanager
def overloadable(**options: Any) -> Iterator[Overloadable]:
    state = Overloadable(**options)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.calls += 1
                state.in_flight += 1
                state.arrivals.append(time.monotonic())
                state.changes.append((time.monotonic(), state.in_flight))
                over = state.in_flight > CAPACITY or state.calls <= state.busy_first
                if over:
                    state.rejected += 1
            try:
                if over:
                    headers = {"Retry-After": state.retry_after} if state.retry_after else {}
                    self._answer(429, b"too many requests", headers)
                else:
                    time.sleep(WORK_S)
                    self._answer(200, b"done", {})
            finally:
                with state.lock:
                    state.in_flight -= 1
                    state.changes.append((time.monotonic(), state.in_flight))

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/work"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@asynccontextmanager
async def server_with_slots(tmp_path: Path, **settings: Any) -> AsyncIterator[Container]:
    """A server with one pool, `api`, of MAX_CONCURRENCY replicas."""
    pool = {"name": "api", "replicas": {"min": 1, "max": 16, "initial": MAX_CONCURRENCY}}
    config = tmp_path / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "agents.yaml").write_text(yaml.safe_dump({"pools": {"api": pool}}))
    app = await build(
        Settings(
            home=tmp_path / "home",
            config_dir=config,
            retry_base_s=0.05,
            retry_cap_s=0.4,
            **settings,
        )
    )
    try:
        yield app
    finally:
        await app.aclose()


def calls(url: str, n: int, retries: int = 10) -> dict[str, Any]:
    action = {"kind": "http", "url": url}
    return {
        "type": "api-calls",
        "subtasks": [{"id": f"c{i}", "retries": retries, "action": action} for i in range(n)],
    }


async def run_calls(app: Container, url: str, n: int = CALLS) -> dict[str, Any]:
    spec = TaskSpec.model_validate(calls(url, n))
    strategy = app.engine.default_strategy(spec, (await app.engine.prepare(spec, None)).graph)
    strategy = strategy.model_copy(update={"max_concurrency": MAX_CONCURRENCY})
    run = await app.engine.submit(spec, strategy)
    assert await app.engine.wait(run, 120)
    return await app.engine.result(run.id)


async def test_an_overloaded_server_gets_about_its_capacity_and_few_429s(tmp_path: Path) -> None:
    with overloadable() as fixed_server:
        async with server_with_slots(tmp_path / "fixed", adaptive_concurrency=False) as app:
            fixed = await run_calls(app, fixed_server.url)
    with overloadable() as adaptive_server:
        async with server_with_slots(tmp_path / "adaptive") as app:
            adaptive = await run_calls(app, adaptive_server.url)
            agents = await call_tool(app.engine, "get_agent_status", {}, CallContext(None))
            metrics = app.engine.metrics.render().decode()

    assert adaptive["status"] == "succeeded", adaptive["subtasks"]
    assert adaptive_server.calls - adaptive_server.rejected == CALLS
    mean = adaptive_server.mean_concurrency(0.5)
    assert 0.5 * CAPACITY <= mean <= 1.5 * CAPACITY, mean
    # Both counted, by the server and by the tasks' attempts: the fixed limit keeps sending
    # twelve at a time.
    for result, server in ((fixed, fixed_server), (adaptive, adaptive_server)):
        assert sum(s["attempts"] for s in result["subtasks"]) == server.calls
    assert fixed_server.rejected > 0
    assert adaptive_server.rejected <= 0.25 * fixed_server.rejected, (
        adaptive_server.rejected,
        fixed_server.rejected,
    )
    (downstream,) = agents["downstreams"]
    assert downstream["downstream"].startswith("http:http://127.0.0.1:")
    limiter = downstream["limiter"]
    assert limiter["overloads"] == adaptive_server.rejected
    assert limiter["limit"] < MAX_CONCURRENCY
    assert 'reynolds_loop_prevention_concurrency_limit{downstream="http:' in metrics


async def test_retry_after_holds_the_next_call_until_it_has_passed(tmp_path: Path) -> None:
    with overloadable(retry_after="1", busy_first=1) as server:
        async with server_with_slots(tmp_path) as app:
            result = await run_calls(app, server.url, n=1)
    assert result["status"] == "succeeded"
    assert server.calls == 2
    # The retry's own backoff is at most 0.4 s: only the Retry-After explains the wait.
    assert server.arrivals[1] - server.arrivals[0] >= 1.0


def refusing_port() -> tuple[socket.socket, int]:
    """A port bound but not listening: connections to it are refused."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


async def test_a_host_that_refuses_connections_is_held_open_then_probed(tmp_path: Path) -> None:
    sock, port = refusing_port()
    url = f"http://127.0.0.1:{port}/work"
    async with server_with_slots(tmp_path, breaker_failures=2, breaker_cooldown_s=1.0) as app:
        first = await app.engine.submit(TaskSpec.model_validate(calls(url, 2, retries=0)))
        assert await app.engine.wait(first, 30)
        assert (await app.engine.result(first.id))["status"] == "failed"

        waiting = await app.engine.submit(TaskSpec.model_validate(calls(url, 3, retries=0)))
        agents = await call_tool(app.engine, "get_agent_status", {}, CallContext(None))
        (held,) = agents["downstreams"]
        assert held["breaker"]["state"] == "open"
        assert agents["pools"][0]["circuit"] == "closed"  # the host is to blame, not the pool
        assert agents["summary"]["healthyAgents"] == MAX_CONCURRENCY
        assert {s.status for s in waiting.subs.values()} == {Status.READY}
        metrics = app.engine.metrics.render().decode()
        assert (
            f'reynolds_loop_prevention_circuit_breaker_open{{agent_type="",'
            f'downstream="http:http://127.0.0.1:{port}"}} 1.0'
        ) in metrics
        loop_view = json.loads((await resources.read(app.engine, "loop-prevention")).text)
        assert loop_view["downstreams"][0]["breaker"]["state"] == "open"
        assert loop_view["breakers"]["transitions"][0]["to"] == "open"

        # The host comes back; after the cool-down, one probe goes and closes the breaker.
        sock.close()
        server = ThreadingHTTPServer(("127.0.0.1", port), _Ok)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            assert await app.engine.wait(waiting, 30)
            result = await app.engine.result(waiting.id)
        finally:
            server.shutdown()
            server.server_close()
        assert result["status"] == "succeeded", result["subtasks"]
        await wait_for_async(lambda: _closed(app), 5.0, "the host's breaker to close")


def _closed(app: Container) -> bool:
    views = app.engine.dispatch.guards.downstream_views(app.engine.clock())
    return all(v["breaker"]["state"] == "closed" for v in views)  # type: ignore[index]


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return None
