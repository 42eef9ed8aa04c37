"""How the attempts of the last hour ended, in one-minute buckets: the error rate the health
check reports. Kept in memory by the server that ran them (it starts empty at each start)."""

from __future__ import annotations

from collections import OrderedDict

BUCKET_S = 60.0
WINDOW_S = 3600.0


class RecentOutcomes:
    """Succeeded and failed attempts per minute, for the last WINDOW_S seconds."""

    def __init__(self) -> None:
        # minute -> [attempts, failed], oldest first
        self._buckets: OrderedDict[int, list[int]] = OrderedDict()

    def ended(self, ok: bool, now: float) -> None:
        minute = int(now // BUCKET_S)
        bucket = self._buckets.get(minute)
        if bucket is None:
            bucket = self._buckets[minute] = [0, 0]
            self._forget(now)
        bucket[0] += 1
        if not ok:
            bucket[1] += 1

    def counts(self, now: float) -> tuple[int, int]:
        """(attempts, failed) that ended in the last WINDOW_S seconds."""
        self._forget(now)
        attempts = sum(b[0] for b in self._buckets.values())
        return attempts, sum(b[1] for b in self._buckets.values())

    def _forget(self, now: float) -> None:
        oldest = int((now - WINDOW_S) // BUCKET_S)
        while self._buckets and next(iter(self._buckets)) <= oldest:
            self._buckets.popitem(last=False)
