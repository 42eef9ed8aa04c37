"""The cache port's contract, run against every implementation: in process and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from reynolds.adapters.cache.memory import MemoryCache
from reynolds.adapters.cache.redis import RedisCache
from reynolds.adapters.redis_link import RedisLink
from reynolds.services.ports import Cache

pytestmark = pytest.mark.anyio
EXPIRY_WAIT_S = 5.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "memory":
        made: Cache = MemoryCache()
    else:
        url: str = request.getfixturevalue("redis_url")
        made = RedisCache(
            RedisLink.from_url(url, "cache"), prefix=request.getfixturevalue("redis_prefix")
        )
    try:
        yield made
    finally:
        await made.aclose()


async def test_a_key_never_set_is_a_miss(cache: Cache) -> None:
    assert await cache.get("nothing-here") is None


async def test_a_value_comes_back_as_json_would_bring_it(cache: Cache) -> None:
    value = {"plan": {"criticalPath": ["a", "b"]}, "speedup": 2.5, "ok": True, "n": None}
    await cache.set("k", value, ttl_s=60)
    assert await cache.get("k") == value
    await cache.set("t", {"pair": (1, 2)}, ttl_s=60)
    assert await cache.get("t") == {"pair": [1, 2]}


async def test_setting_a_key_again_replaces_its_value(cache: Cache) -> None:
    await cache.set("k", 1, ttl_s=60)
    await cache.set("k", 2, ttl_s=60)
    assert await cache.get("k") == 2


async def test_keys_are_independent(cache: Cache) -> None:
    await cache.set("a", "A", ttl_s=60)
    await cache.set("b", "B", ttl_s=60)
    assert (await cache.get("a"), await cache.get("b")) == ("A", "B")


async def test_every_entry_expires_after_its_time_to_live(cache: Cache) -> None:
    await cache.set("short", "gone soon", ttl_s=0.05)
    await cache.set("long", "stays", ttl_s=60)
    with anyio.fail_after(EXPIRY_WAIT_S):
        while await cache.get("short") is not None:
            await anyio.sleep(0.02)
    assert await cache.get("long") == "stays"


async def test_an_entry_without_a_positive_time_to_live_is_refused(cache: Cache) -> None:
    with pytest.raises(ValueError, match="time to live"):
        await cache.set("k", 1, ttl_s=0)
    assert await cache.get("k") is None
