"""Live fan-out of committed events to subscribers (server-sent events, MCP progress).

Events reach subscribers only after the store has committed them, so nothing is reported
that a crash could take back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

Row = dict[str, Any]
QUEUE_LIMIT = 10_000


class Subscription:
    """One listener: the events of one task, or of all tasks."""

    def __init__(self, bus: EventBus, task_id: str | None) -> None:
        self.bus = bus
        self.task_id = task_id
        self.queue: asyncio.Queue[Row] = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = False

    def offer(self, row: Row) -> None:
        if self.task_id is not None and row.get("task_id") != self.task_id:
            return
        try:
            self.queue.put_nowait(row)
        except asyncio.QueueFull:
            # A listener this far behind gets told so, rather than holding memory hostage.
            self.overflowed = True

    async def next(self, timeout_s: float) -> Row | None:
        """The next event, or None when `timeout_s` passes without one."""
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            if timeout_s <= 0:
                return None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout_s)
        except TimeoutError:
            return None

    def close(self) -> None:
        self.bus.subscribers.discard(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[Row]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Row]:
        while True:
            yield await self.queue.get()


class EventBus:
    """Subscribers on the event loop; the store's writer thread publishes into it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.subscribers: set[Subscription] = set()

    def subscribe(self, task_id: str | None = None) -> Subscription:
        sub = Subscription(self, task_id)
        self.subscribers.add(sub)
        return sub

    def publish_threadsafe(self, rows: list[Row]) -> None:
        """Called by the store after each commit, from its writer thread."""
        if self.subscribers and rows and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.publish, rows)

    def publish(self, rows: list[Row]) -> None:
        for sub in tuple(self.subscribers):
            for row in rows:
                sub.offer(row)
