"""Server-sent events: `GET /mcp/events` (every task) and `GET /tasks/{taskId}/events`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from reynolds.bootstrap import Container
from reynolds.core.models import FINISHED
from reynolds.core.reporting import iso
from reynolds.errors import ReynoldsError
from reynolds.services.engine import Engine
from reynolds.services.events import Subscription

KEEPALIVE_S = 15.0
# How often a stream of a task another server runs reads the store.
TAIL_POLL_S = 0.5
FINISHED_KINDS = {"task_finished"}
# The most events one read of the other servers' returns; a full page is read on at once.
ELSEWHERE_PAGE = 1000


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One server-sent event; `data` as one line of JSON."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _event(row: dict[str, Any]) -> bytes:
    """A stored or published event as a server-sent event, its `seq` as the event id."""
    return sse(str(row.get("kind")), _wire(row), row.get("seq"))


def _wire(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": row.get("seq"),
        "taskId": row.get("task_id"),
        "subtaskId": row.get("subtask_id"),
        "kind": row.get("kind"),
        "data": row.get("data"),
        "at": iso(row.get("at")),
    }


async def _tail(c: Container, task_id: str, after: int) -> AsyncIterator[bytes]:
    """The events of a task another server runs, read from the store as they are committed
    (every TAIL_POLL_S), until it ends."""
    quiet_s = 0.0
    while True:
        rows = await c.engine.stored_events(task_id, after)
        for row in rows:
            after = max(after, int(row["seq"]))
            yield _event(row)
            if row.get("kind") in FINISHED_KINDS:
                yield sse("end", {"taskId": task_id})
                return
        if rows:
            quiet_s = 0.0
            continue
        if not c.engine.runs_elsewhere(task_id):  # taken over by this server meanwhile
            snapshot = await c.engine.result(task_id)
            if snapshot["status"] in FINISHED:
                yield sse("end", {"taskId": task_id})
                return
        await asyncio.sleep(TAIL_POLL_S)
        quiet_s += TAIL_POLL_S
        if quiet_s >= KEEPALIVE_S:
            quiet_s = 0.0
            yield b": keep-alive\n\n"


class _Elsewhere:
    """The events other servers sharing the store commit, read every TAIL_POLL_S: a cursor
    per server (each commits its events in `seq` order), a later server's from `start`."""

    def __init__(self, engine: Engine, cursors: tuple[dict[str, int], int]) -> None:
        self._engine = engine
        self._after, self._start = cursors
        self.due = time.monotonic() + TAIL_POLL_S

    async def read(self) -> list[dict[str, Any]]:
        rows = await self._engine.events_elsewhere(self._after, self._start)
        for row in rows:
            self._after[str(row["server"])] = int(row["seq"])
        self.due = time.monotonic() + (0.0 if len(rows) >= ELSEWHERE_PAGE else TAIL_POLL_S)
        return rows


async def _live(
    sub: Subscription, task_id: str | None, others: _Elsewhere | None
) -> AsyncIterator[bytes]:
    """The events published on this server as they are committed, and with `others` those
    of the other servers sharing its store; a keep-alive comment after KEEPALIVE_S of quiet."""
    quiet_since = time.monotonic()
    while True:
        now = time.monotonic()
        wait = quiet_since + KEEPALIVE_S - now
        if others is not None:
            wait = min(wait, others.due - now)
        row = await sub.next(wait)
        chunks = []
        if row is not None:
            if sub.overflowed:
                yield sse("overflow", {"error": "this listener fell behind; reconnect"})
                return
            chunks.append(_event(row))
            if task_id is not None and row.get("kind") in FINISHED_KINDS:
                yield chunks[0]
                yield sse("end", {"taskId": task_id})
                return
        if others is not None and time.monotonic() >= others.due:
            chunks += [_event(r) for r in await others.read()]
        if chunks:
            for chunk in chunks:
                yield chunk
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= KEEPALIVE_S:
            yield b": keep-alive\n\n"
            quiet_since = time.monotonic()


def events_router(container: Callable[[], Container]) -> APIRouter:
    """The two streams. A client that connects mid-task first gets the state."""
    router = APIRouter()

    async def stream(task_id: str | None) -> AsyncIterator[bytes]:
        c = container()
        sub = c.bus.subscribe(task_id)
        try:
            # Subscribed before the snapshot, so nothing between the two is lost (an event
            # may arrive twice: once in the snapshot, once live).
            elsewhere = task_id is not None and c.engine.runs_elsewhere(task_id)
            if task_id is not None:
                after = await c.engine.last_event_seq(task_id) if elsewhere else 0
                snapshot = await c.engine.result(task_id)
                yield sse("snapshot", snapshot)
                if snapshot["status"] in FINISHED:
                    yield sse("end", {"taskId": task_id})
                    return
                if elsewhere:  # another server sharing the store runs it
                    async for chunk in _tail(c, task_id, after):
                        yield chunk
                    return
            others = None
            if task_id is None:
                if c.engine.shares_store:  # the other servers' events are in the store
                    others = _Elsewhere(c.engine, await c.engine.event_cursors())
                yield sse(
                    "snapshot",
                    {"tasks": await c.engine.list_tasks(None, 50), "pools": c.engine.pool_status()},
                )
            async for chunk in _live(sub, task_id, others):
                yield chunk
        except ReynoldsError as exc:
            # The answer has started: a failure (the store's, say) ends the stream with an
            # `error` event rather than a broken connection.
            yield sse("error", exc.to_dict())
        finally:
            sub.close()

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}

    @router.get("/mcp/events")
    async def all_events() -> StreamingResponse:
        return StreamingResponse(stream(None), media_type="text/event-stream", headers=headers)

    @router.get("/tasks/{task_id}/events")
    async def task_events(task_id: str) -> StreamingResponse:
        await container().engine.result(task_id)  # an unknown task is a 404, not a stream
        return StreamingResponse(stream(task_id), media_type="text/event-stream", headers=headers)

    return router
