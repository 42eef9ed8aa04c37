"""Adaptive concurrency per downstream: additive increase, multiplicative decrease (AIMD).

When a downstream says it is overloaded (HTTP 429 or 503, an MCP error saying so, an exit
code or output pattern configured for an executable), its limit is halved, never below
`floor`; each success adds 1/limit, so the limit grows by about one per round of `limit`
successes, never above `ceiling` (the task's maxConcurrency). A `Retry-After` holds every
new attempt to that downstream until it has passed. Time is passed in.
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

    @classmethod
    def starting(cls, ceiling: int, floor: int = 1) -> Limiter:
        """A limiter that starts wide open: it learns only from overload."""
        return cls(ceiling=float(ceiling), limit=float(ceiling), floor=float(floor))

    def admits(self, running: int, now: float) -> bool:
        """Whether one more attempt may start with `running` already under way."""
        return now >= self.hold_until and running < int(self.limit)

    def succeeded(self) -> Limiter:
        return replace(self, limit=min(self.ceiling, self.limit + 1.0 / max(self.limit, 1.0)))

    def overloaded(self, now: float, retry_after_s: float | None = None) -> Limiter:
        hold = now + retry_after_s if retry_after_s and retry_after_s > 0 else self.hold_until
        return replace(
            self,
            limit=max(self.floor, self.limit * DECREASE),
            hold_until=max(self.hold_until, hold),
            overloads=self.overloads + 1,
        )

    def view(self, now: float) -> dict[str, object]:
        return {
            "limit": round(self.limit, 3),
            "ceiling": self.ceiling,
            "heldForSeconds": max(0.0, round(self.hold_until - now, 3)),
            "overloads": self.overloads,
        }
