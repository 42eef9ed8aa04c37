"""The scheduler's guards as one state machine (pure): a circuit breaker per pool and per
downstream, an AIMD limit per overloaded downstream, and the routing that heeds them. The
dispatcher (services/guards.py adds events, audit and metrics to each change) and the
simulator (core/simulator.py, in simulated time) drive this same code.

Who is to blame for a failure that says something is unwell (core/breakers.counts_against):
- a remote downstream (an HTTP host, an MCP server, the LLM endpoint) when the action called
  one: its breaker counts the failure, whichever pool made the call;
- otherwise the pool the action ran on (a command, a callable, a lost worker); an executable's
  own breaker counts such failures only once they come from more than one pool, since one
  pool failing with every command is that pool's fault, and a command failing on every pool
  is the command's.

While nothing is wrong, every pool's breaker is closed, no downstream has a breaker or a
limiter, and a driver asks nothing of this but `started` and `ended`. Time is passed in;
`_transitioned` and `_limit_changed` are where a driver hears of changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reynolds.core.breakers import Breaker, BreakerRules, BreakerState, Transition, counts_against
from reynolds.core.downstreams import Overload
from reynolds.core.limiter import Limiter
from reynolds.core.models import Strategy
from reynolds.core.planning import PoolStats, place
from reynolds.core.routing import RoutingDecision

# Downstream breakers kept; past it, closed ones with no failures in a row are forgotten.
MAX_DOWNSTREAMS = 1000


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one ended attempt says about its pool and downstream.

    `failed`: it failed in a way that says they are unwell (core/breakers.counts_against);
    `overload`: the downstream said "not now"; `untold`: it ended without an answer (cancelled,
    denied before it ran). Otherwise they answered, whatever the work's own outcome."""

    failed: bool = False
    overload: Overload | None = None
    untold: bool = False


ANSWERED = Verdict()
# Attempts that ended before they could tell anything of their pool or downstream.
UNTOLD_REASONS = frozenset({"cancelled", "denied"})


def judge(
    ok: bool,
    reason: str | None,
    failure_class: str | None,
    overload: Overload | None,
    *,
    lost: bool = False,
) -> Verdict:
    """What an ended attempt says of its pool and downstream: nothing when it succeeded or
    never ran, "not now" when the downstream said it is overloaded, else whether it failed in
    a way that says they are unwell (`lost`: a worker stopped answering mid-attempt)."""
    if ok:
        return ANSWERED
    if reason in UNTOLD_REASONS:
        return Verdict(untold=True)
    if overload is not None:
        return Verdict(overload=overload)
    return Verdict(failed=lost or counts_against(failure_class, reason))


class Guarding:
    """Breakers and limiters: which pool and which downstream may take another attempt now,
    and what an ended attempt teaches them."""

    def __init__(self, rules: BreakerRules, pools: Iterable[str], *, adaptive: bool) -> None:
        self.rules = rules
        self.adaptive = adaptive
        self.pools = {p: Breaker(p, rules) for p in pools}
        self.downstreams: dict[str, Breaker] = {}
        self.limiters: dict[str, Limiter] = {}
        self.inflight: Counter[str] = Counter()
        # Per executable: the pools of its current run of failures, and how many of them its
        # breaker has not been told yet (it is told once a second pool fails too).
        self._streak: dict[str, set[str]] = {}
        self._untold: Counter[str] = Counter()
        # Pools whose breaker is not closed, and downstreams with a breaker that is not closed
        # or a limiter: the only ones a driver has to ask about.
        self.guarded_pools: set[str] = set()
        self.guarded: set[str] = set()

    # -- hooks for a driver ---------------------------------------------------------------

    def _transitioned(self, transition: Transition, pool: str, key: str) -> None:
        """A breaker of `pool` (or of downstream `key`) changed state."""

    def _limit_changed(self, key: str, before: float | None, limit: float | None) -> None:
        """The limit on downstream `key` changed (None: it has no limiter any more)."""

    # -- what may start -------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether anything is guarded: only then does routing need `route`."""
        return bool(self.guarded or self.guarded_pools)

    def pool_blocked(self, pool: str, now: float) -> bool:
        """Whether `pool` takes no attempt now (its breaker is open, or half-open probing)."""
        return pool in self.guarded_pools and not self.pools[pool].admits(now)

    def probes_due(self, now: float) -> list[str]:
        """Open pools past their cool-down: the next attempt routed there is their probe."""
        return [
            p
            for p in self.guarded_pools
            if self.pools[p].state is BreakerState.OPEN and self.pools[p].admits(now)
        ]

    def downstream_admits(self, key: str | None, now: float) -> bool:
        """Whether one more attempt may go to downstream `key` now."""
        if key is None or key not in self.guarded:
            return True
        breaker = self.downstreams.get(key)
        if breaker is not None and not breaker.admits(now):
            return False
        limiter = self.limiters.get(key)
        return limiter is None or limiter.admits(self.inflight[key], now)

    def route(
        self,
        agent: str | None,
        capability: Mapping[str, float],
        key: str | None,
        free: Mapping[str, int],
        replicas: Mapping[str, int],
        strategy: Strategy,
        turn: int,
        stats: PoolStats | None,
        now: float,
    ) -> RoutingDecision | None:
        """Routing while a breaker is not closed or a downstream is limited: work for a
        downstream that takes nothing now waits (None); an open pool takes nothing but its
        probe; otherwise `planning.place` over the pools that take work."""
        if not self.downstream_admits(key, now):
            return None
        usable: Mapping[str, int] = free
        if self.guarded_pools:
            best = max(capability.values(), default=0.0)
            for pool in self.probes_due(now):
                fits = agent == pool or (agent is None and capability.get(pool, 0.0) >= best)
                if fits and free.get(pool, 0) > 0:
                    return RoutingDecision(pool, {pool: 1.0}, strategy.selection, "half-open probe")
            usable = {p: 0 if self.pool_blocked(p, now) else n for p, n in free.items()}
        return place(agent, capability, usable, replicas, strategy, turn, stats)

    def next_wake(self, now: float) -> float | None:
        """The earliest time something held back may go: a cool-down or a Retry-After."""
        times = [
            at
            for at in (
                *(self.pools[p].reopens_at() for p in self.guarded_pools),
                *(b.reopens_at() for k, b in self.downstreams.items() if k in self.guarded),
                *(lim.hold_until for lim in self.limiters.values()),
            )
            if at is not None and at > now
        ]
        return min(times, default=None)

    # -- attempts -------------------------------------------------------------------------

    def placed(self, key: str | None) -> None:
        """An attempt against `key` was given a slot: it counts as in flight from now, so the
        next placement in the same pass sees it."""
        if key is not None:
            self.inflight[key] += 1

    def started(self, pool: str, key: str | None, now: float) -> None:
        """An attempt starts on `pool` against `key` (a probe, when a breaker lets one by)."""
        if pool in self.guarded_pools:
            self.pools[pool] = self._moved(self.pools[pool].start(now), pool=pool)
        if key is not None and key in self.downstreams:
            self.downstreams[key] = self._moved(self.downstreams[key].start(now), key=key)

    def ended(
        self,
        pool: str,
        key: str | None,
        verdict: Verdict,
        *,
        now: float,
        started_at: float | None,
        ceiling: int,
    ) -> None:
        """An attempt ended: book it on the pool's and the downstream's breaker and limiter."""
        running = 0
        if key is not None:
            running = self.inflight[key]
            self.inflight[key] = running - 1
        remote = key is not None and not key.startswith("exec:")
        self._book_pool(pool, verdict, now, remote)
        if key is None:
            return
        self._book_downstream(key, pool, verdict, now, remote)
        if verdict.overload is not None:
            self._overloaded(key, verdict.overload, now, started_at, running, ceiling)
        elif not verdict.untold and key in self.limiters:
            self._relieved(key, now)

    def _book_pool(self, pool: str, verdict: Verdict, now: float, remote: bool) -> None:
        breaker = self.pools.get(pool)
        if breaker is None:
            return
        failed = verdict.failed and not remote
        if verdict.untold:
            self.pools[pool] = breaker.abandon()
        elif failed or breaker.state is not BreakerState.CLOSED or breaker.recent:
            # A closed breaker with nothing in its window and a success: nothing to keep.
            self.pools[pool] = self._moved(breaker.record(not failed, now), pool=pool)

    def _book_downstream(
        self, key: str, pool: str, verdict: Verdict, now: float, remote: bool
    ) -> None:
        breaker = self.downstreams.get(key)
        if verdict.untold:
            if breaker is not None:
                self.downstreams[key] = breaker.abandon()
            return
        failures = 1 if verdict.failed else 0
        if not remote:
            failures = self._executable_failures(key, pool, verdict.failed)
        if breaker is None:
            if not failures:
                return  # a downstream that never failed has no breaker to keep
            if len(self.downstreams) >= MAX_DOWNSTREAMS:
                self._forget_healthy()
            breaker = Breaker(key, self.rules)
        if not failures:
            self.downstreams[key] = self._moved(breaker.record(True, now), key=key)
        for _ in range(failures):
            breaker = self._moved(breaker.record(False, now), key=key)
            self.downstreams[key] = breaker

    def _executable_failures(self, key: str, pool: str, failed: bool) -> int:
        """The failures to tell an executable's breaker now: none until its current run of
        failures spans two pools, then all of them."""
        if not failed:
            self._streak.pop(key, None)
            self._untold.pop(key, None)
            return 0
        pools = self._streak.setdefault(key, set())
        pools.add(pool)
        if len(pools) < 2:
            self._untold[key] += 1
            return 0
        return 1 + self._untold.pop(key, 0)

    def _forget_healthy(self) -> None:
        for name in [k for k, b in self.downstreams.items() if k not in self.guarded]:
            if self.downstreams[name].failures_in_row == 0:
                del self.downstreams[name]

    def _overloaded(
        self,
        key: str,
        overload: Overload,
        now: float,
        started_at: float | None,
        running: int,
        ceiling: int,
    ) -> None:
        if not self.adaptive:
            return
        before = self.limiters.get(key)
        limiter = (before or Limiter.starting(max(ceiling, 1))).overloaded(
            now, overload.retry_after_s, started_at=started_at, running=running
        )
        self.limiters[key] = limiter
        self.guarded.add(key)
        self._limit_changed(key, before.limit if before else None, limiter.limit)

    def _relieved(self, key: str, now: float) -> None:
        before = self.limiters[key]
        limiter = before.succeeded()
        if limiter.idle and limiter.hold_until <= now:
            del self.limiters[key]
            self._unguard(key)
            self._limit_changed(key, before.limit, None)
        else:
            self.limiters[key] = limiter
            self._limit_changed(key, before.limit, limiter.limit)

    def _unguard(self, key: str) -> None:
        breaker = self.downstreams.get(key)
        if key not in self.limiters and (breaker is None or breaker.state is BreakerState.CLOSED):
            self.guarded.discard(key)

    def _moved(
        self, step: tuple[Breaker, Transition | None], *, pool: str = "", key: str = ""
    ) -> Breaker:
        breaker, transition = step
        if transition is None:
            return breaker
        closed = transition.after is BreakerState.CLOSED
        if pool:
            (self.guarded_pools.discard if closed else self.guarded_pools.add)(pool)
        elif closed:
            self._unguard(key)
        else:
            self.guarded.add(key)
        self._transitioned(transition, pool, key)
        return breaker

    # -- views ----------------------------------------------------------------------------

    def pool_state(self, pool: str) -> str:
        breaker = self.pools.get(pool)
        return str(breaker.state) if breaker is not None else str(BreakerState.CLOSED)

    def pool_view(self, pool: str, now: float) -> dict[str, object]:
        breaker = self.pools.get(pool) or Breaker(pool, self.rules)
        return breaker.view(now)

    def downstream_views(self, now: float) -> list[dict[str, object]]:
        """Every downstream with a breaker that has seen failures or a limiter."""
        names = sorted(
            {k for k, b in self.downstreams.items() if b.failures_in_row or k in self.guarded}
            | set(self.limiters)
        )
        out: list[dict[str, object]] = []
        for name in names:
            breaker = self.downstreams.get(name) or Breaker(name, self.rules)
            limiter = self.limiters.get(name)
            out.append(
                {
                    "downstream": name,
                    "inFlight": self.inflight[name],
                    "breaker": breaker.view(now),
                    "limiter": limiter.view(now) if limiter is not None else None,
                }
            )
        return out
