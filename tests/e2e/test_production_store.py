"""A production server on PostgreSQL, its password in secrets/db_password.txt: started with
`start --production`, backed up while it runs, restored once stopped, the password never shown."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import httpx
import pytest
from cli_support import Server, make_server, output
from sqlalchemy import create_engine, delete
from sqlalchemy.pool import NullPool
from tests.helpers.postgres import dedicated_database, unreachable
from tests.helpers.stores import task_ids

from reynolds.adapters.store.migrate import head_revision
from reynolds.adapters.store.schema import tasks

# The test server trusts local connections, so any password gets in: what matters is where
# this one shows up.
PASSWORD = "e2e-S3cret/with@odd:chars"

TASK = {
    "wait": True,
    "timeoutSeconds": 60,
    "task": {
        "type": "check",
        "description": "one greeting",
        "components": ["alpha"],
        "steps": [{"name": "greet", "action": {"kind": "shell", "argv": ["echo", "{component}"]}}],
    },
}


def delete_all_tasks(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(delete(tasks))
    finally:
        engine.dispose()


def run(server: Server, env: dict[str, str], seen: list[str], *args: str) -> str:
    result: subprocess.CompletedProcess[str] = server.run(*args, env=env)
    text = f"$ reynolds {' '.join(args)} → {result.returncode}\n{output(result)}"
    seen.append(text)
    return text


@pytest.mark.postgres
@pytest.mark.slow
def test_a_production_server_is_backed_up_live_restored_stopped_and_never_shows_its_password(
    tmp_path: Path, require_service: Callable[[str, str], NoReturn]
) -> None:
    problem = unreachable()
    if problem:
        require_service("PostgreSQL", problem)
    server = make_server(tmp_path)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "db_password.txt").write_text(PASSWORD + "\n", encoding="utf-8")
    dump = tmp_path / "live.dump"
    seen: list[str] = []
    with dedicated_database("reynolds_e2e") as url:
        env = {"REYNOLDS_DATABASE_URL": url, "REYNOLDS_SECRETS_DIR": str(secrets)}
        try:
            started = run(server, env, seen, "start", "--production")
            assert "→ 0" in started, started
            assert "PostgreSQL answers at postgresql+psycopg://" in started
            assert ":***@" in started
            assert f"Database schema is at revision {head_revision()}" in started

            answer = httpx.post(
                f"{server.base_url}/mcp/tools/orchestrate_task",
                json={"arguments": TASK},
                timeout=90,
            ).json()["structuredContent"]
            assert answer["success"], answer
            for path in ("/health", "/status"):
                seen.append(httpx.get(f"{server.base_url}{path}", timeout=10).text)
            # The server's URL has a password (shown as ***): the one from the secret file.
            assert ":***@" in seen[-2]
            run(server, env, seen, "status")
            run(server, env, seen, "health", "--verbose")

            backed_up = run(server, env, seen, "backup", str(dump))
            assert "→ 0" in backed_up, backed_up
            assert f"Backup written to {dump}" in backed_up

            refused = run(server, env, seen, "restore", str(dump), "--yes")
            assert "→ 1" in refused
            assert "stop it first (reynolds stop)" in refused

            stopped = run(server, env, seen, "stop", "--production")
            assert "Reynolds stopped" in stopped
        finally:
            server.run("stop", env=env)
        delete_all_tasks(url)

        restored = run(server, env, seen, "restore", str(dump), "--yes")

        assert "→ 0" in restored, restored
        assert task_ids(url) == {answer["taskId"]}
    seen.append((server.home / "logs" / "server.log").read_text(encoding="utf-8"))
    for text in seen:
        assert PASSWORD not in text
        assert quote(PASSWORD, safe="") not in text
