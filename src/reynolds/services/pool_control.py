"""The pools' side of the scheduler: their slots, queues, status and scaling."""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable
from typing import Any

from reynolds.core.breakers import BreakerState
from reynolds.core.pools import PoolSet
from reynolds.errors import InvalidInput
from reynolds.services.guards import Guards
from reynolds.services.live_runs import LiveRuns
from reynolds.services.ports import DistributedExecutor, SchedulerMetrics, Store
from reynolds.settings import Settings

log = logging.getLogger("reynolds.engine")


def pool_key(pool: str) -> str:
    """The history key under which a pool's attempts are learned."""
    return f"pool:{pool}"


class PoolControl:
    """Slots per pool: `replicas` each pool has, `free` of them now. `on_room` (the
    dispatch loop's pump) is called whenever slots were added."""

    def __init__(
        self,
        *,
        settings: Settings,
        pools: PoolSet,
        store: Store,
        metrics: SchedulerMetrics,
        distributed: DistributedExecutor | None,
        clock: Callable[[], float],
        runs: LiveRuns,
    ) -> None:
        self.settings = settings  # the scaling thresholds a pool leaves open
        self.pools = pools
        self.store = store
        self.metrics = metrics
        self.distributed = distributed
        self.clock = clock
        self._runs = runs
        self.on_room: Callable[[], None] = lambda: None
        # The pools' breakers, set by the dispatch loop that keeps them.
        self.guards: Guards | None = None
        # Remote pools have the slots their connected workers offer, none until one is seen.
        self.configured = pools.capacity()
        self.replicas = dict.fromkeys(self.configured, 0) if distributed else dict(self.configured)
        self.free = dict(self.replicas)
        # Per pool, from finished attempts: [attempts, successes, mean seconds].
        self._outcomes: dict[str, list[float]] = {p: [0, 0, 0.0] for p in self.replicas}
        self._background: set[asyncio.Task[None]] = set()
        self._rescaling: set[str] = set()
        now = clock()
        for pool, n in self.replicas.items():
            metrics.pool_replicas(pool, n)
            metrics.pool_slots(pool, 0, n, now)

    def slots_changed(self, pool: str, now: float) -> None:
        """Tell the metrics `pool`'s busy and available slots from `now` on: called whenever
        a slot is taken or given back and whenever the replicas change."""
        replicas = self.replicas[pool]
        self.metrics.pool_slots(pool, replicas - self.free[pool], replicas, now)

    async def load_outcomes(self) -> None:
        """Start from what earlier servers learned of each pool (its `pool:NAME` history)."""
        keys = {pool_key(pool): pool for pool in self._outcomes}
        learned = await asyncio.to_thread(self.store.outcomes, keys)
        for key, (attempts, failures, mean_s) in learned.items():
            self._outcomes[keys[key]] = [attempts, attempts - failures, mean_s]

    def record_outcome(self, pool: str, ok: bool, duration_s: float) -> None:
        """An attempt that ran on `pool` for `duration_s` and succeeded or not."""
        outcome = self._outcomes.setdefault(pool, [0, 0, 0.0])
        outcome[0] += 1
        outcome[1] += 1 if ok else 0
        outcome[2] += (duration_s - outcome[2]) / outcome[0]

    def planning_replicas(self) -> dict[str, int]:
        """The replicas plans assume: distributed pools with no worker seen yet count as
        configured."""
        if self.distributed is not None and not any(self.replicas.values()):
            return self.configured
        return self.replicas

    def pool_stats(self) -> dict[str, tuple[float | None, float | None]]:
        """Success rate and mean attempt seconds per pool; None while a pool has no history."""
        return {
            pool: (ok / n, mean_s) if n else (None, None)
            for pool, (n, ok, mean_s) in self._outcomes.items()
        }

    def success_rate(self, pool: str) -> float | None:
        """The share of the pool's finished attempts that succeeded, learned across servers
        sharing the store; None before its first."""
        attempts, ok, _ = self._outcomes.get(pool, (0, 0, 0.0))
        return round(ok / attempts, 4) if attempts else None

    def queue_depths(self) -> dict[str, int]:
        """Per pool, ready subtasks that could run there but found no free replica: those
        waiting for it by name, and, when every pool is full, those that would take any
        (counted on their best-matching pool, or on every pool when none matches)."""
        queued: dict[str, int] = dict.fromkeys(self.pools.pools, 0)
        all_full = not any(v > 0 for v in self.free.values())
        for run in self._runs.active:
            room = run.limit - run.running
            if room <= 0 or run.cancelling:
                continue  # waiting on the task's own concurrency cap, not on replicas
            for _, nid in heapq.nsmallest(room, run.ready):
                sub = run.subs[nid]
                agent = sub.node.agent
                if agent is not None:
                    if self.free.get(agent, 0) <= 0:
                        queued[agent] = queued.get(agent, 0) + 1
                elif all_full:
                    best = max(sub.capability.values(), default=0.0)
                    for pool in queued:
                        if best <= 0 or sub.capability.get(pool, 0.0) == best:
                            queued[pool] += 1
        return queued

    def observe_capacity(self) -> None:
        """Take the distributed pools' slots from the workers last seen; a change is a scaling
        event of source `workers`."""
        if self.distributed is None:
            return
        for key, slots in self.distributed.capacity(list(self.replicas)).items():
            if slots != self.replicas[key] and key not in self._rescaling:
                self._set_replicas(key, slots, "workers connected or gone", "workers")
        self.on_room()

    def scale(self, pool: str, replicas: int, reason: str, source: str) -> dict[str, Any]:
        """Set a pool's replicas within its min..max; returns the pool's new status.

        A target below the replicas busy now is refused: running subtasks are never cut short."""
        key = self.pools.resolve(pool)
        spec = self.pools.pools[key]
        low, high = spec.replicas.min, spec.replicas.max
        if replicas > high:
            raise InvalidInput(
                f"{key} allows at most {high} replicas (asked for {replicas})", field="replicas"
            )
        if replicas < low:
            raise InvalidInput(
                f"{key} needs at least {low} replicas (asked for {replicas})", field="replicas"
            )
        current = self.replicas[key]
        busy = current - self.free[key]
        if replicas < busy:
            raise InvalidInput(
                f"{key} has {busy} busy replicas; scale to {busy} or more, or wait",
                field="replicas",
            )
        if self.distributed is not None and not self.distributed.capacity([key])[key]:
            raise InvalidInput(
                f"no Celery worker serves the {key} queue; start one with "
                f"`reynolds agent --type {key}`",
                field="agentType",
            )
        if replicas != current:
            if self.distributed is not None:
                # The workers' pools change; the next look at them records the new slots.
                task = asyncio.get_running_loop().create_task(
                    self._scale_remote(key, replicas, current, reason, source)
                )
                self._background.add(task)
                task.add_done_callback(self._scaled)
            else:
                self._set_replicas(key, replicas, reason, source)
        return next(p for p in self.pool_status() if p["type"] == key)

    async def _scale_remote(
        self, key: str, replicas: int, current: int, reason: str, source: str
    ) -> None:
        assert self.distributed is not None
        # Until it settles, the change is this request's, not workers coming or going.
        self._rescaling.add(key)
        try:
            await self.distributed.scale(key, replicas, current)
            self._set_replicas(key, self.distributed.capacity([key])[key], reason, source)
        finally:
            self._rescaling.discard(key)
        self.on_room()

    async def scaled(self) -> None:
        """Wait for the scaling commands sent to distributed workers, then take their new sizes."""
        pending = list(self._background)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self.observe_capacity()

    def _scaled(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("scaling the Celery workers failed: %s", task.exception())

    def _set_replicas(self, key: str, replicas: int, reason: str, source: str) -> None:
        current = self.replicas[key]
        if replicas != current:
            now = self.clock()
            self.replicas[key] = replicas
            self.free[key] += replicas - current
            self.slots_changed(key, now)
            direction = "up" if replicas > current else "down"
            self.metrics.pool_replicas(key, replicas)
            self.metrics.pool_scaled(key, direction)
            self.store.add_scaling_event(
                {
                    "pool": key,
                    "from_replicas": current,
                    "to_replicas": replicas,
                    "reason": reason,
                    "source": source,
                    "at": now,
                }
            )
            self.store.add_event(
                {
                    "task_id": "",
                    "subtask_id": None,
                    "kind": "agent_scaled",
                    "data": {
                        "agentType": key,
                        "from": current,
                        "to": replicas,
                        "reason": reason,
                        "source": source,
                    },
                    "at": now,
                }
            )
            log.info("scaled %s from %d to %d (%s, %s)", key, current, replicas, source, reason)
            if direction == "up":
                self.on_room()

    def pool_status(self) -> list[dict[str, Any]]:
        """Pools and replicas as they stand."""
        out = []
        queued = self.queue_depths()
        guards = self.guards
        now = self.clock()
        for key, pool in self.pools.pools.items():
            replicas = self.replicas[key]
            busy = replicas - self.free[key]
            util = busy / replicas if replicas else 0.0
            self.metrics.pool_load(key, util, queued.get(key, 0))
            self.slots_changed(key, now)  # the slot-seconds so far, for a scrape
            out.append(
                {
                    "type": key,
                    "name": pool.name,
                    "replicas": replicas,
                    "minReplicas": pool.replicas.min,
                    "maxReplicas": pool.replicas.max,
                    "busy": busy,
                    "queueDepth": queued.get(key, 0),
                    "utilization": round(util, 3),
                    "successRate": self.success_rate(key),
                    "capabilities": pool.capabilities.model_dump(),
                    "circuit": self.circuit(key),
                    **({"breaker": guards.pool_view(key, now)} if guards is not None else {}),
                    "description": pool.description,
                }
            )
        return out

    def circuit(self, pool: str) -> str:
        """The state of `pool`'s circuit breaker: closed, open or half_open."""
        return self.guards.pool_state(pool) if self.guards is not None else "closed"

    def healthy(self, pool: str) -> int:
        """Replicas of `pool` that can take work: all of them while its breaker is closed,
        none while it is open or probing."""
        if self.circuit(pool) != BreakerState.CLOSED:
            return 0
        return self.replicas.get(pool, 0)

    def counts(self) -> dict[str, int]:
        active = self._runs.active
        return {"active": len(active), "running": sum(r.running for r in active)}
