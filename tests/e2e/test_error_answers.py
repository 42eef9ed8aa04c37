"""Every error answer is JSON `{error}`: a store that fails under any route, an exception nobody
expected, a stream whose store fails midway. None is plain text, none closes the connection."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import Server, output
from failure_support import database, seed
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Route
from tests.helpers.damage import damage_open_store

from reynolds.entrypoints.http import create_app
from reynolds.services.tools import TOOLS
from reynolds.settings import Settings

STREAM_BOUND_S = 20.0
ECHO = {"kind": "shell", "argv": ["echo", "hi"]}


def tool_arguments(task_id: str) -> dict[str, dict[str, Any]]:
    """Arguments each tool accepts, so that the call goes as far as the store."""
    return {
        "orchestrate_task": {"task": {"type": "x", "steps": [{"name": "s", "action": ECHO}]}},
        "get_task_status": {"taskId": task_id},
        "cancel_task": {"taskId": task_id},
        "list_tasks": {},
        "analyze_orchestration_potential": {"task": {"type": "x", "components": ["a", "b"]}},
        "get_agent_status": {"agentType": "all"},
        "scale_agents": {"agentType": "code", "replicas": 4},
        "autoscale_agents": {"dryRun": True},
    }


def requests_for_every_route(task_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, path, JSON body) for each route and method of the app, HEAD for each GET."""
    app = create_app(Settings(home=Path("/nonexistent")))
    arguments = tool_arguments(task_id)
    out: list[tuple[str, str, dict[str, Any] | None]] = []
    # Routers included in the app are nodes of a tree: walk it to every route.
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute | Route):
            continue
        methods = set(route.methods or ()) | ({"HEAD"} if "GET" in (route.methods or ()) else set())
        for method in sorted(methods):
            body: dict[str, Any] | None = {} if method in ("POST", "DELETE") else None
            if "{tool_name}" in route.path:
                for tool in TOOLS:
                    path = route.path.replace("{tool_name}", tool)
                    out.append((method, path, {"arguments": arguments.get(tool, {})}))
                continue
            if "{name:path}" in route.path:
                for name in ("agent-pools", "metrics", "loop-prevention", f"tasks/{task_id}"):
                    out.append((method, route.path.replace("{name:path}", name), body))
                continue
            out.append((method, route.path.replace("{task_id}", task_id), body))
    return out


def assert_json_error_or_success(method: str, path: str, response: httpx.Response) -> None:
    # The dashboard is a page for browsers, and so is its login form's answer to a wrong token.
    if response.status_code < 400 or (method, path) in (("GET", "/"), ("POST", "/login")):
        return
    kind = response.headers.get("content-type", "")
    where = f"{method} {path} → {response.status_code} {kind}: {response.text[:300]}"
    assert kind.startswith("application/json"), where
    if method != "HEAD":
        assert "error" in response.json(), where


def read_stream(client: httpx.Client, path: str) -> tuple[httpx.Response, list[str]]:
    """The answer to a GET of a stream, and its events' names once it ends (within a bound)."""
    deadline = time.monotonic() + STREAM_BOUND_S
    with client.stream("GET", path, timeout=STREAM_BOUND_S) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()
            return response, []
        names = []
        for line in response.iter_lines():
            if line.startswith("event: "):
                names.append(line.removeprefix("event: "))
            assert time.monotonic() < deadline, f"{path} did not end: {names}"
        return response, names


def exchange(port: int, *paths: str) -> list[tuple[int, str, bytes]]:
    """GET each path in turn on ONE connection: (status, content type, body) of each. Fails
    if the server closes the connection before the last answer."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stream = sock.makefile("rb")
        for path in paths:
            request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
            sock.sendall(request.encode())
            status_line = stream.readline()
            assert status_line, f"the connection was closed before answering {path}"
            headers: dict[str, str] = {}
            while (line := stream.readline().decode().strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = stream.read(int(headers.get("content-length", "0")))
            answers.append((int(status_line.split()[1]), headers.get("content-type", ""), body))
            assert headers.get("connection") != "close", (path, headers)
    return answers


def test_every_route_answers_json_or_ends_its_stream_when_the_store_fails(
    idle_server: Server,
) -> None:
    task_id = seed(idle_server, count=1)[0]
    started = idle_server.run("start")
    assert started.returncode == 0, output(started)
    damage_open_store(database(idle_server))
    seen = []
    with httpx.Client(base_url=idle_server.base_url, timeout=30) as client:
        for method, path, body in requests_for_every_route(task_id):
            if path.endswith("/events") and method == "GET":
                response, names = read_stream(client, path)
                if response.status_code == 200:
                    assert names[-1] == "error", (path, names)
            else:
                response = client.request(method, path, json=body)
            assert_json_error_or_success(method, path, response)
            seen.append((method, path, response.status_code))
    # The store was needed, and failed, somewhere other than /health.
    failed = [f"{m} {p}" for m, p, status in seen if status == 503 and p != "/health"]
    assert "GET /tasks" in failed and f"GET /tasks/{task_id}" in failed, seen


def test_a_damaged_task_answers_json_on_a_connection_that_stays_open(idle_server: Server) -> None:
    task_id = seed(idle_server, count=1)[0]
    started = idle_server.run("start")
    assert started.returncode == 0, output(started)
    damage_open_store(database(idle_server), "subtasks")

    (status, kind, body), (after, _, _) = exchange(
        idle_server.port, f"/tasks/{task_id}", "/mcp/capabilities"
    )

    assert (status, kind) == (503, "application/json")
    assert "is damaged" in json.loads(body)["error"]
    assert after == 200


def test_an_unexpected_exception_answers_json_500_that_tells_nothing_of_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path / "home", secrets_dir=tmp_path / "secrets")
    app = create_app(settings)

    async def broken() -> None:
        raise RuntimeError("password=hunter2 at /srv/secret/path")

    app.router.add_api_route("/broken", broken, methods=["GET"])
    # The client raises whatever the app lets escape to the server: the server would log it
    # and drop the connection.
    with TestClient(app, base_url=settings.base_url) as client:
        answer = client.get("/broken")

    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": "internal error"}
    assert "hunter2" in caplog.text, "the server's log keeps what happened"
    assert re.search(r"GET /broken", caplog.text)
