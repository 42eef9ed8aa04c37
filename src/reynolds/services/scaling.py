"""Auto-scaling: per pool, read the signals, ask `core.scaling.decide`, apply the answer.

Several servers sharing a store and Celery workers (`share_with`): every evaluation each one
writes what it has waiting and running per pool into its row of `servers`; only the live
server first by id scales, and it judges each pool by the sum of every live server's load (the
workers' processes are the same for all). Without that, one server idle beside a busy one
would shrink the pools the other is growing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reynolds.core.scaling import Signals, Thresholds, decide

if TYPE_CHECKING:
    from reynolds.services.pool_control import PoolControl
    from reynolds.services.ports import Row, Store

log = logging.getLogger("reynolds.scaling")


class AutoScaler:
    """Evaluates every pool whose `scaling.auto` is on, now or every `interval_s`."""

    def __init__(self, control: PoolControl, sample: Callable[[], tuple[float, float]]) -> None:
        self.control = control
        self.sample = sample  # () -> (cpu %, memory %)
        self._last_change: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._store: Store | None = None
        self._stale_after_s = 0.0
        self.wall: Callable[[], float] = time.time

    def share_with(self, store: Store, stale_after_s: float) -> None:
        """Scale together with the other servers on `store` (see the module's docstring); a
        server silent for `stale_after_s` is not counted."""
        self._store = store
        self._stale_after_s = stale_after_s

    def thresholds(self, pool: str) -> Thresholds:
        """The pool's own thresholds, else the settings' (CPU/MEMORY/QUEUE_THRESHOLD_SCALE_UP)."""
        s = self.control.settings
        own = self.control.pools.pools[pool].scaling
        return Thresholds(
            cpu_up_percent=own.cpu_up_percent or s.cpu_threshold_scale_up,
            memory_up_percent=own.memory_up_percent or s.memory_threshold_scale_up,
            queue_up=own.queue_up or s.queue_threshold_scale_up,
            cpu_down_percent=own.cpu_down_percent,
            memory_down_percent=own.memory_down_percent,
            cooldown_s=own.cooldown_seconds,
        )

    def floor(self, pool: str) -> int:
        """Auto-scaling never shrinks a pool below its initial replicas, so the capacity the
        contract promises at start (3 + 2 + 3) stays when idle. Manual scaling may go down
        to min, and auto leaves that choice alone rather than undo it."""
        replicas = self.control.pools.pools[pool].replicas
        return max(replicas.min, min(replicas.initial, self.control.replicas[pool]))

    def thresholds_view(self) -> list[dict[str, Any]]:
        """Each pool's effective thresholds, as the wire shows them."""
        out = []
        for key, pool in self.control.pools.pools.items():
            t = self.thresholds(key)
            out.append(
                {
                    "type": key,
                    "auto": pool.scaling.auto,
                    "minReplicas": pool.replicas.min,
                    "autoMinReplicas": max(pool.replicas.min, pool.replicas.initial),
                    "maxReplicas": pool.replicas.max,
                    "cpuUpPercent": t.cpu_up_percent,
                    "memoryUpPercent": t.memory_up_percent,
                    "queueUp": t.queue_up,
                    "cpuDownPercent": t.cpu_down_percent,
                    "memoryDownPercent": t.memory_down_percent,
                    "cooldownSeconds": t.cooldown_s,
                }
            )
        return out

    async def evaluate_everywhere(self, *, apply: bool) -> list[dict[str, Any]]:
        """`evaluate` on the load of every server that shares this one's workers."""
        _, others = await self._share()
        return self.evaluate(apply=apply, others=others)

    async def _share(self) -> tuple[bool, list[Row]]:
        """Whether this server scales for all, and the other servers' loads (none: alone)."""
        control = self.control
        if self._store is None or control.distributed is None:
            return True, []
        queued = control.queue_depths()
        pools = {
            key: [queued[key], control.replicas[key] - control.free[key]]
            for key in control.pools.pools
        }
        now = self.wall()
        leads, others = await asyncio.to_thread(
            self._store.share_load, {"at": now, "pools": pools}, self._stale_after_s
        )
        fresh = [load for load in others if now - float(load.get("at", 0)) <= self._stale_after_s]
        return leads, fresh

    def evaluate(self, *, apply: bool, others: list[Row] | None = None) -> list[dict[str, Any]]:
        """One evaluation of every auto-scaled pool: the changes decided (applied unless not
        `apply`). Pools with nothing to change are left out. `others`: the loads of the other
        servers sharing the workers, added to this one's."""
        control = self.control
        distributed = control.distributed is not None
        # Celery workers run elsewhere: this machine's CPU and memory say nothing of them, so
        # only queue depth moves a distributed pool.
        cpu, memory = (0.0, 0.0) if distributed else self.sample()
        queued = control.queue_depths()
        elsewhere = _summed(others or [], list(control.pools.pools))
        now = control.clock()
        out = []
        for key, pool in control.pools.pools.items():
            if not pool.scaling.auto:
                continue
            replicas = control.replicas[key]
            if distributed and replicas == 0:
                continue  # no worker serves it: there is no pool to grow
            waiting, running = elsewhere[key]
            busy = replicas - control.free[key] + running
            signals = Signals(replicas, busy, queued[key] + waiting, cpu, memory)
            decision = decide(
                signals,
                min_replicas=self.floor(key),
                max_replicas=pool.replicas.max,
                thresholds=self.thresholds(key),
                now_s=now,
                last_change_s=self._last_change.get(key),
            )
            if decision is None:
                continue
            if apply:
                control.scale(key, decision.target, decision.reason, "auto")
                self._last_change[key] = now
            out.append(
                {
                    "agentType": key,
                    "from": decision.current,
                    "to": decision.target,
                    "direction": decision.direction,
                    "reason": decision.reason,
                    "applied": apply,
                    "queueDepth": signals.queue_depth,
                    "cpuPercent": None if distributed else round(cpu, 1),
                    "memoryPercent": None if distributed else round(memory, 1),
                }
            )
        return out

    def start(self, interval_s: float) -> None:
        """Evaluate every `interval_s` on the running loop until `stop`."""
        self._task = asyncio.get_running_loop().create_task(self._loop(interval_s))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                leads, others = await self._share()
                if leads:  # another server scales the shared workers otherwise
                    self.evaluate(apply=True, others=others)
            except Exception:  # one bad evaluation must not end auto-scaling
                log.exception("auto-scaling evaluation failed")


def _summed(loads: list[Row], pools: list[str]) -> dict[str, tuple[int, int]]:
    """Per pool, the waiting and running subtasks of `loads` together (a malformed entry
    counts nothing)."""
    total = dict.fromkeys(pools, (0, 0))
    for load in loads:
        shares = load.get("pools")
        if not isinstance(shares, dict):
            continue
        for key in pools:
            share = shares.get(key)
            if (
                isinstance(share, list)
                and len(share) == 2
                and all(isinstance(n, int) for n in share)
            ):
                waiting, running = total[key]
                total[key] = (waiting + share[0], running + share[1])
    return total
