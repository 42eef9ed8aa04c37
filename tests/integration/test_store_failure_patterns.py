"""`Store.failure_patterns` on every store: the newest failed attempts, with their subtask's
action and output and their task's type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from reynolds.adapters.store.failed_attempts import OUTPUT_TAIL_CHARS
from reynolds.services.ports import Store

Row = dict[str, Any]


@pytest.fixture
def store(make_any_store: Callable[..., Store]) -> Store:
    return make_any_store()


def put_task(store: Store, task_id: str, task_type: str) -> None:
    store.put_task(
        {
            "id": task_id,
            "type": task_type,
            "priority": "medium",
            "status": "failed",
            "spec": {},
            "strategy": {},
            "created_at": 1000.0,
        }
    )


def put_subtask(store: Store, task_id: str, subtask_id: str, action: Row, **fields: Any) -> None:
    store.put_subtask(
        {
            "task_id": task_id,
            "id": subtask_id,
            "seq": 0,
            "depends_on": [],
            "spec": {"action": action, "retries": 2},
            "status": "failed",
            **fields,
        }
    )


def put_attempt(
    store: Store, task_id: str, subtask_id: str, attempt: int, status: str, at: float, **fields: Any
) -> None:
    store.put_attempt(
        {
            "task_id": task_id,
            "subtask_id": subtask_id,
            "attempt": attempt,
            "agent_type": "devops",
            "status": status,
            "error": f"{subtask_id} attempt {attempt} failed",
            "finished_at": at,
            **fields,
        }
    )


def test_the_newest_failed_attempts_come_first_with_their_task_type_and_class(
    store: Store,
) -> None:
    put_task(store, "t1", "build")
    put_subtask(store, "t1", "a", {"kind": "shell", "argv": ["make", "{component}"]}, attempts=3)
    put_attempt(store, "t1", "a", 1, "failed", 10.0, failure_class="timeout")
    put_attempt(store, "t1", "a", 2, "failed", 30.0, failure_class="connection")
    put_attempt(store, "t1", "a", 3, "succeeded", 40.0)
    put_task(store, "t2", "deploy")
    put_subtask(store, "t2", "b", {"kind": "llm", "prompt": "p"}, attempts=1)
    put_attempt(store, "t2", "b", 1, "failed", 20.0, failure_class=None)
    put_attempt(store, "t2", "c", 1, "cancelled", 50.0)
    store.flush_sync()

    rows = store.failure_patterns(limit_rows=10)

    assert [(r["task_id"], r["subtask_id"], r["attempt"]) for r in rows] == [
        ("t1", "a", 2),
        ("t2", "b", 1),
        ("t1", "a", 1),
    ]
    first = rows[0]
    assert (first["pool"], first["task_type"], first["failure_class"], first["error"]) == (
        "devops",
        "build",
        "connection",
        "a attempt 2 failed",
    )
    assert first["action"] == {"kind": "shell", "argv": ["make", "{component}"]}
    assert rows[1]["failure_class"] is None
    assert [r["attempt"] for r in store.failure_patterns(limit_rows=2)] == [2, 1]


def test_the_action_keeps_only_what_its_signature_reads(store: Store) -> None:
    put_task(store, "t", "x")
    actions = {
        "py": {"kind": "python", "callable": "m:f", "kwargs": {"secret": "s"}},
        "web": {"kind": "http", "method": "POST", "url": "http://h/p", "json": {"big": "body"}},
        "llm": {"kind": "llm", "prompt": "a long prompt", "model": "m1"},
        "tool": {"kind": "mcp", "server": "tracker", "tool": "t", "arguments": {"k": "s"}},
    }
    for at, (sid, action) in enumerate(actions.items()):
        put_subtask(store, "t", sid, action, attempts=1)
        put_attempt(store, "t", sid, 1, "failed", float(at))
    store.flush_sync()

    found = {r["subtask_id"]: r["action"] for r in store.failure_patterns()}

    assert found == {
        "py": {"kind": "python", "callable": "m:f"},
        "web": {"kind": "http", "method": "POST", "url": "http://h/p"},
        "llm": {"kind": "llm", "model": "m1"},
        "tool": {"kind": "mcp", "server": "tracker", "tool": "t"},
    }


def test_only_a_latest_attempt_with_an_empty_error_has_the_output_and_only_its_end(
    store: Store,
) -> None:
    long_output = "start\n" + "x" * 5000 + "\nthe end"
    put_task(store, "t", "x")
    for sid, error in (("silent", ""), ("spoke", "it said why")):
        put_subtask(store, "t", sid, {"kind": "shell", "argv": ["a"]}, attempts=2, output="out")
        put_attempt(store, "t", sid, 1, "failed", 1.0, error=error)
        put_attempt(store, "t", sid, 2, "failed", 2.0, error=error)
    put_subtask(
        store, "t", "long", {"kind": "shell", "argv": ["a"]}, attempts=1, output=long_output
    )
    put_attempt(store, "t", "long", 1, "failed", 3.0, error=None)
    store.flush_sync()

    found = {(r["subtask_id"], r["attempt"]): r["output"] for r in store.failure_patterns()}

    assert found == {
        ("long", 1): long_output[-OUTPUT_TAIL_CHARS:],
        ("silent", 2): "out",
        ("spoke", 2): None,
        ("silent", 1): None,
        ("spoke", 1): None,
    }


def test_a_store_with_no_failures_has_no_rows(store: Store) -> None:
    put_task(store, "t", "x")
    put_attempt(store, "t", "a", 1, "succeeded", 1.0)
    store.flush_sync()

    assert store.failure_patterns() == []
