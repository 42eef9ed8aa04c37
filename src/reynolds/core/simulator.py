"""A discrete-event simulation of the scheduler, on the executor's own policy (pure).

The dispatcher and this simulator are two drivers of one policy: the order in which ready
subtasks are taken (`planning.order_key`, looked up at each call), the placement on pools
(`planning.place`, `planning.take_startable`) and the retry decision (`retry.decide_retry`)
are the very functions the dispatcher calls. What the simulator adds is time: each attempt's
duration and outcome come from a `Sampler` (durations learned from history, given estimates,
or a recorded run), and time advances from event to event instead of waiting.

Skipping follows the dispatcher too: a subtask whose upstream failed is skipped, and an
`always` subtask (a workspace's merge step) runs once its upstream has ended, whatever the
outcome.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from reynolds.core import planning
from reynolds.core.graph import Graph, bottom_levels
from reynolds.core.models import Strategy
from reynolds.core.retry import decide_retry


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one simulated attempt ends: after `duration_s`, succeeded or failed."""

    duration_s: float
    ok: bool = True


# (subtask id, attempt number from 1) -> how that attempt ends.
Sampler = Callable[[str, int], Outcome]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One simulated attempt, for a Gantt chart."""

    subtask: str
    attempt: int
    pool: str
    start_s: float
    end_s: float
    ok: bool


@dataclass(slots=True)
class SimulatedRun:
    """What one simulated run did."""

    makespan_s: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)  # succeeded, failed, skipped, waiting

    @property
    def success_rate(self) -> float:
        total = len(self.status)
        done = sum(1 for s in self.status.values() if s == "succeeded")
        return done / total if total else 0.0

    def busy_s(self) -> float:
        return sum(a.end_s - a.start_s for a in self.attempts)

    def utilisation(self, slots: int) -> float:
        """The share of `slots` × makespan that attempts kept busy."""
        capacity = self.makespan_s * max(slots, 1)
        return self.busy_s() / capacity if capacity > 0 else 0.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The backoff the server would use (REYNOLDS_RETRY_BASE_S / _CAP_S)."""

    base_s: float = 0.5
    cap_s: float = 30.0


_FINISH, _RETRY = 0, 1  # event kinds; at one instant finishes free their slots first


def run(
    graph: Graph,
    strategy: Strategy,
    capacity: Mapping[str, int],
    capability: Mapping[str, Mapping[str, float]],
    estimate_s: Mapping[str, float],
    sample: Sampler,
    *,
    jitter: Callable[[], float],
    retry: RetryPolicy | None = None,
    stats: planning.PoolStats | None = None,
) -> SimulatedRun:
    """Run `graph` once under `strategy` on pools of `capacity` slots. `estimate_s` orders the
    work as the planner's estimates would; `sample` says how each attempt really goes."""
    return _Simulation(
        graph, strategy, capacity, capability, estimate_s, sample, jitter, retry or RetryPolicy(),
        stats,
    ).run()  # fmt: skip


class _Simulation:
    def __init__(
        self,
        graph: Graph,
        strategy: Strategy,
        capacity: Mapping[str, int],
        capability: Mapping[str, Mapping[str, float]],
        estimate_s: Mapping[str, float],
        sample: Sampler,
        jitter: Callable[[], float],
        retry: RetryPolicy,
        stats: planning.PoolStats | None,
    ) -> None:
        self.graph, self.strategy, self.capacity = graph, strategy, dict(capacity)
        self.capability, self.estimate_s, self.sample = capability, estimate_s, sample
        self.jitter, self.retry, self.stats = jitter, retry, stats
        self.bottom = bottom_levels(graph, estimate_s)
        self.free = dict(capacity)
        self.remaining = {nid: len(n.depends_on) for nid, n in graph.nodes.items()}
        self.attempt = dict.fromkeys(graph.nodes, 0)
        self.ready: list[tuple[planning.OrderKey, str]] = []
        self.events: list[tuple[float, int, int, str, str, Attempt | None]] = []
        self.result = SimulatedRun(status=dict.fromkeys(graph.nodes, "waiting"))
        self.now, self.tick, self.turn, self.running = 0.0, 0, 0, 0

    def run(self) -> SimulatedRun:
        for nid in self.graph.nodes:
            if self.remaining[nid] == 0:
                self._ready(nid)
        limit = planning.effective_concurrency(self.strategy)
        while True:
            for nid, pool in planning.take_startable(self.ready, self._place, limit - self.running):
                self._start(nid, pool)
            if not self.events:
                break  # nothing runs or waits: the rest can never start
            self.now, kind, _, nid, pool, done = heapq.heappop(self.events)
            if kind == _RETRY:
                self._ready(nid)
            else:
                assert done is not None
                self._finish(nid, pool, done)
        self.result.makespan_s = self.now
        return self.result

    def _ready(self, nid: str) -> None:
        node = self.graph.nodes[nid]
        key = planning.order_key(
            self.strategy.approach, node, self.bottom[nid], self.estimate_s[nid]
        )
        heapq.heappush(self.ready, (key, nid))

    def _place(self, nid: str) -> str | None:
        node = self.graph.nodes[nid]
        decision = planning.place(
            node.agent, self.capability.get(nid, {}), self.free, self.capacity, self.strategy,
            self.turn, self.stats,
        )  # fmt: skip
        if decision.pool is not None:
            self.free[decision.pool] -= 1
            self.turn += 1
        return decision.pool

    def _start(self, nid: str, pool: str) -> None:
        self.attempt[nid] += 1
        outcome = self.sample(nid, self.attempt[nid])
        end = self.now + max(0.0, outcome.duration_s)
        attempt = Attempt(nid, self.attempt[nid], pool, self.now, end, outcome.ok)
        self.running += 1
        self._push(end, _FINISH, nid, pool, attempt)

    def _push(self, at: float, kind: int, nid: str, pool: str, done: Attempt | None) -> None:
        self.tick += 1
        heapq.heappush(self.events, (at, kind, self.tick, nid, pool, done))

    def _finish(self, nid: str, pool: str, done: Attempt) -> None:
        self.free[pool] += 1
        self.running -= 1
        self.result.attempts.append(done)
        if not done.ok:
            decision = decide_retry(
                done.attempt, self.graph.nodes[nid].retries, "exit",
                base_s=self.retry.base_s, cap_s=self.retry.cap_s, jitter=self.jitter(),
            )  # fmt: skip
            if decision.retry:
                self._push(self.now + decision.delay_s, _RETRY, nid, pool, None)
                return
        self.result.status[nid] = "succeeded" if done.ok else "failed"
        for child in self.graph.dependents[nid]:
            if done.ok or self.graph.nodes[child].always:
                self._upstream_ended(child)
        if not done.ok:
            self._skip_below(nid)

    def _upstream_ended(self, nid: str) -> None:
        self.remaining[nid] -= 1
        if self.remaining[nid] == 0 and self.result.status[nid] == "waiting":
            self._ready(nid)

    def _skip_below(self, nid: str) -> None:
        for child in self.graph.descendants(nid):
            node = self.graph.nodes[child]
            if self.result.status[child] != "waiting" or node.always or self.attempt[child]:
                continue
            self.result.status[child] = "skipped"
            for after in self.graph.dependents[child]:
                if self.graph.nodes[after].always:
                    self._upstream_ended(after)
