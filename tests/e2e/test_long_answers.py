"""Answers that stay small however big the task: lists cut at REYNOLDS_RESULT_SUBTASKS with
their totals, the rest paged by `GET /tasks/{id}/subtasks` (and the `get_task_subtasks` tool);
bodies over 1 MiB only from callers with a token, up to REYNOLDS_MAX_BODY_BYTES."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.helpers.polling import wait_for

from reynolds.entrypoints.http import create_app
from reynolds.settings import Settings

TOKEN = "a-token-for-long-answers-0123456789"
LIMIT = 50
COUNT = 120
# The task's order: each component's make, then its check.
ORDER = [f"{step}:c{i:03d}" for i in range(COUNT) for step in ("make", "check")]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path / "home",
        secrets_dir=tmp_path / "secrets",
        api_token=TOKEN,
        result_subtasks=LIMIT,
        max_body_bytes=4 * 1024 * 1024,
        rate_limit_per_s=0,
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(settings), base_url=settings.base_url, headers=headers) as c:
        yield c


def call(client: TestClient, tool: str, **arguments: Any) -> dict[str, Any]:
    response = client.post(f"/mcp/tools/{tool}", json={"arguments": arguments})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["isError"] is False, body
    return dict(body["structuredContent"])


def wide_task(count: int = COUNT) -> dict[str, Any]:
    """`count` components through two steps: `count` subtasks in the first parallel group
    and as many in the second, whose `check` fails for every component ending in 7."""
    fail_sevens = "import sys; sys.exit(sys.argv[1].endswith('7'))"
    return {
        "type": "wide",
        "components": [f"c{i:03d}" for i in range(count)],
        "steps": [
            {"name": "make", "action": {"kind": "shell", "argv": ["true"]}},
            {
                "name": "check",
                "after": ["make"],
                "action": {"kind": "shell", "argv": ["python3", "-c", fail_sevens, "{component}"]},
            },
        ],
    }


def run_wide(client: TestClient) -> dict[str, Any]:
    strategy = {"approach": "parallel_optimized", "maxConcurrency": 8}
    return call(client, "orchestrate_task", task=wide_task(), strategy=strategy, wait=True)


def test_a_long_answer_lists_the_first_entries_and_counts_the_rest(client: TestClient) -> None:
    result = run_wide(client)

    total = 2 * COUNT
    sevens = sum(1 for i in range(COUNT) if str(i).endswith("7"))
    assert result["status"] == "failed"
    # Every key of the contract's result is still there, its lists cut at the limit.
    assert [s["id"] for s in result["subtasks"]] == ORDER[:LIMIT]
    assert sum(result["results"]["counts"].values()) == total
    assert result["results"]["counts"]["failed"] == sevens
    assert len(result["results"]["failures"]) == sevens  # fewer than the limit: all of them
    groups = result["plan"]["parallelGroups"]
    assert [len(group) for group in groups] == [LIMIT]
    assert len(result["plan"]["criticalPath"]) == 2
    assert result["truncated"] == {
        "limit": LIMIT,
        "subtasks": {"total": total, "shown": LIMIT, "nextCursor": str(LIMIT)},
        "parallelGroups": {
            "groups": 2,
            "subtasks": total,
            "shownGroups": 1,
            "shownSubtasks": LIMIT,
        },
        "pages": f"/tasks/{result['taskId']}/subtasks",
    }
    # The same cut wherever the result is read.
    task_id = result["taskId"]
    assert client.get(f"/tasks/{task_id}").json()["truncated"] == result["truncated"]
    status = call(client, "get_task_status", taskId=task_id)
    assert len(status["subtasks"]) == LIMIT
    resource = client.get(f"/mcp/resources/tasks/{task_id}")
    assert resource.status_code == 200, resource.text
    assert len(json.dumps(resource.json())) < len(json.dumps(result)) + 4096


def test_paging_gives_every_subtask_once_in_order_with_its_group(client: TestClient) -> None:
    result = run_wide(client)
    task_id = result["taskId"]

    seen: list[dict[str, Any]] = []
    cursor: str | None = result["truncated"]["subtasks"]["nextCursor"]
    seen.extend(result["subtasks"])
    pages = 0
    while cursor is not None:
        page = client.get(f"/tasks/{task_id}/subtasks", params={"cursor": cursor}).json()
        assert page["total"] == 2 * COUNT and page["cursor"] == cursor
        assert len(page["subtasks"]) <= LIMIT
        seen.extend(page["subtasks"])
        cursor = page["nextCursor"]
        pages += 1

    assert [s["id"] for s in seen] == ORDER
    assert pages == 4  # 190 more after the answer's 50, at most 50 a page
    paged = seen[LIMIT:]
    assert {s["group"] for s in paged if s["id"].startswith("make:")} == {0}
    assert {s["group"] for s in paged if s["id"].startswith("check:")} == {1}
    # The critical path is one make and its check.
    assert sum(s["critical"] for s in paged) <= 2


def test_a_page_of_failed_subtasks_and_the_tool_agree(client: TestClient) -> None:
    task_id = run_wide(client)["taskId"]

    page = client.get(f"/tasks/{task_id}/subtasks", params={"status": "failed", "limit": 5})
    tool = call(client, "get_task_subtasks", taskId=task_id, status="failed", limit=5)

    assert page.status_code == 200
    body = page.json()
    assert body == {**tool, "subtasks": body["subtasks"]}
    assert [s["id"] for s in body["subtasks"]] == [f"check:c{i:03d}" for i in (7, 17, 27, 37, 47)]
    assert body["total"] == 12 and body["nextCursor"] == "5"
    assert [s["id"] for s in tool["subtasks"]] == [s["id"] for s in body["subtasks"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"cursor": "-1"}, "cursor"),
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "9999"}, "cursor"),  # past the end
        ({"limit": "0"}, "limit"),
        ({"limit": str(LIMIT + 1)}, "limit"),  # over REYNOLDS_RESULT_SUBTASKS
        ({"status": "sleeping"}, "status"),
    ],
)
def test_a_bad_page_request_names_its_field(
    client: TestClient, query: dict[str, str], field: str
) -> None:
    task_id = call(client, "orchestrate_task", task=wide_task(3), wait=True)["taskId"]

    response = client.get(f"/tasks/{task_id}/subtasks", params=query)

    assert response.status_code == 422, response.text
    assert field in response.text


def test_an_unknown_task_has_no_pages(client: TestClient) -> None:
    assert client.get("/tasks/nope/subtasks").status_code == 404


def test_a_small_task_is_answered_whole_without_truncated(client: TestClient) -> None:
    result = call(client, "orchestrate_task", task=wide_task(3), wait=True)
    assert "truncated" not in result
    assert len(result["subtasks"]) == 6


def test_bodies_over_one_mebibyte_only_from_a_caller_with_a_token(client: TestClient) -> None:
    # 4,000 components of about 500 bytes each: a 2 MB task, under REYNOLDS_MAX_BODY_BYTES.
    task = {
        "type": "big-body",
        "components": [f"{i:04d}-" + "x" * 490 for i in range(4000)],
        "steps": [{"name": "s", "action": {"kind": "shell", "argv": ["true"]}}],
    }
    body = json.dumps({"arguments": {"task": task}}).encode()
    assert 1024 * 1024 < len(body) < 4 * 1024 * 1024
    json_type = {"content-type": "application/json"}

    accepted = client.post(
        "/mcp/tools/analyze_orchestration_potential", content=body, headers=json_type
    )
    too_big = client.post(
        "/mcp/tools/analyze_orchestration_potential",
        content=b" " * (5 * 1024 * 1024),
        headers=json_type,
    )
    # The login form takes no token: 1 MiB, whatever REYNOLDS_MAX_BODY_BYTES says.
    anonymous = {
        "content-type": "application/x-www-form-urlencoded",
        "Authorization": "",
        "Origin": str(client.base_url).rstrip("/"),
    }
    login = client.post("/login", content=b"x" * (2 * 1024 * 1024), headers=anonymous)

    assert accepted.status_code == 200, accepted.text[:300]
    assert accepted.json()["isError"] is False
    assert too_big.status_code == 413 and "4194304" in too_big.text
    assert login.status_code == 413 and "1048576" in login.text


def test_a_task_not_waited_for_is_answered_as_accepted_before_it_starts(
    client: TestClient,
) -> None:
    """The answer to `wait: false` is made once the task is committed and before anything of
    it runs, so it never waits behind what the running task writes."""
    result = call(client, "orchestrate_task", task=wide_task(20), wait=False)

    assert result["status"] == "pending"
    assert {s["status"] for s in result["subtasks"]} == {"ready", "pending"}
    assert all(s["startedAt"] is None for s in result["subtasks"])
    # And then it runs.
    task_id = result["taskId"]

    def ended() -> str | None:
        status = str(client.get(f"/tasks/{task_id}").json()["status"])
        return None if status in ("pending", "running") else status

    assert wait_for(ended, 60, "the task did not end") == "failed"  # c007, c017 fail
