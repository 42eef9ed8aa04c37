"""Bearer tokens and rate limits at the HTTP edge, in-process."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import Server, output
from fastapi.testclient import TestClient

from reynolds.entrypoints.http import create_app, security
from reynolds.settings import Settings

ALICE = "alice-0f3b9c2e-token"
BOB = "bob-7d1a4e8f-token"
ALICE_AUTH = {"Authorization": f"Bearer {ALICE}"}
BOB_AUTH = {"Authorization": f"Bearer {BOB}"}


def settings_with_tokens(tmp_path: Path, **options: Any) -> Settings:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "api_tokens.txt").write_text(
        f"# name:token, one a line\nalice:{ALICE}\nbob: {BOB}\n", encoding="utf-8"
    )
    return Settings(home=tmp_path / "home", secrets_dir=secrets, personality="off", **options)


def local_client(settings: Settings) -> TestClient:
    """A client that reaches the app under the server's own name, as a local client does."""
    return TestClient(create_app(settings), base_url=settings.base_url)


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[TestClient]:
    with local_client(settings_with_tokens(tmp_path)) as client:
        yield client


def shell_task(*argv: str) -> dict[str, Any]:
    return {"type": "x", "steps": [{"name": "s", "action": {"kind": "shell", "argv": list(argv)}}]}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/status"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/mcp/tools"),
        ("GET", "/mcp/events"),
        ("POST", "/mcp"),
        ("GET", "/mcp"),
        ("POST", "/mcp/tools/list_tasks"),
        ("GET", "/tasks"),
        ("GET", "/audit"),
        # `GET /` answers the dashboard's login form instead (tests/e2e/test_dashboard_auth.py).
        ("GET", "/dashboard/app.js"),
        ("GET", "/no-such-route"),
    ],
)
def test_every_endpoint_but_health_answers_401_without_a_token(
    guarded: TestClient, method: str, path: str
) -> None:
    r = guarded.request(method, path, json={} if method == "POST" else None)
    assert r.status_code == 401
    assert r.json() == {"error": "missing or invalid bearer token"}
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_health_needs_no_token(guarded: TestClient) -> None:
    assert guarded.get("/health").status_code == 200


def test_a_wrong_token_or_scheme_is_refused_as_invalid(guarded: TestClient) -> None:
    for header in (f"Bearer {ALICE}x", f"Basic {ALICE}", ALICE, "Bearer "):
        r = guarded.get("/status", headers={"Authorization": header})
        assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_each_named_token_is_accepted(guarded: TestClient) -> None:
    assert guarded.get("/status", headers=ALICE_AUTH).status_code == 200
    assert guarded.get("/status", headers=BOB_AUTH).status_code == 200
    assert guarded.get("/status", headers={"Authorization": f"bearer {BOB}"}).status_code == 200


def test_tokens_are_compared_in_constant_time_against_every_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    tokens = {ALICE: "alice", BOB: "bob"}
    assert security.token_name(tokens, f"Bearer {ALICE}") == "alice"
    # No early exit on a match: the time taken does not depend on which token matched.
    assert len(calls) == 2


def test_the_token_name_is_recorded_in_the_audit_and_the_token_nowhere(
    guarded: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    r = guarded.post(
        "/mcp/tools/orchestrate_task",
        json={"arguments": {"task": shell_task("echo", "hi"), "wait": True}},
        headers=BOB_AUTH,
    )
    assert r.status_code == 200
    task_id = r.json()["structuredContent"]["taskId"]
    guarded.get("/status", headers={"Authorization": f"Bearer {ALICE}-wrong"})
    records = guarded.get(f"/audit?taskId={task_id}", headers=ALICE_AUTH).json()["records"]
    assert {(rec["kind"], rec["tokenName"]) for rec in records} == {
        ("tool", "bob"),
        ("action", "bob"),
    }
    task = guarded.get(f"/tasks/{task_id}", headers=ALICE_AUTH)
    everything = r.text + task.text + guarded.get("/audit", headers=ALICE_AUTH).text
    for token in (ALICE, BOB):
        assert token not in everything
        assert token not in caplog.text


def test_a_burst_over_the_limit_gets_429_with_retry_after(tmp_path: Path) -> None:
    settings = settings_with_tokens(tmp_path, rate_limit_per_s=0.01, rate_limit_burst=3)
    with local_client(settings) as client:
        answers = [client.get("/mcp/capabilities", headers=ALICE_AUTH) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        limited = answers[-1]
        assert "rate limit" in limited.json()["error"]
        assert int(limited.headers["retry-after"]) >= 1
        # Bob's token has a bucket of its own; /health is never limited.
        assert client.get("/mcp/capabilities", headers=BOB_AUTH).status_code == 200
        assert all(client.get("/health").status_code == 200 for _ in range(10))


def test_without_tokens_the_limit_applies_per_client_address(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home",
        secrets_dir=tmp_path / "none",
        rate_limit_per_s=0.01,
        rate_limit_burst=2,
    )
    app = create_app(settings)
    with TestClient(app, base_url=settings.base_url) as here:
        # Not entered: the lifespan (and the engine) is `here`'s.
        there = TestClient(app, base_url=settings.base_url, client=("192.0.2.7", 5000))
        assert [here.get("/status").status_code for _ in range(3)] == [200, 200, 429]
        assert there.get("/status").status_code == 200


def test_guessing_tokens_is_rate_limited_by_address(tmp_path: Path) -> None:
    settings = settings_with_tokens(tmp_path, rate_limit_per_s=0.01, rate_limit_burst=2)
    with local_client(settings) as client:
        guesses = [
            client.get("/status", headers={"Authorization": f"Bearer guess-{i}"}).status_code
            for i in range(3)
        ]
        assert guesses == [401, 401, 429]
        # The real token's bucket is untouched by the guesses.
        assert client.get("/status", headers=ALICE_AUTH).status_code == 200


def test_a_limit_of_zero_turns_rate_limiting_off(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", secrets_dir=tmp_path / "none", rate_limit_per_s=0)
    with local_client(settings) as client:
        assert all(client.get("/mcp/capabilities").status_code == 200 for _ in range(150))


def test_the_default_limit_allows_a_burst_of_a_hundred(tmp_path: Path) -> None:
    with local_client(settings_with_tokens(tmp_path)) as client:
        codes = [
            client.get("/mcp/capabilities", headers=ALICE_AUTH).status_code for _ in range(100)
        ]
        assert set(codes) == {200}


def test_refused_requests_are_timed_in_the_metrics(guarded: TestClient) -> None:
    guarded.get("/status")
    metrics = guarded.get("/metrics", headers=ALICE_AUTH).text
    refused = (
        'reynolds_http_request_duration_seconds_count{method="GET",route="unmatched",status="401"}'
    )
    assert f"{refused} 1.0" in metrics


def test_a_real_server_keeps_its_token_out_of_logs_database_and_answers(
    idle_server: Server,
) -> None:
    token = "real-server-token-" + "4c2d9e71b0a8"
    env = {"REYNOLDS_API_TOKEN": token}
    started = idle_server.run("start", env=env)
    assert started.returncode == 0, output(started)
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=idle_server.base_url, timeout=30) as http:
        answers = [
            http.get("/status"),
            http.get("/status", headers={"Authorization": f"Bearer {token}-wrong"}),
            http.post(
                "/mcp/tools/orchestrate_task",
                headers=auth,
                json={"arguments": {"task": shell_task("echo", "{taskId}"), "wait": True}},
            ),
            http.get("/audit", headers=auth),
        ]
    assert [a.status_code for a in answers] == [401, 401, 200, 200]
    cli = idle_server.run("audit", "--json", env=env)
    assert cli.returncode == 0, output(cli)
    assert json.loads(cli.stdout)["records"][0]["tokenName"] == "default"
    assert idle_server.run("stop", env=env).returncode == 0

    secret = token.encode()
    assert all(secret not in a.content for a in answers)
    assert secret not in (cli.stdout + cli.stderr).encode()
    stored = [p for p in idle_server.home.rglob("*") if p.is_file()]
    assert any(p.name == "reynolds.db" for p in stored)
    assert [p for p in stored if secret in p.read_bytes()] == []
