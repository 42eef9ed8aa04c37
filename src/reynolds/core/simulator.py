"""A discrete-event simulation of the scheduler, on the executor's own policy (pure).

The dispatcher and this simulator are two drivers of one policy: the order in which ready
subtasks are taken (`planning.order_key`, looked up at each call), the placement on pools
(`planning.place`, `planning.take_startable`), the circuit breakers and adaptive limits that
hold work back (`guarding.Guarding`, its routing and its verdicts) and the retry decision
(`retry.next_attempt`) are the very code the dispatcher runs. What the simulator adds is
time: each attempt's duration and outcome come from a `Sampler` (durations learned from
history, given estimates, or a recorded run), and time advances from event to event instead
of waiting: to the next end of an attempt, retry, or end of a breaker's cool-down or a
downstream's Retry-After.

Skipping follows the dispatcher too: a subtask whose upstream failed is skipped, and an
`always` subtask (a workspace's merge step) runs once its upstream has ended, whatever the
outcome.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from reynolds.core import planning
from reynolds.core.breakers import BreakerRules, BreakerState, Transition
from reynolds.core.downstreams import Overload, downstream_of
from reynolds.core.graph import Graph, bottom_levels
from reynolds.core.guarding import Guarding, judge
from reynolds.core.models import Strategy
from reynolds.core.retry import next_attempt


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one simulated attempt ends: after `duration_s`, succeeded or failed — a failure
    with the reason, class (core/failures.py) and overload signal the dispatcher would have
    judged it by (a command that exited non-zero by default)."""

    duration_s: float
    ok: bool = True
    reason: str | None = None
    failure_class: str | None = None
    overload: Overload | None = None


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
    breaker_opens: int = 0  # times a pool's or a downstream's breaker opened

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


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """The breakers and limits the server would keep (REYNOLDS_BREAKER_FAILURES,
    _BREAKER_COOLDOWN_S, _ADAPTIVE_CONCURRENCY)."""

    rules: BreakerRules = field(default_factory=BreakerRules)
    adaptive: bool = True


# Event kinds; at one instant, finishes free their slots first, then retries and wake-ups.
_FINISH, _RETRY, _WAKE = 0, 1, 2


class _Counted(Guarding):
    """The guards, counting the breakers that open."""

    opens = 0

    def _transitioned(self, transition: Transition, pool: str, key: str) -> None:
        if transition.after is BreakerState.OPEN:
            self.opens += 1


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
    guards: GuardPolicy | None = None,
    stats: planning.PoolStats | None = None,
) -> SimulatedRun:
    """Run `graph` once under `strategy` on pools of `capacity` slots. `estimate_s` orders the
    work as the planner's estimates would; `sample` says how each attempt really goes."""
    return _Simulation(
        graph, strategy, capacity, capability, estimate_s, sample, jitter, retry or RetryPolicy(),
        guards or GuardPolicy(), stats,
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
        guards: GuardPolicy,
        stats: planning.PoolStats | None,
    ) -> None:
        self.graph, self.strategy, self.capacity = graph, strategy, dict(capacity)
        self.capability, self.estimate_s, self.sample = capability, estimate_s, sample
        self.jitter, self.retry, self.stats = jitter, retry, stats
        self.guards = _Counted(guards.rules, capacity, adaptive=guards.adaptive)
        self.downstream = {nid: downstream_of(n.action) for nid, n in graph.nodes.items()}
        self.limit = planning.effective_concurrency(strategy)
        self.wake_at: float | None = None
        self.bottom = bottom_levels(graph, estimate_s)
        self.free = dict(capacity)
        self.remaining = {nid: len(n.depends_on) for nid, n in graph.nodes.items()}
        self.attempt = dict.fromkeys(graph.nodes, 0)
        self.ready: list[tuple[planning.OrderKey, str]] = []
        self.events: list[tuple[float, int, int, str, str, Attempt | None, Outcome | None]] = []
        self.result = SimulatedRun(status=dict.fromkeys(graph.nodes, "waiting"))
        self.now, self.tick, self.turn, self.running = 0.0, 0, 0, 0

    def run(self) -> SimulatedRun:
        for nid in self.graph.nodes:
            if self.remaining[nid] == 0:
                self._ready(nid)
        while True:
            room = self.limit - self.running
            for nid, pool in planning.take_startable(self.ready, self._place, room):
                self._start(nid, pool)
            if self.ready and self.guards.active:
                self._wake_later()
            if not self.events:
                break  # nothing runs or waits: the rest can never start
            self.now, kind, _, nid, pool, done, outcome = heapq.heappop(self.events)
            if kind == _RETRY:
                self._ready(nid)
            elif kind == _WAKE:
                self.wake_at = None
            else:
                assert done is not None and outcome is not None
                self._finish(nid, pool, done, outcome)
        self.result.makespan_s = self.now
        self.result.breaker_opens = self.guards.opens
        return self.result

    def _wake_later(self) -> None:
        """Look again when a cool-down or a Retry-After that holds work back is over."""
        at = self.guards.next_wake(self.now)
        if at is not None and (self.wake_at is None or at < self.wake_at):
            self.wake_at = at
            self._push(at, _WAKE, "", "", None)

    def _ready(self, nid: str) -> None:
        node = self.graph.nodes[nid]
        key = planning.order_key(
            self.strategy.approach, node, self.bottom[nid], self.estimate_s[nid]
        )
        heapq.heappush(self.ready, (key, nid))

    def _place(self, nid: str) -> str | None:
        node, capability = self.graph.nodes[nid], self.capability.get(nid, {})
        if self.guards.active:
            decision = self.guards.route(
                node.agent, capability, self.downstream[nid], self.free, self.capacity,
                self.strategy, self.turn, self.stats, self.now,
            )  # fmt: skip
        else:
            decision = planning.place(
                node.agent, capability, self.free, self.capacity, self.strategy, self.turn,
                self.stats,
            )  # fmt: skip
        if decision is None or decision.pool is None:
            return None
        self.free[decision.pool] -= 1
        self.guards.placed(self.downstream[nid])
        self.turn += 1
        return decision.pool

    def _start(self, nid: str, pool: str) -> None:
        self.attempt[nid] += 1
        self.guards.started(pool, self.downstream[nid], self.now)
        outcome = self.sample(nid, self.attempt[nid])
        end = self.now + max(0.0, outcome.duration_s)
        attempt = Attempt(nid, self.attempt[nid], pool, self.now, end, outcome.ok)
        self.running += 1
        self._push(end, _FINISH, nid, pool, attempt, outcome)

    def _push(
        self,
        at: float,
        kind: int,
        nid: str,
        pool: str,
        done: Attempt | None,
        outcome: Outcome | None = None,
    ) -> None:
        self.tick += 1
        heapq.heappush(self.events, (at, kind, self.tick, nid, pool, done, outcome))

    def _finish(self, nid: str, pool: str, done: Attempt, outcome: Outcome) -> None:
        self.free[pool] += 1
        self.running -= 1
        self.result.attempts.append(done)
        reason = outcome.reason or ("exit" if not outcome.ok else None)
        failure_class = outcome.failure_class or ("unknown" if not outcome.ok else None)
        verdict = judge(outcome.ok, reason, failure_class, outcome.overload)
        self.guards.ended(
            pool, self.downstream[nid], verdict, now=self.now, started_at=done.start_s,
            ceiling=self.limit,
        )  # fmt: skip
        if not done.ok:
            decision = next_attempt(
                done.attempt, self.graph.nodes[nid].retries, reason, failure_class,
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
