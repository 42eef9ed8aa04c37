"""Adaptive concurrency per downstream: additive increase, multiplicative decrease (AIMD).

When a downstream says it is overloaded (HTTP 429 or 503, an MCP error saying so, an exit
code or output pattern configured for an executable), its limit is halved, never below
`floor`; each success adds 1/limit, so the limit grows by about one per round of `limit`
successes, never above `ceiling` (the task's maxConcurrency). A `Retry-After` holds every
new attempt to that downstream until it has passed. Time is passed in.

As in TCP, one overload halves the limit once per round: the answers of attempts that started
before the latest decrease tell of the old limit, so they do not halve it again (twelve
attempts answered 429 together are one signal, not twelve). The first decrease starts from
the concurrency the downstream had, not from the ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DECREASE = 0.5


@dataclass(frozen=True, slots=True)
class Limiter:
    """How many attempts may run at once against one downstream."""

    ceiling: float
    limit: float
    floor: float = 1.0
    hold_until: float = 0.0
    overloads: int = 0
    decreased_at: float = float("-inf")

    @classmethod
    def starting(cls, ceiling: int, floor: int = 1) -> Limiter:
        """A limiter that starts wide open: it learns only from overload."""
        return cls(ceiling=float(ceiling), limit=float(ceiling), floor=float(floor))

    def admits(self, running: int, now: float) -> bool:
        """Whether one more attempt may start with `running` already under way."""
        return now >= self.hold_until and running < int(self.limit)

    def succeeded(self) -> Limiter:
        return replace(self, limit=min(self.ceiling, self.limit + 1.0 / max(self.limit, 1.0)))

    @property
    def idle(self) -> bool:
        """Back at its ceiling: it limits nothing a task's own cap would not."""
        return self.limit >= self.ceiling

    def overloaded(
        self,
        now: float,
        retry_after_s: float | None = None,
        *,
        started_at: float | None = None,
        running: int | None = None,
    ) -> Limiter:
        """An attempt that started at `started_at` was answered "overloaded" with `running`
        attempts under way (this one included)."""
        hold = now + retry_after_s if retry_after_s and retry_after_s > 0 else self.hold_until
        held = max(self.hold_until, hold)
        if started_at is not None and started_at < self.decreased_at:
            # Sent under the old limit: already answered by the latest decrease.
            return replace(self, hold_until=held, overloads=self.overloads + 1)
        base = self.limit if running is None else min(self.limit, float(max(running, 1)))
        return replace(
            self,
            limit=max(self.floor, base * DECREASE),
            hold_until=held,
            overloads=self.overloads + 1,
            decreased_at=now,
        )

    def view(self, now: float) -> dict[str, object]:
        return {
            "limit": round(self.limit, 3),
            "ceiling": self.ceiling,
            "heldForSeconds": max(0.0, round(self.hold_until - now, 3)),
            "overloads": self.overloads,
        }
