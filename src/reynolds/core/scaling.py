"""Auto-scaling decisions for a pool, as values: up on pressure, down when all is quiet."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When to add and remove replicas (the seed's CPU/MEMORY/QUEUE_THRESHOLD_SCALE_UP)."""

    cpu_up_percent: float = 75.0
    memory_up_percent: float = 80.0
    queue_up: int = 8
    cpu_down_percent: float = 30.0
    memory_down_percent: float = 50.0
    cooldown_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Signals:
    """What a pool looks like now."""

    replicas: int
    busy: int
    queue_depth: int  # ready subtasks waiting for this pool's replicas
    cpu_percent: float
    memory_percent: float


@dataclass(frozen=True, slots=True)
class ScalingDecision:
    """Go from `current` to `target` replicas, and why."""

    current: int
    target: int
    reason: str

    @property
    def direction(self) -> str:
        return "up" if self.target > self.current else "down"


def decide(
    signals: Signals,
    *,
    min_replicas: int,
    max_replicas: int,
    thresholds: Thresholds,
    now_s: float,
    last_change_s: float | None,
) -> ScalingDecision | None:
    """A change to make now, or None. One replica up per pressing signal (two when several
    agree), one down when every signal is low and a replica is idle; never outside
    min..max, never within the cool-down of the last change."""
    current = signals.replicas
    if current < min_replicas:
        return ScalingDecision(current, min_replicas, f"below the minimum of {min_replicas}")
    if current > max_replicas:
        return ScalingDecision(current, max_replicas, f"above the maximum of {max_replicas}")
    if last_change_s is not None and now_s - last_change_s < thresholds.cooldown_s:
        return None
    pressing = []
    if signals.queue_depth >= thresholds.queue_up:
        pressing.append(f"queue {signals.queue_depth} ≥ {thresholds.queue_up}")
    if signals.cpu_percent >= thresholds.cpu_up_percent:
        pressing.append(f"CPU {signals.cpu_percent:.0f}% ≥ {thresholds.cpu_up_percent:.0f}%")
    if signals.memory_percent >= thresholds.memory_up_percent:
        pressing.append(
            f"memory {signals.memory_percent:.0f}% ≥ {thresholds.memory_up_percent:.0f}%"
        )
    # Pressure only counts while there is work waiting: a busy CPU with an empty queue is
    # not helped by more replicas.
    if pressing and signals.queue_depth > 0 and current < max_replicas:
        step = 2 if len(pressing) >= 2 else 1
        return ScalingDecision(current, min(max_replicas, current + step), "; ".join(pressing))
    quiet = (
        signals.queue_depth == 0
        and signals.cpu_percent < thresholds.cpu_down_percent
        and signals.memory_percent < thresholds.memory_down_percent
    )
    if quiet and signals.busy < current and current > min_replicas:
        target = max(min_replicas, signals.busy, current - 1)
        if target < current:
            return ScalingDecision(current, target, "idle: queue empty, CPU and memory low")
    return None
