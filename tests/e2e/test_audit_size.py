"""A small request whose placeholders multiply its argv is refused when the result could not
run, and leaves small audit records when it can."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from reynolds.entrypoints.http import create_app
from reynolds.settings import Settings

TOKEN = "audit-size-token-2b8e"
COMPONENTS = 16


def settings_for(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        secrets_dir=tmp_path / "secrets",
        api_token=TOKEN,
        rate_limit_per_s=0,
        personality="off",
    )


def submit(c: TestClient, argv: list[str]) -> httpx.Response:
    components = [f"c{i:02d}" + "x" * 497 for i in range(COMPONENTS)]  # 500 characters each
    task = {
        "type": "x",
        "components": components,
        "steps": [{"name": "s", "action": {"kind": "shell", "argv": argv}}],
    }
    body = json.dumps({"arguments": {"task": task, "wait": True}})
    return c.post(
        "/mcp/tools/orchestrate_task", content=body, headers={"content-type": "application/json"}
    )


def client(settings: Settings) -> TestClient:
    return TestClient(
        create_app(settings),
        base_url=settings.base_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


def test_a_46_kib_request_whose_placeholders_would_make_megabytes_is_refused(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    with client(settings) as c:
        # Each subtask's argv would be 1,750,000 bytes: more than a program may be given.
        r = submit(c, ["echo", "{component}" * 3500])
        assert r.status_code == 422, r.text[:300]
        assert "1,750,000 bytes" in r.json()["error"]
        assert c.get("/tasks").json() == {"tasks": []}


def test_arguments_of_a_hundred_kilobytes_each_keep_the_audit_small(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    elements = 8
    with client(settings) as c:
        # 8 elements of 125,000 bytes each once substituted: within what a program may be given.
        r = submit(c, ["echo", *(["{component}" * 250] * elements)])
        assert r.status_code == 200, r.text[:300]
        task_id = r.json()["structuredContent"]["taskId"]
        answer = c.get(f"/audit?taskId={task_id}")
    assert answer.status_code == 200
    actions = [rec for rec in answer.json()["records"] if rec["kind"] == "action"]
    assert len(actions) == COMPONENTS
    for record in actions:
        # Of each 125,000-byte element, 4 KiB is kept, marked as cut.
        assert all(e.endswith("…[cut from 125000 bytes]") for e in record["argv"][1:])
        assert sum(len(e.encode()) for e in record["argv"]) <= elements * 4096 + len("echo")
    assert len(answer.content) < COMPONENTS * elements * 5 * 1024

    with sqlite3.connect(settings.home / "reynolds.db") as db:
        (stored,) = db.execute("SELECT sum(length(argv)) FROM audit").fetchone()
    assert stored < COMPONENTS * elements * 5 * 1024
