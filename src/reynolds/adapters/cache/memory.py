"""The in-process cache: bounded, least recently used first out, every entry expiring."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from reynolds.adapters.cache.values import encode


class MemoryCache:
    """At most `max_entries` values and `max_bytes` of their JSON; when full, the least
    recently used entry goes. An expired entry is never returned."""

    def __init__(
        self,
        *,
        max_entries: int = 1024,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()  # expires at, JSON
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, text = entry
        if self.clock() >= expires_at:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return json.loads(text)

    async def set(self, key: str, value: Any, ttl_s: float) -> None:
        text = encode(value, ttl_s)
        self._drop(key)
        if len(text) > self.max_bytes:
            return  # would evict everything else and still not fit
        now = self.clock()
        self._entries[key] = (now + ttl_s, text)
        self._bytes += len(text)
        self._evict(now)

    async def ping(self) -> str | None:
        return None

    async def aclose(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _evict(self, now: float) -> None:
        """Expired entries at the old end first, then the least recently used while over."""
        while self._entries:
            oldest, (expires_at, _) = next(iter(self._entries.items()))
            full = len(self._entries) > self.max_entries or self._bytes > self.max_bytes
            if not full and expires_at > now:
                return
            self._drop(oldest)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[1])
