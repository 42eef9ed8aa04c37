"""The dashboard's login, in process: the form, its checks, and where its cookie is accepted.

With a token set, `GET /` shows only a login form; `POST /login` (form-encoded: the one
exception to "state-changing routes accept only JSON") needs the server's own Origin, the CSRF
token of the form it was served with, and the right token. The session cookie it sets then
stands for the token on the dashboard's GET requests only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reynolds.entrypoints.http import create_app
from reynolds.entrypoints.http.sessions import CSRF_COOKIE, SESSION_COOKIE
from reynolds.settings import Settings

TOKEN = "dashboard-auth-7c2a-token"
OWN = "http://127.0.0.1:8080"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
TASK = {
    "type": "secret-project-x",
    "description": "launch codes",
    "steps": [{"name": "s", "action": {"kind": "shell", "argv": ["true"]}}],
}


def make_settings(tmp_path: Path, token: str | None) -> Settings:
    return Settings(
        home=tmp_path / "home",
        secrets_dir=tmp_path / "secrets",
        api_token=token,
        personality="off",
        port=8080,
        database_url=None,
        redis_url=None,
        backend="local",
    )


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tmp_path, TOKEN)), base_url=OWN) as c:
        yield c


def login_form(client: TestClient) -> str:
    """GET / without a session: the form's CSRF token (its cookie is now in the client)."""
    page = client.get("/")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found[1]


def log_in(client: TestClient, token: str = TOKEN, **overrides: str) -> tuple[int, str]:
    """POST /login as the browser would: (status, the session cookie set or '')."""
    fields = {"token": token, "csrf": login_form(client)}
    fields.update(overrides)
    r = client.post("/login", data=fields, headers={"Origin": OWN}, follow_redirects=False)
    return r.status_code, r.cookies.get(SESSION_COOKIE) or ""


def test_the_login_page_holds_no_task_or_pool_data_and_runs_no_script(client: TestClient) -> None:
    submitted = client.post(
        "/mcp/tools/orchestrate_task",
        json={"arguments": {"task": TASK, "wait": True}},
        headers=BEARER,
    )
    task_id = submitted.json()["structuredContent"]["taskId"]
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for secret in (task_id, "secret-project-x", "launch codes", "devops", "/dashboard/app.js"):
        assert secret not in page.text
    assert "<script" not in page.text
    assert "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    csrf = page.headers["set-cookie"]
    assert csrf.startswith(f"{CSRF_COOKIE}=") and "HttpOnly" in csrf and "SameSite=Strict" in csrf


def test_logging_in_sets_an_http_only_strict_cookie_without_the_token(client: TestClient) -> None:
    csrf = login_form(client)
    r = client.post(
        "/login",
        data={"token": TOKEN, "csrf": csrf},
        headers={"Origin": OWN},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/"
    cookies = r.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith(f"{SESSION_COOKIE}="))
    assert "HttpOnly" in session and "SameSite=Strict" in session and "Path=/" in session
    assert "Secure" not in session  # plain http here; see the https test
    assert TOKEN not in session
    page = client.get("/")
    assert 'data-auth="session"' in page.text
    assert "/dashboard/app.js" in page.text
    for path in (
        "/tasks",
        "/status",
        "/dashboard/app.js",
        "/mcp/resources/metrics",
        "/experiments",
    ):
        assert client.get(path).status_code == 200, path


def test_over_https_the_cookie_is_secure(tmp_path: Path) -> None:
    with TestClient(
        create_app(make_settings(tmp_path, TOKEN)), base_url="https://127.0.0.1:8080"
    ) as c:
        csrf = login_form(c)
        r = c.post(
            "/login",
            data={"token": TOKEN, "csrf": csrf},
            headers={"Origin": "https://127.0.0.1:8080"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        assert all("; Secure" in cookie for cookie in r.headers.get_list("set-cookie"))


def test_the_cookie_is_refused_on_state_changing_routes_mcp_and_the_docs(
    client: TestClient,
) -> None:
    assert log_in(client)[0] == 303
    assert client.get("/tasks").status_code == 200  # the session works …
    for method, path in [
        ("POST", "/mcp/tools/list_tasks"),
        ("POST", "/mcp/tools/orchestrate_task"),
        ("POST", "/tasks/no-such-task/cancel"),
        ("POST", "/experiments/no-such-experiment/cancel"),
        ("POST", "/mcp"),
        ("GET", "/mcp"),
        ("DELETE", "/mcp"),
        ("GET", "/mcp/tools"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/audit"),
        ("GET", "/mcp/resources/tasks/x"),
        ("HEAD", "/tasks"),
    ]:
        body = {"arguments": {"task": TASK}} if method == "POST" else None
        r = client.request(method, path, json=body, headers={"Origin": OWN})
        assert r.status_code == 401, (method, path, r.status_code)
    assert client.get("/tasks").json() == {"tasks": []}  # … and nothing was submitted


def test_a_login_with_a_foreign_or_missing_origin_is_refused(client: TestClient) -> None:
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {}):
        fields = {"token": TOKEN, "csrf": login_form(client)}
        r = client.post("/login", data=fields, headers=headers, follow_redirects=False)
        assert r.status_code == 403, (headers, r.status_code)
        assert "origin" in r.json()["error"].lower()
        assert SESSION_COOKIE not in r.cookies


def test_a_login_without_the_forms_csrf_token_is_refused(client: TestClient) -> None:
    assert log_in(client, csrf="")[0] == 403
    assert log_in(client, csrf="not-the-one-served")[0] == 403
    # The right field but no cookie (a form posted from another page of the browser's).
    csrf = login_form(client)
    client.cookies.clear()
    r = client.post(
        "/login",
        data={"token": TOKEN, "csrf": csrf},
        headers={"Origin": OWN},
        follow_redirects=False,
    )
    assert r.status_code == 403
    assert "csrf" in r.json()["error"].lower()
    assert client.get("/tasks").status_code == 401


def test_a_login_with_a_wrong_token_shows_the_form_again(client: TestClient) -> None:
    for wrong in ("", "nope", TOKEN + "x", TOKEN[:-1]):
        status, session = log_in(client, token=wrong)
        assert (status, session) == (401, ""), wrong
    csrf = login_form(client)
    r = client.post("/login", data={"token": "nope", "csrf": csrf}, headers={"Origin": OWN})
    assert "not valid" in r.text and 'name="csrf"' in r.text
    assert client.get("/tasks").status_code == 401


def test_a_login_that_is_json_is_refused(client: TestClient) -> None:
    r = client.post("/login", json={"token": TOKEN}, headers={"Origin": OWN})
    assert r.status_code == 415
    assert "x-www-form-urlencoded" in r.json()["error"]


def test_logging_out_deletes_the_cookie(client: TestClient) -> None:
    assert log_in(client)[0] == 303
    r = client.post("/logout", json={}, headers={"Origin": OWN})
    assert r.status_code == 200
    assert r.json() == {"loggedOut": True}
    assert f"{SESSION_COOKIE}=;" in r.headers["set-cookie"]
    assert "Max-Age=0" in r.headers["set-cookie"]
    assert client.get("/tasks").status_code == 401
    assert 'name="csrf"' in client.get("/").text


def test_without_a_token_the_dashboard_opens_directly(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, None)), base_url=OWN) as c:
        page = c.get("/")
        assert page.status_code == 200
        assert 'data-auth="none"' in page.text
        assert "script-src" not in page.headers["content-security-policy"]
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset, kind in [
            ("app.js", "text/javascript"),
            ("draw.js", "text/javascript"),
            ("app.css", "text/css"),
        ]:
            r = c.get(f"/dashboard/{asset}")
            assert r.status_code == 200 and r.headers["content-type"].startswith(kind), asset
        missing = c.get("/dashboard/login.html")
        assert missing.status_code == 404 and "error" in missing.json()


def test_the_page_and_its_assets_fetch_nothing_from_elsewhere(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, None)), base_url=OWN) as c:
        for path in ("/", "/dashboard/app.js", "/dashboard/draw.js", "/dashboard/app.css"):
            text = c.get(path).text
            # The one absolute URL allowed is the SVG namespace, which is a name, not a fetch.
            urls = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
            assert not urls, (path, urls)
