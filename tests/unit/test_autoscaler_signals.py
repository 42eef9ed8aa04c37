"""Which signals move a pool: the machine's CPU and memory for local pools, queue depth alone
for pools of distributed (Celery) workers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from reynolds.bootstrap import load_pools
from reynolds.services.scaling import AutoScaler
from reynolds.settings import Settings


def engine_with_one_waiting_subtask(distributed: object | None) -> Any:
    """devops at 2 of 5 replicas, both busy, one subtask waiting (below its queue threshold)."""
    settings = Settings()
    pools = load_pools(settings)
    replicas = {key: pool.replicas.initial for key, pool in pools.pools.items()}
    replicas["devops"] = 2
    free = dict(replicas, devops=0)
    return SimpleNamespace(
        settings=settings,
        pools=pools,
        replicas=replicas,
        free=free,
        distributed=distributed,
        clock=lambda: 1000.0,
        queue_depths=lambda: dict.fromkeys(pools.pools, 0) | {"devops": 1},
    )


@pytest.mark.parametrize(
    ("distributed", "grows"),
    [(None, True), (object(), False)],
    ids=["local pools grow on the machine's CPU", "distributed pools ignore it"],
)
def test_a_busy_machine_grows_local_pools_but_not_distributed_ones(
    distributed: object | None, grows: bool
) -> None:
    engine = engine_with_one_waiting_subtask(distributed)
    scaler = AutoScaler(engine, sample=lambda: (99.0, 99.0))

    decisions = {d["agentType"]: d for d in scaler.evaluate(apply=False)}

    assert ("devops" in decisions) is grows
    if grows:
        assert decisions["devops"]["to"] > 2
        assert decisions["devops"]["cpuPercent"] == 99.0


def test_queue_depth_still_grows_a_distributed_pool() -> None:
    engine = engine_with_one_waiting_subtask(object())
    engine.queue_depths = lambda: dict.fromkeys(engine.pools.pools, 0) | {"devops": 8}
    scaler = AutoScaler(engine, sample=lambda: (0.0, 0.0))

    decisions = {d["agentType"]: d for d in scaler.evaluate(apply=False)}

    assert decisions["devops"]["direction"] == "up"
    assert decisions["devops"]["cpuPercent"] is None
