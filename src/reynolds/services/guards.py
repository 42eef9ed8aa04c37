"""The scheduler's breakers and limiters (core/guarding.py), told to the world: each change of
a breaker's state is an event, an audit record, a gauge and a log line, and each change of a
downstream's limit a gauge. The state machine itself is core's, shared with the simulator.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from reynolds.core.breakers import BreakerRules, BreakerState, Transition
from reynolds.core.guarding import ANSWERED, Guarding, Verdict
from reynolds.core.simulator import GuardPolicy
from reynolds.services.ports import SchedulerMetrics, Store
from reynolds.settings import Settings

log = logging.getLogger("reynolds.engine")

# Transitions kept for the loop-prevention resource, newest last.
RECENT_TRANSITIONS = 100

__all__ = ["ANSWERED", "Guards", "Verdict", "breaker_rules", "guard_policy"]


def breaker_rules(settings: Settings) -> BreakerRules:
    """The breakers' rules as the server's settings make them."""
    return BreakerRules(
        consecutive=settings.breaker_failures, cooldown_s=settings.breaker_cooldown_s
    )


def guard_policy(settings: Settings) -> GuardPolicy:
    """The same, for a simulation of the server."""
    return GuardPolicy(breaker_rules(settings), settings.adaptive_concurrency)


class Guards(Guarding):
    """The breakers and limiters the dispatch loop consults, on the server's clock."""

    def __init__(
        self,
        *,
        settings: Settings,
        pools: list[str],
        store: Store,
        metrics: SchedulerMetrics,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(breaker_rules(settings), pools, adaptive=settings.adaptive_concurrency)
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_TRANSITIONS)
        for pool in pools:
            metrics.breaker_open(pool, None, False)

    def _limit_changed(self, key: str, before: float | None, limit: float | None) -> None:
        self.metrics.concurrency_limit(key, limit)
        if limit is not None and (before is None or limit < before):
            log.info("%s overloaded: concurrency %s → %g", key, before or "open", limit)

    def _transitioned(self, transition: Transition, pool: str, key: str) -> None:
        """An event, an audit record, the gauge and a log line for a change of state."""
        subject = {"agentType": pool} if pool else {"downstream": key}
        data = {
            **subject,
            "from": str(transition.before),
            "to": str(transition.after),
            "reason": transition.reason,
        }
        self.metrics.breaker_open(
            pool or None, key or None, transition.after is not BreakerState.CLOSED
        )
        self.store.add_event(
            {"task_id": "", "subtask_id": None, "kind": "circuit_breaker", "data": data,
             "at": transition.at}
        )  # fmt: skip
        self.store.add_audit(
            {
                "at": transition.at,
                "kind": "breaker",
                "pool": (pool or key)[:100],
                "decision": str(transition.after),
                "outcome": str(transition.before),
                "detail": transition.reason,
            }
        )
        self.recent.append({"at": transition.at, **data})
        self.metrics.audited("breaker", str(transition.after))
        log.warning(
            "circuit breaker of %s: %s → %s (%s)",
            pool or key,
            transition.before,
            transition.after,
            transition.reason,
        )
