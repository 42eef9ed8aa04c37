"""Auto-scaling: per pool, read the signals, ask `core.scaling.decide`, apply the answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reynolds.core.scaling import Signals, Thresholds, decide

if TYPE_CHECKING:
    from reynolds.services.pool_control import PoolControl

log = logging.getLogger("reynolds.scaling")


class AutoScaler:
    """Evaluates every pool whose `scaling.auto` is on, now or every `interval_s`."""

    def __init__(self, control: PoolControl, sample: Callable[[], tuple[float, float]]) -> None:
        self.control = control
        self.sample = sample  # () -> (cpu %, memory %)
        self._last_change: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

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

    def evaluate(self, *, apply: bool) -> list[dict[str, Any]]:
        """One evaluation of every auto-scaled pool: the changes decided (applied unless not
        `apply`). Pools with nothing to change are left out."""
        control = self.control
        distributed = control.distributed is not None
        # Celery workers run elsewhere: this machine's CPU and memory say nothing of them, so
        # only queue depth moves a distributed pool.
        cpu, memory = (0.0, 0.0) if distributed else self.sample()
        queued = control.queue_depths()
        now = control.clock()
        out = []
        for key, pool in control.pools.pools.items():
            if not pool.scaling.auto:
                continue
            replicas = control.replicas[key]
            if distributed and replicas == 0:
                continue  # no worker serves it: there is no pool to grow
            signals = Signals(replicas, replicas - control.free[key], queued[key], cpu, memory)
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
                self.evaluate(apply=True)
            except Exception:  # one bad evaluation must not end auto-scaling
                log.exception("auto-scaling evaluation failed")
