"""A small request whose placeholders multiply its argv leaves small audit records."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from fastapi.testclient import TestClient

from reynolds.entrypoints.http import create_app
from reynolds.settings import Settings

TOKEN = "audit-size-token-2b8e"
COMPONENTS = 16


def test_a_46_kib_request_with_repeated_placeholders_keeps_the_audit_small(
    tmp_path: Path,
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        secrets_dir=tmp_path / "secrets",
        api_token=TOKEN,
        rate_limit_per_s=0,
        personality="off",
    )
    components = [f"c{i:02d}" + "x" * 497 for i in range(COMPONENTS)]  # 500 characters each
    step = {"name": "s", "action": {"kind": "shell", "argv": ["echo", "{component}" * 3500]}}
    task = {"type": "x", "components": components, "steps": [step]}
    body = json.dumps({"arguments": {"task": task, "wait": True}})
    assert 45_000 < len(body) < 48_000
    with TestClient(
        create_app(settings),
        base_url=settings.base_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        r = c.post(
            "/mcp/tools/orchestrate_task",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 200, r.text[:300]
        task_id = r.json()["structuredContent"]["taskId"]
        answer = c.get(f"/audit?taskId={task_id}")
    assert answer.status_code == 200
    actions = [rec for rec in answer.json()["records"] if rec["kind"] == "action"]
    assert len(actions) == COMPONENTS
    for record in actions:
        # Each substituted argv was 1,750,000 bytes; 4 KiB of it is kept, marked as cut.
        assert record["argv"][1].endswith("…[cut from 1750000 bytes]")
        assert sum(len(e.encode()) for e in record["argv"]) <= 4096 + len("echo")
    assert len(answer.content) < COMPONENTS * 8 * 1024

    with sqlite3.connect(settings.home / "reynolds.db") as db:
        (stored,) = db.execute("SELECT sum(length(argv)) FROM audit").fetchone()
    assert stored < COMPONENTS * 8 * 1024
