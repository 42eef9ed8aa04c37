"""The MCP event store's contract (the SDK's EventStore, per session scope), run against every
implementation: in process and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from mcp.server.streamable_http import EventMessage
from mcp_types import JSONRPCNotification, JSONRPCResponse

from reynolds.adapters.event_store.base import ScopedEventStore
from reynolds.adapters.event_store.memory import MemoryEventStore
from reynolds.adapters.event_store.redis import RedisEventStore
from reynolds.adapters.redis_link import RedisLink

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Session:
    """The scope provider: which session is being served."""

    def __init__(self) -> None:
        self.current = "alice"

    def __call__(self) -> str:
        return self.current


@pytest.fixture
def session() -> Session:
    return Session()


StoreFactory = Callable[..., ScopedEventStore]


@pytest.fixture(params=["memory", "redis"])
async def make_store(
    request: pytest.FixtureRequest, session: Session
) -> AsyncIterator[StoreFactory]:
    made: list[ScopedEventStore] = []

    def make(**options: Any) -> ScopedEventStore:
        if request.param == "memory":
            store: ScopedEventStore = MemoryEventStore(scope=session, **options)
        else:
            url: str = request.getfixturevalue("redis_url")
            store = RedisEventStore(
                RedisLink.from_url(url, "MCP event store"),
                scope=session,
                prefix=request.getfixturevalue("redis_prefix"),
                **options,
            )
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


@pytest.fixture
def store(make_store: StoreFactory) -> ScopedEventStore:
    return make_store()


def progress(n: int) -> JSONRPCNotification:
    return JSONRPCNotification(
        jsonrpc="2.0",
        method="notifications/progress",
        params={"progressToken": "t", "progress": n},
    )


async def replay(store: ScopedEventStore, after: str) -> tuple[str | None, list[EventMessage]]:
    seen: list[EventMessage] = []

    async def collect(event: EventMessage) -> None:
        seen.append(event)

    return await store.replay_events_after(after, collect), seen


async def test_a_replay_sends_the_streams_later_events_in_order_and_names_the_stream(
    store: ScopedEventStore,
) -> None:
    first = await store.store_event("7", progress(0))
    later = [await store.store_event("7", progress(n)) for n in (1, 2)]
    result = JSONRPCResponse(jsonrpc="2.0", id=7, result={"status": "succeeded"})
    last = await store.store_event("7", result)

    stream, events = await replay(store, first)

    assert stream == "7"
    assert [e.event_id for e in events] == [*later, last]
    assert [e.message for e in events] == [progress(1), progress(2), result]


async def test_priming_events_hold_a_place_but_are_never_sent(store: ScopedEventStore) -> None:
    priming = await store.store_event("7", None)
    await store.store_event("7", None)
    note = await store.store_event("7", progress(1))
    stream, events = await replay(store, priming)
    assert stream == "7" and [e.event_id for e in events] == [note]


async def test_replaying_after_the_newest_event_sends_nothing_but_names_the_stream(
    store: ScopedEventStore,
) -> None:
    newest = await store.store_event("7", progress(1))
    assert await replay(store, newest) == ("7", [])


async def test_event_ids_are_unique_and_other_streams_are_not_replayed(
    store: ScopedEventStore,
) -> None:
    ids = [await store.store_event(stream, progress(n)) for n, stream in enumerate("abab")]
    assert len(set(ids)) == 4
    stream, events = await replay(store, ids[0])
    assert stream == "a" and [e.event_id for e in events] == [ids[2]]


async def test_another_session_replays_nothing_even_with_the_same_stream_id(
    store: ScopedEventStore, session: Session
) -> None:
    alices = await store.store_event("1", progress(0))
    await store.store_event("1", progress(1))
    session.current = "bob"
    bobs = await store.store_event("1", progress(100))
    await store.store_event("1", progress(101))

    assert await replay(store, alices) == (None, [])  # bob asking with alice's id
    stream, events = await replay(store, bobs)
    assert stream == "1" and [e.message for e in events] == [progress(101)]


async def test_an_unknown_or_malformed_event_id_replays_nothing(store: ScopedEventStore) -> None:
    real = await store.store_event("1", progress(0))
    scope, stream, _ = real.split(".")
    for bogus in ("", "nonsense", f"{scope}.{stream}.12345-0", f"{scope}.0000000000000000.1"):
        assert await replay(store, bogus) == (None, [])


async def test_each_stream_keeps_its_newest_events_and_an_evicted_one_replays_nothing(
    make_store: StoreFactory,
) -> None:
    store = make_store(events_per_stream=3)
    ids = [await store.store_event("1", progress(n)) for n in range(5)]
    assert await replay(store, ids[1]) == (None, [])  # trimmed: the rest would hide a gap
    stream, events = await replay(store, ids[2])
    assert stream == "1" and [e.event_id for e in events] == ids[3:]
