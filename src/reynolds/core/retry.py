"""Retry decisions: exponential backoff with full jitter, decided as a value."""

from __future__ import annotations

from dataclasses import dataclass

from reynolds.core.failures import retryable

# Reasons that another attempt cannot change.
NOT_RETRYABLE = frozenset(
    {"denied", "option_value", "cancelled", "interrupted", "invalid", "not_configured", "conflict"}
)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry: bool
    delay_s: float = 0.0


def decide_retry(
    attempt: int, retries: int, reason: str | None, *, base_s: float, cap_s: float, jitter: float
) -> RetryDecision:
    """After failed attempt number `attempt` (1-based), retry if the budget allows.

    `jitter` is a random number in [0, 1), passed in so the decision is reproducible;
    the delay is uniform in [0.5, 1) of min(cap, base · 2^(attempt-1)).
    """
    if reason in NOT_RETRYABLE or attempt > retries:
        return RetryDecision(False)
    ceiling = min(cap_s, base_s * (2 ** (attempt - 1)))
    return RetryDecision(True, ceiling * (0.5 + jitter / 2))


def next_attempt(
    attempt: int,
    retries: int,
    reason: str | None,
    failure_class: str | None,
    *,
    base_s: float,
    cap_s: float,
    jitter: float,
) -> RetryDecision:
    """`decide_retry`, and no retry for a failure another attempt would meet again (a missing
    file, bad input, a refused credential: core/failures.NOT_RETRYABLE)."""
    decision = decide_retry(attempt, retries, reason, base_s=base_s, cap_s=cap_s, jitter=jitter)
    if decision.retry and not retryable(failure_class or "unknown"):
        return RetryDecision(False)
    return decision
