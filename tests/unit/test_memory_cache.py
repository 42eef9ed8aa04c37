"""The in-process cache with a fake clock: expiry, LRU eviction, bounds, JSON semantics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reynolds.adapters.cache.memory import MemoryCache

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_entry_is_gone_once_its_time_to_live_has_passed() -> None:
    clock = Clock()
    cache = MemoryCache(clock=clock)
    await cache.set("k", {"a": 1}, ttl_s=30)
    clock.now += 29.9
    assert await cache.get("k") == {"a": 1}
    clock.now += 0.1
    assert await cache.get("k") is None
    assert len(cache) == 0


async def test_when_full_the_least_recently_used_entry_goes_first() -> None:
    cache = MemoryCache(max_entries=2, clock=Clock())
    await cache.set("a", 1, ttl_s=60)
    await cache.set("b", 2, ttl_s=60)
    assert await cache.get("a") == 1  # a is now the most recently used
    await cache.set("c", 3, ttl_s=60)
    assert [await cache.get(k) for k in ("a", "b", "c")] == [1, None, 3]


async def test_the_byte_budget_evicts_old_entries_and_refuses_a_value_larger_than_itself() -> None:
    cache = MemoryCache(max_bytes=10, clock=Clock())
    await cache.set("a", "xxx", ttl_s=60)  # "xxx" with quotes: 5 bytes
    await cache.set("b", "yyy", ttl_s=60)
    await cache.set("c", "zzz", ttl_s=60)
    assert [await cache.get(k) for k in ("a", "b", "c")] == [None, "yyy", "zzz"]
    await cache.set("big", "x" * 20, ttl_s=60)
    assert await cache.get("big") is None
    assert await cache.get("c") == "zzz"


async def test_expired_entries_make_room_before_live_ones_are_evicted() -> None:
    clock = Clock()
    cache = MemoryCache(max_entries=2, clock=clock)
    await cache.set("short", 1, ttl_s=1)
    await cache.set("long", 2, ttl_s=60)
    clock.now += 2
    await cache.set("new", 3, ttl_s=60)
    assert await cache.get("long") == 2 and await cache.get("new") == 3


async def test_a_value_comes_back_as_json_would_bring_it_and_as_a_fresh_copy() -> None:
    cache = MemoryCache(clock=Clock())
    await cache.set("k", {"t": (1, 2), "n": None}, ttl_s=60)
    first = await cache.get("k")
    assert first == {"t": [1, 2], "n": None}
    first["t"].append(3)
    assert await cache.get("k") == {"t": [1, 2], "n": None}


async def test_an_entry_without_a_positive_time_to_live_or_not_json_is_refused() -> None:
    cache = MemoryCache(clock=Clock())
    with pytest.raises(ValueError, match="time to live"):
        await cache.set("k", 1, ttl_s=0)
    with pytest.raises(TypeError):
        await cache.set("k", object(), ttl_s=1)


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.text(max_size=12), st.floats(0.5, 50)),
        max_size=60,
    )
)
def test_any_sequence_of_writes_stays_within_both_bounds(
    writes: list[tuple[str, str, float]],
) -> None:
    import anyio

    async def scenario() -> None:
        clock = Clock()
        cache = MemoryCache(max_entries=3, max_bytes=40, clock=clock)
        for key, value, ttl_s in writes:
            clock.now += 1
            await cache.set(key, value, ttl_s)
            assert len(cache) <= 3
            assert cache._bytes <= 40
            assert cache._bytes == sum(len(text) for _, text in cache._entries.values())

    anyio.run(scenario)
