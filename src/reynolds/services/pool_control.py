"""The pools' side of the engine: their slots, queues, status and scaling.

A mixin of `Engine`: it reads and changes the scheduler's slot counts (`replicas`, `free`),
so it lives on the same object, but apart from the scheduling code.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from typing import TYPE_CHECKING, Any

from reynolds.errors import InvalidInput

if TYPE_CHECKING:
    from collections.abc import Callable

    from reynolds.adapters.metrics import Metrics
    from reynolds.core.pools import PoolSet
    from reynolds.services.ports import RemoteExecutor, Store
    from reynolds.services.runs import TaskRun

log = logging.getLogger("reynolds.engine")


class PoolControl:
    """Slots per pool: `replicas` each pool has, `free` of them now."""

    pools: PoolSet
    store: Store
    metrics: Metrics
    remote: RemoteExecutor | None
    clock: Callable[[], float]
    configured: dict[str, int]
    replicas: dict[str, int]
    free: dict[str, int]
    _active: list[TaskRun]
    _outcomes: dict[str, list[float]]
    _background: set[asyncio.Task[None]]
    _rescaling: set[str]

    def _pump(self) -> None:
        raise NotImplementedError  # the scheduler's

    def planning_replicas(self) -> dict[str, int]:
        """The replicas plans assume: remote pools with no worker seen yet count as configured."""
        if self.remote is not None and not any(self.replicas.values()):
            return self.configured
        return self.replicas

    def pool_stats(self) -> dict[str, tuple[float | None, float | None]]:
        """Success rate and mean attempt seconds per pool; None while a pool has no history."""
        return {
            pool: (ok / n, mean_s) if n else (None, None)
            for pool, (n, ok, mean_s) in self._outcomes.items()
        }

    def queue_depths(self) -> dict[str, int]:
        """Per pool, ready subtasks that could run there but found no free replica: those
        waiting for it by name, and, when every pool is full, those that would take any
        (counted on their best-matching pool, or on every pool when none matches)."""
        queued: dict[str, int] = dict.fromkeys(self.pools.pools, 0)
        all_full = not any(v > 0 for v in self.free.values())
        for run in self._active:
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
        """Take the remote pools' slots from the workers last seen; a change is a scaling
        event of source `workers`."""
        if self.remote is None:
            return
        for key, slots in self.remote.capacity(list(self.replicas)).items():
            if slots != self.replicas[key] and key not in self._rescaling:
                self._set_replicas(key, slots, "workers connected or gone", "workers")
        self._pump()

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
        if self.remote is not None and not self.remote.capacity([key])[key]:
            raise InvalidInput(
                f"no Celery worker serves the {key} queue; start one with "
                f"`reynolds agent --type {key}`",
                field="agentType",
            )
        if replicas != current:
            if self.remote is not None:
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
        assert self.remote is not None
        # Until it settles, the change is this request's, not workers coming or going.
        self._rescaling.add(key)
        try:
            await self.remote.scale(key, replicas, current)
            self._set_replicas(key, self.remote.capacity([key])[key], reason, source)
        finally:
            self._rescaling.discard(key)
        self._pump()

    async def scaled(self) -> None:
        """Wait for the scaling commands sent to remote workers, then take their new sizes."""
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
            direction = "up" if replicas > current else "down"
            self.metrics.replicas.labels(key).set(replicas)
            self.metrics.scaling_events.labels(key, direction).inc()
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
                self._pump()

    def pool_status(self) -> list[dict[str, Any]]:
        """Pools and replicas as they stand."""
        out = []
        queued = self.queue_depths()
        for key, pool in self.pools.pools.items():
            replicas = self.replicas[key]
            busy = replicas - self.free[key]
            util = busy / replicas if replicas else 0.0
            self.metrics.utilization.labels(key).set(util)
            self.metrics.queue_depth.labels(key).set(queued.get(key, 0))
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
                    "capabilities": pool.capabilities.model_dump(),
                    "circuit": "closed",
                    "description": pool.description,
                }
            )
        return out

    def counts(self) -> dict[str, int]:
        return {"active": len(self._active), "running": sum(r.running for r in self._active)}
