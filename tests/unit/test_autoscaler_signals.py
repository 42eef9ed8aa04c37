"""Which signals move a pool: the machine's CPU and memory for local pools, queue depth alone
for pools of distributed (Celery) workers; with several servers sharing those workers, every
server's load, and only one server scaling."""

from __future__ import annotations

import asyncio
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


# -- several servers sharing the workers --


def idle_server_beside_a_busy_one() -> Any:
    """This server: devops at 4 replicas (one above its initial 3, so auto may give it back),
    nothing of its own waiting or running."""
    engine = engine_with_one_waiting_subtask(object())
    engine.replicas["devops"] = 4
    engine.free["devops"] = 4
    engine.queue_depths = lambda: dict.fromkeys(engine.pools.pools, 0)
    engine.scale = lambda *args: engine.scaled.append(args)
    engine.scaled = []
    return engine


class SharedStore:
    """`share_load` as a store shared with one other server answers it."""

    def __init__(self, leads: bool, others: list[dict[str, Any]]) -> None:
        self.leads = leads
        self.others = others
        self.written: list[dict[str, Any]] = []

    def share_load(self, load: dict[str, Any], stale_after_s: float) -> Any:
        self.written.append(load)
        return self.leads, self.others


def test_an_idle_server_does_not_shrink_the_pool_a_peer_keeps_busy() -> None:
    engine = idle_server_beside_a_busy_one()
    scaler = AutoScaler(engine, sample=lambda: (0.0, 0.0))
    # Alone it would give a replica back: nothing of its own runs.
    assert [d["direction"] for d in scaler.evaluate(apply=False)] == ["down"]

    busy_peer = {"at": 0.0, "pools": {"devops": [0, 4]}}
    assert scaler.evaluate(apply=False, others=[busy_peer]) == []


def test_a_peers_queue_grows_the_shared_pool() -> None:
    engine = idle_server_beside_a_busy_one()
    scaler = AutoScaler(engine, sample=lambda: (0.0, 0.0))
    waiting = scaler.thresholds("devops").queue_up
    peer = {"at": 0.0, "pools": {"devops": [waiting, 4]}, "ignored": True}
    malformed = {"pools": {"devops": [str(waiting), 4]}}

    (decision,) = scaler.evaluate(apply=False, others=[peer, malformed, {"pools": "x"}])

    assert (decision["agentType"], decision["direction"]) == ("devops", "up")
    assert decision["queueDepth"] == waiting


@pytest.mark.anyio
async def test_only_the_server_that_leads_scales_and_every_one_shares_its_load() -> None:
    for leads, applied in ((False, []), (True, ["devops"])):
        engine = idle_server_beside_a_busy_one()
        waiting = dict.fromkeys(engine.pools.pools, 0) | {"devops": 9}
        engine.queue_depths = lambda waiting=waiting: waiting
        scaler = AutoScaler(engine, sample=lambda: (0.0, 0.0))
        store = SharedStore(leads, others=[])
        scaler.share_with(store, stale_after_s=30.0)  # type: ignore[arg-type]

        scaler.start(0.01)
        try:
            for _ in range(200):
                if len(store.written) >= 3:
                    break
                await asyncio.sleep(0.01)
        finally:
            await scaler.stop()

        assert store.written[0]["pools"]["devops"] == [9, 0]
        assert sorted({call[0] for call in engine.scaled}) == applied


@pytest.mark.anyio
async def test_a_peer_load_older_than_the_takeover_interval_is_not_counted() -> None:
    engine = idle_server_beside_a_busy_one()
    scaler = AutoScaler(engine, sample=lambda: (0.0, 0.0))
    scaler.wall = lambda: 1000.0
    old = {"at": 1000.0 - 31.0, "pools": {"devops": [9, 3]}}
    fresh = {"at": 1000.0 - 5.0, "pools": {"devops": [0, 3]}}
    scaler.share_with(SharedStore(True, [old, fresh]), stale_after_s=30.0)  # type: ignore[arg-type]

    leads, others = await scaler._share()

    assert (leads, others) == (True, [fresh])
