"""Server-sent events: `GET /mcp/events` (every task) and `GET /tasks/{taskId}/events`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from reynolds.bootstrap import Container
from reynolds.core.models import FINISHED
from reynolds.core.reporting import iso
from reynolds.errors import ReynoldsError

KEEPALIVE_S = 15.0
# How often a stream of a task another server runs reads the store.
TAIL_POLL_S = 0.5
FINISHED_KINDS = {"task_finished"}


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One server-sent event; `data` as one line of JSON."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


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
            yield sse(str(row.get("kind")), _wire(row), row.get("seq"))
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
            else:
                yield sse(
                    "snapshot",
                    {"tasks": await c.engine.list_tasks(None, 50), "pools": c.engine.pool_status()},
                )
            while True:
                row = await sub.next(KEEPALIVE_S)
                if row is None:
                    yield b": keep-alive\n\n"
                    continue
                if sub.overflowed:
                    yield sse("overflow", {"error": "this listener fell behind; reconnect"})
                    return
                yield sse(str(row.get("kind")), _wire(row), row.get("seq"))
                if task_id is not None and row.get("kind") in FINISHED_KINDS:
                    yield sse("end", {"taskId": task_id})
                    return
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
