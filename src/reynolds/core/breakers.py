"""Circuit breakers as values: closed → open → half-open → closed, with time passed in.

A breaker guards a pool or a downstream (an executable, an HTTP host, an MCP server). It
opens after `consecutive` failures in a row, or when at least `window_min` of the attempts of
the last `window_s` seconds ended and `window_ratio` of them failed. Open, it lets nothing
through for `cooldown_s`; then it is half-open and lets one probe through: a success closes
it, a failure opens it again for twice as long (up to `max_cooldown_s`).

What counts as a failure is the caller's choice (`counts_against` is the scheduler's): a
breaker is about whether the pool or the downstream is well, not whether the work succeeded.

Every method returns a new breaker; `Transition` says what changed, for events, audit and
metrics. The window is kept as one-second buckets, so recording an attempt costs the same at
one attempt a minute or thousands a second. Nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

# Failure classes (core/failures.py) that say the pool or the downstream is unwell: it did not
# answer in time, could not be reached, or ran out of something. A failure of the work itself
# (a test that exits 1, an HTTP 404) shows that it answered.
TRIPPING_CLASSES = frozenset({"timeout", "connection", "resource"})
# Bucket width of the failure window, in seconds.
BUCKET_S = 1.0


def counts_against(failure_class: str | None, reason: str | None) -> bool:
    """Whether a failed attempt counts against its pool's and downstream's breakers: a
    tripping class, or the runner itself failing (reason `error`: a lost worker, a crash)."""
    return reason == "error" or failure_class in TRIPPING_CLASSES


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerRules:
    """When a breaker opens and how long it stays open."""

    consecutive: int = 5
    window_s: float = 60.0
    window_min: int = 10
    window_ratio: float = 0.5
    cooldown_s: float = 30.0
    max_cooldown_s: float = 300.0


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of state, and why."""

    name: str
    before: BreakerState
    after: BreakerState
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class Breaker:
    """One guarded thing's breaker."""

    name: str
    rules: BreakerRules = field(default_factory=BreakerRules)
    state: BreakerState = BreakerState.CLOSED
    failures_in_row: int = 0
    # (bucket start, attempts, failures) within the window, oldest first.
    recent: tuple[tuple[float, int, int], ...] = ()
    opened_at: float | None = None
    cooldown_s: float = 0.0
    probing: bool = False

    def admits(self, now: float) -> bool:
        """Whether an attempt may start now (a half-open breaker admits its one probe)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            return self.opened_at is not None and now >= self.opened_at + self.cooldown_s
        return not self.probing

    def reopens_at(self) -> float | None:
        """When an open breaker lets its probe through (None unless open)."""
        if self.state is not BreakerState.OPEN or self.opened_at is None:
            return None
        return self.opened_at + self.cooldown_s

    def start(self, now: float) -> tuple[Breaker, Transition | None]:
        """An attempt starts (call only when `admits`): an open breaker past its cool-down
        becomes half-open and this attempt is its probe."""
        if self.state is BreakerState.OPEN:
            after = replace(self, state=BreakerState.HALF_OPEN, probing=True)
            return after, self._moved(after, "cool-down over: one probe", now)
        if self.state is BreakerState.HALF_OPEN:
            return replace(self, probing=True), None
        return self, None

    def record(self, ok: bool, now: float) -> tuple[Breaker, Transition | None]:
        """An attempt ended: successes close, failures may open."""
        recent = self._window(ok, now)
        if ok:
            if self.state is BreakerState.CLOSED and self.failures_in_row == 0:
                return replace(self, recent=recent), None
            after = replace(
                self,
                state=BreakerState.CLOSED,
                failures_in_row=0,
                recent=recent,
                opened_at=None,
                cooldown_s=0.0,
                probing=False,
            )
            why = "probe succeeded" if self.state is not BreakerState.CLOSED else ""
            return after, (self._moved(after, why, now) if why else None)
        in_row = self.failures_in_row + 1
        if self.state is BreakerState.HALF_OPEN:
            cooldown = min(self.rules.max_cooldown_s, max(self.cooldown_s, 1e-9) * 2)
            return self._open(recent, in_row, cooldown, "probe failed", now)
        if self.state is BreakerState.OPEN:
            return replace(self, failures_in_row=in_row, recent=recent), None
        why = self._why_open(in_row, recent)
        if why:
            return self._open(recent, in_row, self.rules.cooldown_s, why, now)
        return replace(self, failures_in_row=in_row, recent=recent), None

    def abandon(self) -> Breaker:
        """The probe ended without telling anything (cancelled, denied): another may go."""
        return replace(self, probing=False) if self.probing else self

    def _window(self, ok: bool, now: float) -> tuple[tuple[float, int, int], ...]:
        """The window's buckets with this attempt counted, the expired ones dropped."""
        start = now - now % BUCKET_S
        recent = self.recent
        if recent and recent[0][0] + BUCKET_S <= now - self.rules.window_s:
            horizon = now - self.rules.window_s
            recent = tuple(b for b in recent if b[0] + BUCKET_S > horizon)
        failed = 0 if ok else 1
        if recent and recent[-1][0] == start:
            _, n, f = recent[-1]
            return (*recent[:-1], (start, n + 1, f + failed))
        return (*recent, (start, 1, failed))

    def _why_open(self, in_row: int, recent: Sequence[tuple[float, int, int]]) -> str:
        rules = self.rules
        if in_row >= rules.consecutive:
            return f"{in_row} failures in a row"
        total = sum(n for _, n, _ in recent)
        failed = sum(f for _, _, f in recent)
        if total >= rules.window_min and failed >= rules.window_ratio * total:
            return f"{failed} of {total} attempts failed within {rules.window_s:g} s"
        return ""

    def _open(
        self,
        recent: tuple[tuple[float, int, int], ...],
        in_row: int,
        cooldown_s: float,
        why: str,
        now: float,
    ) -> tuple[Breaker, Transition]:
        after = replace(
            self,
            state=BreakerState.OPEN,
            failures_in_row=in_row,
            recent=recent,
            opened_at=now,
            cooldown_s=cooldown_s,
            probing=False,
        )
        return after, self._moved(after, why, now)

    def _moved(self, after: Breaker, why: str, now: float) -> Transition:
        return Transition(self.name, self.state, after.state, why, now)

    def view(self, now: float) -> dict[str, object]:
        """As `get_agent_status` and the loop-prevention resource show it."""
        return {
            "state": str(self.state),
            "failuresInRow": self.failures_in_row,
            "reopensInSeconds": (
                max(0.0, round(at - now, 3)) if (at := self.reopens_at()) is not None else None
            ),
        }
