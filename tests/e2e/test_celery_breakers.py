"""Circuit breakers under the Celery backend: the dispatcher's breaker logic holds when the
attempts run on real `reynolds agent` workers. One pool's machine cannot reach what its
command needs; its breaker opens, other work goes to the healthy pool, and after the cool-down
one probe finds it well again."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery_support import LEASE_S, Cluster, running_cluster
from event_stream import EventStream
from tests.helpers.polling import wait_for
from tests.helpers.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FAILURES = 2
COOLDOWN_S = 4.0
UNWELL, HEALTHY = "code", "devops"
HEALTHY_SLOTS = 3
# Fails, the way a refused connection does, on a worker whose workspace holds `outage`.
REACH = [
    sys.executable,
    "-c",
    "import os, sys\n"
    "if os.path.exists('outage'): sys.exit('connect to 127.0.0.1:5432: Connection refused')\n"
    "print(os.getcwd())",
]


@pytest.fixture
def cluster(tmp_path: Path, redis_broker: RedisServer) -> Iterator[Cluster]:
    env = {
        "REYNOLDS_BREAKER_FAILURES": str(FAILURES),
        "REYNOLDS_BREAKER_COOLDOWN_S": str(COOLDOWN_S),
    }
    with running_cluster(tmp_path, redis_broker, LEASE_S, env) as cluster:
        yield cluster


def reach(sid: str, **options: Any) -> dict[str, Any]:
    # "test" is a keyword of the unwell pool: unpinned, it would go there by preference.
    action = {"kind": "shell", "argv": REACH}
    return {"id": sid, "description": "test the database", "action": action, **options}


def pool(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in status["pools"] if p["type"] == name)


def breaker_gauge(cluster: Cluster, name: str) -> str:
    prefix = f'reynolds_loop_prevention_circuit_breaker_open{{agent_type="{name}",downstream=""}} '
    line = next(line for line in cluster.metrics().splitlines() if line.startswith(prefix))
    return line.removeprefix(prefix)


def test_an_unwell_pool_is_routed_around_until_a_probe_after_the_cool_down_closes_it(
    cluster: Cluster,
) -> None:
    unwell_workspace = cluster.server.workdir / UNWELL
    healthy_workspace = cluster.server.workdir / HEALTHY
    unwell_workspace.mkdir()
    healthy_workspace.mkdir()
    cluster.start_worker(UNWELL, 2, cwd=unwell_workspace)
    cluster.start_worker(HEALTHY, HEALTHY_SLOTS, cwd=healthy_workspace)
    wait_for(lambda: cluster.slots(UNWELL) == 2 and cluster.slots(HEALTHY) == HEALTHY_SLOTS, 60)
    outage = unwell_workspace / "outage"
    outage.touch()

    with EventStream(cluster.server.base_url) as events:
        failing = cluster.finished(
            cluster.submit_task(
                {"type": "reach", "subtasks": [reach(f"f{i}", agent=UNWELL) for i in range(2)]}
            ),
            60,
        )
        assert failing["status"] == "failed", cluster.logs()
        for sub in failing["subtasks"]:
            assert "Connection refused" in sub["error"]

        def opened() -> dict[str, Any] | None:
            status = cluster.tool("get_agent_status", {})
            return status if pool(status, UNWELL)["circuit"] == "open" else None

        status = wait_for(opened, 30, "the unwell pool's breaker never opened")
        assert pool(status, UNWELL)["breaker"]["failuresInRow"] == FAILURES
        assert pool(status, HEALTHY)["circuit"] == "closed"
        assert status["summary"]["healthyAgents"] == HEALTHY_SLOTS
        # The command failed on one pool only: the pool is to blame, not the command.
        assert status["downstreams"] == []
        assert breaker_gauge(cluster, UNWELL) == "1.0"
        assert breaker_gauge(cluster, HEALTHY) == "0.0"

        # The pool recovers, but its breaker does not know before a probe tells it. Work that
        # prefers it goes to the healthy pool; the subtask pinned to it waits for the
        # cool-down and is the probe. Listed first and the longest, it is
        # placed before the others: were the cool-down over already, it would still be the
        # probe, never one of them.
        outage.unlink()
        spread = [reach(f"u{i}") for i in range(HEALTHY_SLOTS)]
        probe = reach("probe", agent=UNWELL, estimatedSeconds=60)
        later = cluster.finished(
            cluster.submit_task({"type": "reach", "subtasks": [probe, *spread]}), 60
        )

        assert later["status"] == "succeeded", cluster.logs()
        by_id = {s["id"]: s for s in later["subtasks"]}
        for sid in (s["id"] for s in spread):
            assert by_id[sid]["agentType"] == HEALTHY
            assert by_id[sid]["output"].strip() == str(healthy_workspace.resolve())
        assert by_id["probe"]["agentType"] == UNWELL
        assert by_id["probe"]["routing"]["reason"] == "half-open probe"
        assert by_id["probe"]["output"].strip() == str(unwell_workspace.resolve())

        status = cluster.tool("get_agent_status", {})
        assert pool(status, UNWELL)["circuit"] == "closed"
        assert status["summary"]["healthyAgents"] == 2 + HEALTHY_SLOTS
        assert breaker_gauge(cluster, UNWELL) == "0.0"
        wait_for(
            lambda: len(events.of_kind("circuit_breaker")) >= 3,
            30,
            "the breaker's events never arrived",
        )
    moves = [
        (e["taskId"], e["data"]["agentType"], e["data"]["from"], e["data"]["to"])
        for e in events.of_kind("circuit_breaker")
    ]
    assert moves == [
        ("", UNWELL, "closed", "open"),
        ("", UNWELL, "open", "half_open"),
        ("", UNWELL, "half_open", "closed"),
    ]
