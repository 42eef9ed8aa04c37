"""Credentials for agents on real processes: a pool's declared secrets reach its actions as
environment variables, nobody else's, never the server's own; the audit names them only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from reynolds.bootstrap import build
from reynolds.core.models import TaskSpec
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio

GH_VALUE = "ghp_Example0123456789credential"
SHOW = "import json, os; print(json.dumps({k: os.environ.get(k) for k in ('GH_TOKEN', 'REYNOLDS_API_TOKEN')}))"  # noqa: E501


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def step(sid: str, agent: str, **options: Any) -> dict[str, Any]:
    action = {"kind": "shell", "argv": [sys.executable, "-c", SHOW]}
    return {"id": sid, "agent": agent, "action": action, **options}


async def test_a_pools_secrets_reach_its_actions_only_and_the_audit_keeps_their_names(
    tmp_path: Path,
) -> None:
    config, secrets = tmp_path / "config", tmp_path / "secrets"
    config.mkdir()
    secrets.mkdir()
    (secrets / "gh_token.txt").write_text(GH_VALUE + "\n")
    pools = {
        "devops": {"name": "devops", "secrets": {"GH_TOKEN": "gh_token.txt"}},
        "code": {"name": "code"},
        "platform": {"name": "platform", "secrets": {"X_KEY": "missing.txt"}},
    }
    (config / "agents.yaml").write_text(yaml.safe_dump({"pools": pools}))
    settings = Settings(
        home=tmp_path / "home",
        config_dir=config,
        secrets_dir=secrets,
        api_token="server-own-token-value",
    )
    app = await build(settings)
    try:
        task = {
            "type": "credentials",
            "subtasks": [
                step("with", "devops"),
                step("without", "code"),
                step("missing", "platform", retries=2),
            ],
        }
        run = await app.engine.submit(TaskSpec.model_validate(task))
        assert await app.engine.wait(run, 60)
        result = await app.engine.result(run.id)
        await app.store.flush()
        audit = app.store.audit(task_id=run.id, limit=100)
    finally:
        await app.aclose()

    subs = {s["id"]: s for s in result["subtasks"]}
    assert json.loads(subs["with"]["output"]) == {"GH_TOKEN": GH_VALUE, "REYNOLDS_API_TOKEN": None}
    assert json.loads(subs["without"]["output"]) == {"GH_TOKEN": None, "REYNOLDS_API_TOKEN": None}
    missing = subs["missing"]
    assert missing["status"] == "failed" and missing["reason"] == "not_found"
    assert missing["attempts"] == 1  # a missing credential is not retried
    assert "X_KEY" in missing["error"] and "missing.txt" in missing["error"]

    by_subtask = {row["subtask_id"]: row for row in audit if row["kind"] == "action"}
    assert by_subtask["with"]["env_names"] == ["GH_TOKEN"]
    assert by_subtask["without"]["env_names"] is None
    assert GH_VALUE not in json.dumps(audit, default=str)
