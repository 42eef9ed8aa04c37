"""Faults of what a server keeps its state in: PostgreSQL dropping the server's connections
mid-task (pg_terminate_backend), and the Redis of the cache restarted under a working server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from fault_ledger import starts
from fault_rig import Rig
from sqlalchemy.engine import make_url
from tests.helpers.faults import journal_step
from tests.helpers.polling import wait_for
from tests.helpers.postgres import POSTGRES_URL, dedicated_database
from tests.helpers.redis_server import RedisServer

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120)]

SUBTASKS = 12
# At each of these counts of started subtasks, the server's connections are cut again.
CUTS = tuple(range(2, SUBTASKS))


def terminate_connections(database: str) -> int:
    """pg_terminate_backend for every connection to `database` (the server's: the database is
    the test's own), from a connection to another database; how many were ended."""
    url = make_url(POSTGRES_URL)
    with psycopg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
    ) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
    return int(row[0]) if row else 0


def healthy(rig: Rig) -> bool:
    return rig.health().status_code == 200


@pytest.mark.postgres
def test_postgres_connections_terminated_mid_task_lose_nothing(
    postgres_base: None, make_rig: Callable[..., Rig]
) -> None:
    with dedicated_database("reynolds_fault") as url:
        rig = make_rig(env={"REYNOLDS_DATABASE_URL": url})
        try:
            steps = [journal_step(f"w{i:02d}", rig.journal, 0.3) for i in range(SUBTASKS)]
            task_id = rig.submit(
                {"type": "fault-postgres", "subtasks": steps}, strategy={"maxConcurrency": 3}
            )
            ended = []
            for cut in CUTS:
                wait_for(lambda c=cut: len(starts(rig.runs())) >= c, 30, f"not {cut} starts")
                ended.append(terminate_connections(make_url(url).database or ""))
            print(f"connections terminated at {CUTS} starts: {ended}")
            assert sum(ended) >= 1, "the server held no connection to cut"

            rig.ended(timeout_s=60)

            assert rig.task(task_id)["status"] == "succeeded", rig.task(task_id)["results"]
            wait_for(lambda: healthy(rig), 30, "the store check never recovered")
            after = rig.submit({"type": "fault-postgres", "subtasks": steps[:2]})
            rig.ended([after], timeout_s=30)
            assert rig.task(after)["status"] == "succeeded"
            rig.check()
        finally:
            rig.stop()  # before the database is dropped


def cache_state(rig: Rig) -> str | None:
    checks: dict[str, Any] = rig.health().json().get("checks", {})
    cache: dict[str, Any] = checks.get("cache") or {}
    return cache.get("status")


def analyse(client: httpx.Client, components: int) -> int:
    """Ask for an analysis (cached in Redis when it answers); the HTTP status."""
    task = {"type": "migration", "components": [f"m{i}" for i in range(components)]}
    answer = client.post(
        "/mcp/tools/analyze_orchestration_potential", json={"arguments": {"task": task}}
    )
    return answer.status_code


def test_a_redis_cache_restarted_under_a_working_server_fails_no_request(
    make_rig: Callable[..., Rig], redis_broker: RedisServer
) -> None:
    rig = make_rig(env={"REYNOLDS_REDIS_URL": redis_broker.url})
    assert cache_state(rig) == "ok"
    steps = [journal_step(f"w{i}", rig.journal, 0.3) for i in range(6)]
    task_id = rig.submit({"type": "fault-redis-cache", "subtasks": steps})
    with rig.client() as client:
        assert analyse(client, 3) == 200
        wait_for(lambda: starts(rig.runs()), 30, "the task did not start")

        redis_broker.stop()
        try:
            # Every request is answered meanwhile: the cache falls back to the process.
            assert [analyse(client, n) for n in (3, 4, 5)] == [200, 200, 200]
            wait_for(lambda: cache_state(rig) == "warn", 15, "/health never noticed")
            assert healthy(rig), "a cache outage is a warning, not a failure"
        finally:
            redis_broker.start()

        wait_for(lambda: cache_state(rig) == "ok", 30, "the server never went back to Redis")
        assert analyse(client, 6) == 200
    rig.ended(timeout_s=30)
    assert rig.task(task_id)["status"] == "succeeded"
    rig.check()
