"""Prometheus metrics (contract section 5), one registry per server instance."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class Metrics:
    """The counters, gauges and histograms the engine and the HTTP layer update."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tasks = Counter(
            "reynolds_tasks", "Tasks that ended, by status", ["status"], registry=r
        )
        self.subtasks = Counter(
            "reynolds_subtasks", "Subtasks that ended", ["agent_type", "status"], registry=r
        )
        self.subtask_duration = Histogram(
            "reynolds_subtask_duration_seconds",
            "Duration of one subtask attempt",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.replicas = Gauge(
            "reynolds_agent_replicas", "Replicas per pool", ["agent_type"], registry=r
        )
        self.utilization = Gauge(
            "reynolds_agent_utilization",
            "Busy share of a pool's replicas",
            ["agent_type"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "reynolds_queue_depth", "Ready subtasks waiting for a pool", ["agent_type"], registry=r
        )
        self.parallel_ratio = Gauge(
            "reynolds_parallel_execution_ratio",
            "Parallel execution ratio of the last task",
            registry=r,
        )
        self.overhead_ratio = Gauge(
            "reynolds_orchestration_overhead_ratio",
            "Orchestration overhead of the last task",
            registry=r,
        )
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
        self.scaling_events = Counter(
            "reynolds_scaling_events",
            "Changes of a pool's replicas",
            ["agent_type", "direction"],
            registry=r,
        )
        self.http_duration = Histogram(
            "reynolds_http_request_duration_seconds",
            "HTTP request duration",
            ["method", "route", "status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._sub_children: dict[tuple[str, str], Counter] = {}

    def subtask_ended(self, agent_type: str, status: str, duration_s: float | None) -> None:
        key = (agent_type, status)
        child = self._sub_children.get(key)
        if child is None:
            child = self._sub_children[key] = self.subtasks.labels(agent_type, status)
        child.inc()
        if duration_s is not None:
            self.subtask_duration.observe(duration_s)

    def task_ended(self, status: str, parallel_ratio: float, overhead_ratio: float) -> None:
        self.tasks.labels(status).inc()
        self.parallel_ratio.set(parallel_ratio)
        self.overhead_ratio.set(overhead_ratio)

    def pool_replicas(self, pool: str, replicas: int) -> None:
        self.replicas.labels(pool).set(replicas)

    def pool_scaled(self, pool: str, direction: str) -> None:
        self.scaling_events.labels(pool, direction).inc()

    def pool_load(self, pool: str, utilization: float, queue_depth: int) -> None:
        self.utilization.labels(pool).set(utilization)
        self.queue_depth.labels(pool).set(queue_depth)

    def loop_detected(self, detector: str) -> None:
        self.loops_detected.labels(detector).inc()

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
