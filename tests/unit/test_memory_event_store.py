"""The in-process MCP event store with a fake clock: what only it does (bounds in bytes and
time, its ids); the behaviour both stores share is in tests/integration/test_event_store.py."""

from __future__ import annotations

import pytest
from mcp.server.streamable_http import EventMessage
from mcp_types import JSONRPCNotification

from reynolds.adapters.event_store.base import EventRef, encode
from reynolds.adapters.event_store.memory import MemoryEventStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def note(n: int) -> JSONRPCNotification:
    return JSONRPCNotification(jsonrpc="2.0", method="notifications/progress", params={"n": n})


async def replayed(store: MemoryEventStore, after: str) -> tuple[str | None, list[EventMessage]]:
    seen: list[EventMessage] = []

    async def collect(event: EventMessage) -> None:
        seen.append(event)

    return await store.replay_events_after(after, collect), seen


async def test_a_stream_idle_past_its_time_to_live_replays_nothing() -> None:
    clock = Clock()
    store = MemoryEventStore(ttl_s=60, clock=clock)
    first = await store.store_event("1", note(1))
    await store.store_event("1", note(2))
    clock.now += 59
    assert (await replayed(store, first))[0] == "1"
    clock.now += 61
    assert await replayed(store, first) == (None, [])
    assert store.size_bytes == 0


async def test_over_its_byte_budget_the_stream_written_longest_ago_goes_first() -> None:
    size = len(encode(note(1)))
    store = MemoryEventStore(max_bytes=4 * size, clock=Clock())
    old = await store.store_event("old", note(1))
    new = await store.store_event("new", note(2))
    for n in range(3):
        await store.store_event("new", note(n))
    assert store.size_bytes == 4 * size
    assert (await replayed(store, old))[0] is None
    assert (await replayed(store, new))[0] == "new"


async def test_one_stream_over_the_budget_keeps_its_newest_events() -> None:
    size = len(encode(note(1)))
    store = MemoryEventStore(max_bytes=3 * size, clock=Clock())
    ids = [await store.store_event("1", note(n)) for n in range(10)]
    assert store.size_bytes == 3 * size
    assert (await replayed(store, ids[0]))[0] is None
    stream, events = await replayed(store, ids[-2])
    assert stream == "1" and [e.event_id for e in events] == [ids[-1]]


async def test_ids_are_safe_in_a_header_whatever_the_stream_id() -> None:
    store = MemoryEventStore(clock=Clock())
    for stream_id in ("a\r\nb", "\ud800", "x" * 10_000, ""):
        event_id = await store.store_event(stream_id, note(1))
        assert EventRef.parse(event_id) is not None
        assert event_id.isascii() and event_id.isprintable() and len(event_id) < 120
        later = await store.store_event(stream_id, note(2))
        assert (await replayed(store, event_id))[0] == stream_id
        assert [e.event_id for e in (await replayed(store, event_id))[1]] == [later]


async def test_ids_that_this_store_never_gave_out_replay_nothing() -> None:
    store = MemoryEventStore(clock=Clock())
    real = await store.store_event("1", note(1))
    await store.store_event("1", note(2))
    scope, stream, _ = real.split(".")
    for bogus in ("", "garbage", "../../etc", f"{scope}.{stream}.999", f"{real}.1", real + "\n"):
        assert await replayed(store, bogus) == (None, [])
