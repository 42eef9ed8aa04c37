"""Prometheus metrics (contract section 5), one registry per server instance.

A ratio that an alert or a dashboard reads is exported as two counters, its numerator and its
denominator, so that PromQL divides their increases over a window and one odd task cannot
swing it (a task whose only subtask was denied has an overhead of 70 %, in milliseconds):

- parallel execution ratio: `reynolds_parallel_execution_busy_seconds_total` (subtask-seconds
  the ended tasks ran) over `reynolds_parallel_execution_capacity_seconds_total` (their
  makespans times the concurrency each could use);
- orchestration overhead: `reynolds_orchestration_overhead_seconds_total` (makespan beyond
  what a perfect list scheduler would need) over `reynolds_orchestration_makespan_seconds_total`;
- a pool's utilisation: `reynolds_agent_busy_slot_seconds_total{agent_type}` over
  `reynolds_agent_available_slot_seconds_total{agent_type}` (its replicas, integrated over time).

The contract's gauges `reynolds_parallel_execution_ratio` and
`reynolds_orchestration_overhead_ratio` are the same ratios over the tasks that ended in the
last RATIO_WINDOW_S (NaN while none did); `reynolds_agent_utilization` is a pool's busy share
at the scrape. Label values known up front start at zero: a counter that appears at its first
increment loses that increment to `increase()`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from reynolds.core.breakers import BreakerState
from reynolds.core.loops import ACTIVE_DETECTORS
from reynolds.core.models import Status
from reynolds.core.reporting import TaskSeconds

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
# The window of the contract's ratio gauges, and the most tasks it keeps (then the latest).
RATIO_WINDOW_S = 900.0
RATIO_WINDOW_TASKS = 10_000
TASK_STATUSES = tuple(
    str(s) for s in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.LOOP_BLOCKED)
)
ATTEMPT_STATUSES = ("succeeded", "failed", "cancelled")
# The decisions each kind of audit record has (a breaker's is the state it went to).
AUDIT_DECISIONS = {
    "action": ("allowed", "denied"),
    "tool": ("allowed", "denied", "rejected"),
    "breaker": tuple(str(state) for state in BreakerState),
}


class _Slots:
    """One pool's slots integrated over time: busy and available slot-seconds so far."""

    __slots__ = ("available_s", "busy", "busy_s", "replicas", "since")

    def __init__(self, busy_s: Counter, available_s: Counter, now: float) -> None:
        self.busy_s = busy_s
        self.available_s = available_s
        self.busy = 0
        self.replicas = 0
        self.since = now

    def advance(self, busy: int, replicas: int, now: float) -> None:
        elapsed = now - self.since
        if elapsed > 0:
            if self.busy:
                self.busy_s.inc(self.busy * elapsed)
            if self.replicas:
                self.available_s.inc(self.replicas * elapsed)
            self.since = now
        # A worker gone mid-attempt leaves more running than there are slots: busy is capped.
        self.replicas = max(replicas, 0)
        self.busy = min(max(busy, 0), self.replicas)


class _RecentTasks:
    """The tasks that ended within RATIO_WINDOW_S, for the contract's ratio gauges."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.ended: deque[tuple[float, TaskSeconds]] = deque(maxlen=RATIO_WINDOW_TASKS)

    def add(self, seconds: TaskSeconds) -> None:
        self.ended.append((self.clock(), seconds))

    def ratio(
        self, part: Callable[[TaskSeconds], float], whole: Callable[[TaskSeconds], float]
    ) -> Callable[[], float]:
        """sum(part) / sum(whole) over the window, computed at each scrape."""

        def value() -> float:
            cutoff = self.clock() - RATIO_WINDOW_S
            ended = self.ended
            while ended and ended[0][0] < cutoff:
                ended.popleft()
            total = sum(whole(s) for _, s in ended)
            return sum(part(s) for _, s in ended) / total if total > 0 else math.nan

        return value


class Metrics:
    """The counters, gauges and histograms the engine and the HTTP layer update."""

    def __init__(
        self, pools: Iterable[str] = (), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.registry = CollectorRegistry()
        # The server process's CPU, memory and file descriptors, read at each scrape.
        ProcessCollector(registry=self.registry)
        self._recent = _RecentTasks(clock)
        self._define_tasks(self.registry)
        self._define_pools(self.registry)
        self._define_guards(self.registry)
        self.http_duration = Histogram(
            "reynolds_http_request_duration_seconds",
            "HTTP request duration",
            ["method", "route", "status"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._sub_children: dict[tuple[str, str], Counter] = {}
        self._audit_children: dict[tuple[str, str], Counter] = {}
        self._slots: dict[str, _Slots] = {}
        for status in TASK_STATUSES:
            self.tasks.labels(status)
        for detector in ACTIVE_DETECTORS:
            self.loops_detected.labels(detector)
        for kind, decisions in AUDIT_DECISIONS.items():
            for decision in decisions:
                self.audit_records.labels(kind, decision)
        for pool in pools:
            for status in ATTEMPT_STATUSES:
                self.subtasks.labels(pool, status)
            for direction in ("up", "down"):
                self.scaling_events.labels(pool, direction)
            self.busy_slots.labels(pool)
            self.available_slots.labels(pool)

    def _define_tasks(self, r: CollectorRegistry) -> None:
        self.tasks = Counter(
            "reynolds_tasks", "Tasks that ended, by status", ["status"], registry=r
        )
        self.subtasks = Counter(
            "reynolds_subtasks", "Subtask attempts that ended", ["agent_type", "status"], registry=r
        )
        self.subtask_duration = Histogram(
            "reynolds_subtask_duration_seconds",
            "Duration of one subtask attempt",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.busy_s = Counter(
            "reynolds_parallel_execution_busy_seconds",
            "Subtask-seconds the ended tasks ran (at most their capacity)",
            registry=r,
        )
        self.capacity_s = Counter(
            "reynolds_parallel_execution_capacity_seconds",
            "The ended tasks' makespans times the concurrency each could use",
            registry=r,
        )
        self.overhead_s = Counter(
            "reynolds_orchestration_overhead_seconds",
            "The ended tasks' makespan beyond what a perfect list scheduler would need",
            registry=r,
        )
        self.makespan_s = Counter(
            "reynolds_orchestration_makespan_seconds",
            "The ended tasks' makespans, from acceptance to the last subtask's end",
            registry=r,
        )
        recent = self._recent
        Gauge(
            "reynolds_parallel_execution_ratio",
            f"Busy over capacity subtask-seconds of the tasks ended in the last "
            f"{RATIO_WINDOW_S:.0f} s (NaN: none)",
            registry=r,
        ).set_function(recent.ratio(lambda s: s.busy_s, lambda s: s.capacity_s))
        Gauge(
            "reynolds_orchestration_overhead_ratio",
            f"Overhead over makespan seconds of the tasks ended in the last "
            f"{RATIO_WINDOW_S:.0f} s (NaN: none)",
            registry=r,
        ).set_function(recent.ratio(lambda s: s.overhead_s, lambda s: s.makespan_s))

    def _define_pools(self, r: CollectorRegistry) -> None:
        self.replicas = Gauge(
            "reynolds_agent_replicas", "Replicas per pool", ["agent_type"], registry=r
        )
        self.utilization = Gauge(
            "reynolds_agent_utilization",
            "Busy share of a pool's replicas at the scrape",
            ["agent_type"],
            registry=r,
        )
        self.busy_slots = Counter(
            "reynolds_agent_busy_slot_seconds",
            "Slot-seconds a pool's replicas spent running attempts",
            ["agent_type"],
            registry=r,
        )
        self.available_slots = Counter(
            "reynolds_agent_available_slot_seconds",
            "Slot-seconds a pool's replicas were there",
            ["agent_type"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "reynolds_queue_depth", "Ready subtasks waiting for a pool", ["agent_type"], registry=r
        )
        self.scaling_events = Counter(
            "reynolds_scaling_events",
            "Changes of a pool's replicas",
            ["agent_type", "direction"],
            registry=r,
        )

    def _define_guards(self, r: CollectorRegistry) -> None:
        self.loops_detected = Counter(
            "reynolds_loop_prevention_loop_detected", "Loops detected", ["reason"], registry=r
        )
        # A pool's breaker has `agent_type` set, a downstream's `downstream` (the other empty).
        self.breaker_gauge = Gauge(
            "reynolds_loop_prevention_circuit_breaker_open",
            "1 when a pool's or a downstream's circuit breaker is open or half-open",
            ["agent_type", "downstream"],
            registry=r,
        )
        self.limit_gauge = Gauge(
            "reynolds_loop_prevention_concurrency_limit",
            "A downstream's adaptive concurrency limit while it has one",
            ["downstream"],
            registry=r,
        )
        self.audit_records = Counter(
            "reynolds_audit_records",
            "Audit records written: action attempts, tool calls, breaker changes",
            ["kind", "decision"],
            registry=r,
        )

    def subtask_ended(self, agent_type: str, status: str, duration_s: float | None) -> None:
        key = (agent_type, status)
        child = self._sub_children.get(key)
        if child is None:
            child = self._sub_children[key] = self.subtasks.labels(agent_type, status)
        child.inc()
        if duration_s is not None:
            self.subtask_duration.observe(duration_s)

    def task_ended(self, status: str, seconds: TaskSeconds) -> None:
        self.tasks.labels(status).inc()
        self.busy_s.inc(seconds.busy_s)
        self.capacity_s.inc(seconds.capacity_s)
        self.overhead_s.inc(seconds.overhead_s)
        self.makespan_s.inc(seconds.makespan_s)
        self._recent.add(seconds)

    def pool_slots(self, pool: str, busy: int, replicas: int, now: float) -> None:
        slots = self._slots.get(pool)
        if slots is None:
            busy_s, available_s = self.busy_slots.labels(pool), self.available_slots.labels(pool)
            slots = self._slots[pool] = _Slots(busy_s, available_s, now)
        slots.advance(busy, replicas, now)

    def pool_replicas(self, pool: str, replicas: int) -> None:
        self.replicas.labels(pool).set(replicas)

    def pool_scaled(self, pool: str, direction: str) -> None:
        self.scaling_events.labels(pool, direction).inc()

    def pool_load(self, pool: str, utilization: float, queue_depth: int) -> None:
        self.utilization.labels(pool).set(utilization)
        self.queue_depth.labels(pool).set(queue_depth)

    def loop_detected(self, detector: str) -> None:
        self.loops_detected.labels(detector).inc()

    def audited(self, kind: str, decision: str) -> None:
        key = (kind, decision)
        child = self._audit_children.get(key)
        if child is None:
            child = self._audit_children[key] = self.audit_records.labels(kind, decision)
        child.inc()

    def breaker_open(self, agent_type: str | None, downstream: str | None, is_open: bool) -> None:
        self.breaker_gauge.labels(agent_type or "", downstream or "").set(1 if is_open else 0)

    def concurrency_limit(self, downstream: str, limit: float | None) -> None:
        if limit is None:
            with contextlib.suppress(KeyError):
                self.limit_gauge.remove(downstream)
        else:
            self.limit_gauge.labels(downstream).set(limit)

    def render(self) -> bytes:
        return generate_latest(self.registry)
