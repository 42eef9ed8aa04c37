"""Token buckets, one per caller: a sustained rate with a burst on top.

Time is an argument, so the policy is tested with a fake clock and shared by whatever edge
calls it. Not thread-safe by design: the HTTP edge calls it from the event loop only.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

# Enough for every token and a crowd of client addresses; past it, idle buckets go first.
DEFAULT_MAX_KEYS = 10_000


class TokenBuckets:
    """`take(key, now)` spends one token of `key`'s bucket; each refills at `rate_per_s` up
    to `burst`. A new key starts with a full bucket."""

    __slots__ = ("_buckets", "burst", "max_keys", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: int, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self.max_keys = max_keys
        # key → [tokens left, time of the last update]; a list so it is updated in place.
        self._buckets: dict[Hashable, list[float]] = {}

    def take(self, key: Hashable, now: float) -> float:
        """0.0 when the request may go ahead, else the seconds until a token is back."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._evict(now)
            self._buckets[key] = [self.burst - 1.0, now]
            return 0.0
        tokens = bucket[0] + max(0.0, now - bucket[1]) * self.rate_per_s
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate_per_s

    def __len__(self) -> int:
        return len(self._buckets)

    def _evict(self, now: float) -> None:
        """Forget buckets that have refilled (they would start full anyway); if that frees
        less than a quarter, the oldest down to half, so eviction stays O(1) amortised."""
        full_after_s = self.burst / self.rate_per_s
        for key in [k for k, (_, last) in self._buckets.items() if now - last >= full_after_s]:
            del self._buckets[key]
        excess = len(self._buckets) - self.max_keys // 2
        if len(self._buckets) > self.max_keys * 3 // 4:
            for key in list(self._buckets)[:excess]:
                del self._buckets[key]


def retry_after_s(wait_s: float) -> int:
    """A `Retry-After` value: whole seconds, at least 1."""
    return max(1, math.ceil(wait_s))
