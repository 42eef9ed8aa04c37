"""A damaged or vanished store is noticed: refused at start in one line that says what to do,
and, when it happens while the server runs, reported by `/health`, `reynolds health` and every
answer that needed it, as JSON."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
from cli_support import Server, output
from failure_support import database, error_line, seed, serve_briefly, the_one_line
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from tests.helpers.damage import damage_open_store, damage_stopped_store, overwrite_pages
from tests.helpers.postgres import dedicated_database, unreachable


def assert_not_serving(server: Server) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base_url}/health", timeout=2)


# -- at start --


def test_start_refuses_a_store_with_a_damaged_page_in_one_line_naming_it_and_the_cure(
    idle_server: Server,
) -> None:
    seed(idle_server)
    damage_stopped_store(database(idle_server), "subtasks")

    started = idle_server.run("start")

    assert started.returncode == 1, output(started)
    line = error_line(output(started))
    assert f"the store {database(idle_server)} is damaged" in line
    assert "reynolds restore PATH" in line
    assert_not_serving(idle_server)


def test_serve_on_a_damaged_store_exits_1_printing_only_why(idle_server: Server) -> None:
    seed(idle_server)
    damage_stopped_store(database(idle_server), "tasks")

    code, out = serve_briefly(idle_server)

    assert code == 1, out
    line = the_one_line(out)
    assert f"the store {database(idle_server)} is damaged" in line
    assert "quick_check" in line


@pytest.mark.parametrize("loss", ["deleted", "emptied"])
def test_a_store_that_vanished_from_a_home_that_had_one_is_refused(
    idle_server: Server, loss: str
) -> None:
    seed(idle_server)
    db = database(idle_server)
    if loss == "deleted":
        db.unlink()
    else:
        db.write_bytes(b"")

    started = idle_server.run("start")

    assert started.returncode == 1, output(started)
    line = error_line(output(started))
    assert f"the store {db} is {'missing' if loss == 'deleted' else 'empty'}" in line
    assert "reynolds restore PATH" in line
    assert str(idle_server.home / "store.json") in line
    assert_not_serving(idle_server)


@pytest.mark.parametrize("damage", ["root pages", "header"])
def test_a_backup_restored_over_a_damaged_store_brings_the_home_back(
    idle_server: Server, tmp_path: Path, damage: str
) -> None:
    task_id = seed(idle_server, count=1)[0]
    backup = tmp_path / "before.db"
    assert idle_server.run("backup", str(backup)).returncode == 0
    if damage == "header":
        overwrite_pages(database(idle_server), [1])
    else:
        damage_stopped_store(database(idle_server))
    assert idle_server.run("start").returncode == 1

    restored = idle_server.run("restore", str(backup), "--yes")
    assert restored.returncode == 0, output(restored)
    started = idle_server.run("start")

    assert started.returncode == 0, output(started)
    assert httpx.get(f"{idle_server.base_url}/tasks/{task_id}", timeout=10).status_code == 200


def test_deleting_store_json_knowingly_starts_afresh_on_a_new_store(idle_server: Server) -> None:
    task_id = seed(idle_server, count=1)[0]
    database(idle_server).unlink()
    (idle_server.home / "store.json").unlink()

    started = idle_server.run("start")

    assert started.returncode == 0, output(started)
    assert httpx.get(f"{idle_server.base_url}/tasks/{task_id}", timeout=10).status_code == 404


@pytest.mark.postgres
def test_a_postgres_store_whose_tables_are_gone_is_refused_where_the_home_used_it(
    idle_server: Server, require_service: Callable[[str, str], NoReturn]
) -> None:
    problem = unreachable()
    if problem:
        require_service("PostgreSQL", problem)
    with dedicated_database("reynolds_gone") as url:
        env = {"REYNOLDS_DATABASE_URL": url}
        seed(idle_server, count=1, env=env)
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        finally:
            engine.dispose()

        for args in (("start", "--production"), ("start",)):
            started = idle_server.run(*args, env=env)
            assert started.returncode == 1, output(started)
            line = error_line(output(started))
            assert "holds no Reynolds store" in line, args
            assert "reynolds restore PATH" in line
        assert_not_serving(idle_server)


# -- while running --


def test_a_store_damaged_while_running_answers_json_and_fails_every_health_check(
    idle_server: Server,
) -> None:
    task_id = seed(idle_server, count=1)[0]
    started = idle_server.run("start")
    assert started.returncode == 0, output(started)
    db = database(idle_server)
    with httpx.Client(base_url=idle_server.base_url, timeout=10) as client:
        assert client.get(f"/tasks/{task_id}").status_code == 200
        damage_open_store(db, "subtasks")

        answer = client.get(f"/tasks/{task_id}")
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/json"
        assert f"the store {db} is damaged" in answer.json()["error"]

        # The pages /health reads are whole; what was found stays found.
        health = client.get("/health")
        assert health.status_code == 503
        store = health.json()["checks"]["store"]
        assert store["status"] == "failing"
        assert "damaged" in store["error"]

    checked = idle_server.run("health")
    assert checked.returncode == 1, output(checked)
    assert any(
        line.startswith("FAIL store") and "damaged" in line for line in checked.stdout.splitlines()
    ), output(checked)


def test_a_store_file_deleted_while_running_fails_health(idle_server: Server) -> None:
    started = idle_server.run("start")
    assert started.returncode == 0, output(started)
    db = database(idle_server)
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink(missing_ok=True)

    health = httpx.get(f"{idle_server.base_url}/health", timeout=10)

    assert health.status_code == 503
    assert health.json()["checks"]["store"]["status"] == "failing"
    assert not db.exists(), "the health check must not create a new, empty store"
