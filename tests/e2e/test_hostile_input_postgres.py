"""Hostile input to a server whose store is PostgreSQL, which refuses text SQLite takes (NUL):
every request still ends as a 4xx naming the problem, never a 5xx, and the store keeps
committing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import pytest
from fastapi.testclient import TestClient
from tests.helpers.postgres import dedicated_database, unreachable

from reynolds.entrypoints.http import create_app
from reynolds.settings import Settings

pytestmark = pytest.mark.postgres

TOKEN = "hostile-postgres-token-7c2a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NUL_REASON = "must not contain NUL (\\u0000)"
TRUE = {"kind": "shell", "argv": ["true"]}
TRUE_TASK = {"type": "check", "steps": [{"name": "s", "action": TRUE}]}


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, require_service: Callable[[str, str], NoReturn]
) -> Iterator[TestClient]:
    """A server on a PostgreSQL database of its own; afterwards it must still be healthy and
    still store and answer a task."""
    problem = unreachable()
    if problem:
        require_service("PostgreSQL", problem)
    root = tmp_path_factory.mktemp("hostile-postgres")
    with dedicated_database("reynolds_hostile") as url:
        settings = Settings(
            home=root / "home",
            secrets_dir=root / "secrets",
            database_url=url,
            api_token=TOKEN,
            rate_limit_per_s=0,
            personality="off",
        )
        app = create_app(settings)
        with TestClient(
            app, base_url=settings.base_url, headers=AUTH, raise_server_exceptions=False
        ) as c:
            yield c
            health = c.get("/health")
            assert health.status_code == 200 and health.json()["status"] == "healthy"
            done = orchestrate(c, TRUE_TASK)
            assert done.status_code == 200, done.text
            task_id = done.json()["structuredContent"]["taskId"]
            assert c.get(f"/tasks/{task_id}").json()["status"] == "succeeded"


def orchestrate(client: TestClient, task: dict[str, Any]) -> Any:
    return client.post(
        "/mcp/tools/orchestrate_task", json={"arguments": {"task": task, "wait": True}}
    )


def test_nul_in_a_task_type_is_refused_with_422_on_postgresql(client: TestClient) -> None:
    task = {**TRUE_TASK, "type": "t\x00x"}
    r = orchestrate(client, task)
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [{"field": "arguments.task.type", "reason": NUL_REASON}]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/tasks/a%00b"),
        ("POST", "/tasks/a%00b/cancel"),
        ("GET", "/tasks/a%00b/events"),
        ("GET", "/mcp/resources/tasks/a%00b"),
        ("GET", "/audit?taskId=a%00b"),
    ],
)
def test_nul_in_a_path_or_query_gets_a_4xx_on_postgresql(
    client: TestClient, method: str, path: str
) -> None:
    r = client.request(method, path)
    assert 400 <= r.status_code < 500, r.text
    assert isinstance(r.json().get("error"), str)


@pytest.mark.parametrize("tool", ["get_task_status", "cancel_task"])
def test_nul_in_a_task_id_argument_is_refused_with_422_on_postgresql(
    client: TestClient, tool: str
) -> None:
    r = client.post(f"/mcp/tools/{tool}", json={"arguments": {"taskId": "a\x00b"}})
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [{"field": "arguments.taskId", "reason": NUL_REASON}]


def test_a_refused_call_is_audited_without_making_postgresql_give_up_writes(
    client: TestClient,
) -> None:
    r = client.post(
        "/mcp/tools/cancel_task",
        content=b'{"arguments": {"taskId": "\\ud800\\u0000"}}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    audit = client.get("/audit")
    assert audit.status_code == 200, audit.text
    records = [x for x in audit.json()["records"] if x["taskId"] == "\\ud800\\u0000"]
    assert [(x["tool"], x["decision"]) for x in records] == [("cancel_task", "rejected")]
