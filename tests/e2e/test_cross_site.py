"""Cross-site requests and DNS rebinding, on every route the app serves.

A web page the user visits can make the browser send requests to the server: cross-site POSTs
with `text/plain`, form or multipart bodies need no preflight, and a rebound DNS name reaches
127.0.0.1 with `Host: evil.example`. None of them may reach a route: a Host that is not the
server's gets 421, a foreign Origin 403, a state-changing request that is not JSON 415 —
with and without a token, before the token is even looked at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import Server
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Route

from reynolds.entrypoints.http import create_app
from reynolds.entrypoints.http.cross_site import FORM_ROUTES
from reynolds.settings import Settings

TOKEN = "cross-site-0b7f1c4e-token"
OWN = "http://127.0.0.1:8080"
PARAMS = re.compile(r"\{([a-z_]+)(?::[a-z]+)?\}")
PARAM_VALUES = {
    "tool_name": "list_tasks",
    "task_id": "no-such-task",
    "name": "agent-pools",
    "experiment_id": "no-such-experiment",
    "asset": "app.js",
}
# What a browser sends cross-site without a preflight, and what it may send with one.
NOT_JSON = [
    ("text/plain", '{"arguments": {}}'),
    ("application/x-www-form-urlencoded", "arguments=%7B%7D"),
    (
        "multipart/form-data; boundary=x",
        '--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n{}\r\n--x--\r\n',
    ),
    ("application/json-patch+json", '{"arguments": {}}'),
    (None, ""),
]


def every_route(app: FastAPI) -> list[tuple[str, str]]:
    """(method, concrete path) for every route and method the app answers."""
    out = []
    # Routers included in the app are nodes of a tree: walk it to every route.
    for route in iter_route_contexts(app.routes):
        assert isinstance(route.original_route, Route), route
        path = PARAMS.sub(lambda m: PARAM_VALUES[m[1]], route.path)
        out += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return out


def make_settings(tmp_path: Path, token: bool, **options: Any) -> Settings:
    return Settings(
        home=tmp_path / "home",
        secrets_dir=tmp_path / "secrets",
        api_token=TOKEN if token else None,
        personality="off",
        # Whatever REYNOLDS_PORT says (CI sets one): the test speaks to port 8080.
        port=8080,
        **options,
    )


@pytest.fixture(params=[False, True], ids=["no-token", "token"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    headers = {"Authorization": f"Bearer {TOKEN}"} if request.param else {}
    app = create_app(make_settings(tmp_path, request.param))
    with TestClient(app, base_url=OWN, headers=headers) as c:
        yield c


def routes_of(client: TestClient) -> list[tuple[str, str]]:
    app = client.app
    assert isinstance(app, FastAPI)
    return every_route(app)


def test_the_route_list_covers_mcp_and_every_state_changing_route(client: TestClient) -> None:
    routes = routes_of(client)
    assert ("POST", "/mcp") in routes
    assert ("POST", "/mcp/tools/list_tasks") in routes
    assert ("POST", "/tasks/no-such-task/cancel") in routes
    assert ("GET", "/tasks") in routes


def test_a_foreign_host_gets_421_on_every_route_but_health(client: TestClient) -> None:
    for method, path in routes_of(client):
        if path == "/health":
            continue
        r = client.request(method, path, headers={"Host": "evil.example"}, json={})
        assert r.status_code == 421, (method, path, r.status_code)
        assert "evil.example" in r.json()["error"], (method, path)


def test_a_foreign_origin_gets_403_on_every_route(client: TestClient) -> None:
    for origin in ("http://evil.example", "null", "http://127.0.0.1:8081"):
        for method, path in routes_of(client):
            if path == "/health":
                continue
            r = client.request(method, path, headers={"Origin": origin}, json={})
            assert r.status_code == 403, (origin, method, path, r.status_code)
            assert "origin" in r.json()["error"].lower()


def test_a_state_changing_request_that_is_not_json_gets_415(client: TestClient) -> None:
    # The dashboard's login form is the one exception (tests/e2e/test_dashboard_auth.py): it
    # is form-encoded, and refused without the server's own Origin whatever its body.
    posts = [
        path
        for method, path in routes_of(client)
        if method == "POST" and (method, path) not in FORM_ROUTES
    ]
    assert posts
    for content_type, body in NOT_JSON:
        headers = {"Content-Type": content_type} if content_type else {}
        for path in posts:
            r = client.post(path, headers=headers, content=body)
            assert r.status_code == 415, (content_type, path, r.status_code)
            assert "application/json" in r.json()["error"]


def test_a_cross_site_text_plain_orchestrate_call_runs_nothing(
    client: TestClient, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    body = (
        '{"arguments": {"wait": true, "task": {"type": "x", "components": ["x"], "steps": [{"name":'
        f' "s", "action": {{"kind": "shell", "argv": ["touch", "{marker}"]}}}}]}}}}}}'
    )
    for headers in (
        {"Content-Type": "text/plain", "Origin": "http://evil.example"},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/json", "Host": "evil.example"},
        {"Content-Type": "application/json", "Origin": "http://evil.example"},
    ):
        r = client.post("/mcp/tools/orchestrate_task", headers=headers, content=body)
        assert r.status_code in (403, 415, 421), (headers, r.status_code)
    # Refused before any handler ran: nothing was accepted, so nothing can run later either.
    assert client.get("/tasks").json() == {"tasks": []}
    assert not marker.exists()


def test_the_login_form_is_refused_without_the_servers_own_origin(client: TestClient) -> None:
    assert {("POST", "/login")} == FORM_ROUTES
    for content_type, body in [*NOT_JSON, ("application/json", "{}")]:
        headers = {"Content-Type": content_type} if content_type else {}
        for origin in (None, "http://evil.example", "null"):
            sent = {**headers, **({"Origin": origin} if origin else {})}
            r = client.post("/login", headers=sent, content=body)
            assert r.status_code == 403, (content_type, origin, r.status_code)
        own = {**headers, "Origin": OWN}
        r = client.post("/login", headers=own, content=body, follow_redirects=False)
        if content_type == "application/x-www-form-urlencoded":
            assert r.status_code in (303, 403), r.status_code  # to the route: CSRF checked there
        else:
            assert r.status_code == 415, (content_type, r.status_code)


def test_the_servers_own_hosts_and_origins_and_json_are_accepted(client: TestClient) -> None:
    for host in ("127.0.0.1:8080", "localhost:8080", "[::1]:8080"):
        assert client.get("/status", headers={"Host": host}).status_code == 200, host
    for origin in ("http://127.0.0.1:8080", "http://localhost:8080"):
        assert client.get("/status", headers={"Origin": origin}).status_code == 200, origin
        r = client.post("/mcp/tools/list_tasks", headers={"Origin": origin}, json={})
        assert r.status_code == 200, origin
    r = client.post(
        "/mcp/tools/list_tasks",
        headers={"Content-Type": "application/json; charset=utf-8"},
        content='{"arguments": {}}',
    )
    assert r.status_code == 200


def test_health_answers_get_and_head_whatever_the_host(client: TestClient) -> None:
    for host in ("127.0.0.1:8080", "evil.example", "10.0.0.7:8080"):
        got = client.get("/health", headers={"Host": host})
        assert got.status_code == 200, host
        head = client.head("/health", headers={"Host": host})
        assert head.status_code == 200, host
        assert head.content == b""


def test_allowed_hosts_and_origins_from_the_settings_are_accepted(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        token=False,
        allowed_hosts=" reynolds , api.example:9000,",
        allowed_origins="https://console.example",
    )
    with TestClient(create_app(settings), base_url=OWN) as c:
        # A name without a port is that name on any port; with one, only there.
        for host in ("reynolds", "reynolds:8080", "REYNOLDS:8080", "api.example:9000"):
            assert c.get("/status", headers={"Host": host}).status_code == 200, host
        for host in ("api.example:9001", "api.example", "reynolds.evil.example"):
            assert c.get("/status", headers={"Host": host}).status_code == 421, host
        # The server's own origins stay accepted beside the listed ones.
        for origin in ("https://console.example", OWN):
            assert c.get("/status", headers={"Origin": origin}).status_code == 200, origin
        assert c.get("/status", headers={"Origin": "https://evil.example"}).status_code == 403


def test_a_started_server_refuses_the_cross_site_calls(live_server: Server, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    url = f"{live_server.base_url}/mcp/tools/orchestrate_task"
    body = (
        '{"arguments": {"wait": true, "task": {"type": "x", "components": ["x"], "steps": [{"name":'
        f' "s", "action": {{"kind": "shell", "argv": ["touch", "{marker}"]}}}}]}}}}}}'
    )
    with httpx.Client(timeout=30) as http:
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            r = http.post(
                url,
                content=body,
                headers={"Content-Type": content_type, "Origin": "http://evil.example"},
            )
            assert r.status_code in (403, 415), (content_type, r.status_code)
        r = http.get(f"{live_server.base_url}/tasks", headers={"Host": "evil.example"})
        assert r.status_code == 421
        r = http.post(
            url, content=body, headers={"Content-Type": "application/json", "Host": "evil.example"}
        )
        assert r.status_code == 421
    assert not marker.exists()
