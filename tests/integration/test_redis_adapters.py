"""What only the Redis adapters do: namespaced keys that all expire, capped streams, and an
outage that fails no caller."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from mcp.server.streamable_http import EventMessage
from mcp_types import JSONRPCNotification

from reynolds.adapters.cache.redis import RedisCache
from reynolds.adapters.event_store.redis import RedisEventStore
from reynolds.adapters.redis_link import RedisLink, masked

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    made = aioredis.Redis.from_url(redis_url)
    yield made
    await made.aclose()


@pytest.fixture
def dead_url() -> str:
    """A Redis URL where nothing listens (a port just released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://:secret@127.0.0.1:{port}/0"


def note(n: int) -> JSONRPCNotification:
    return JSONRPCNotification(jsonrpc="2.0", method="notifications/progress", params={"n": n})


async def test_cache_keys_are_namespaced_and_expire(
    redis_url: str, redis_prefix: str, client: aioredis.Redis
) -> None:
    cache = RedisCache(RedisLink.from_url(redis_url, "cache"), prefix=redis_prefix + "cache:")
    await cache.set("analysis:abc", {"x": 1}, ttl_s=120)
    await cache.aclose()
    keys = [k.decode() async for k in client.scan_iter(match=redis_prefix + "*")]
    assert keys == [redis_prefix + "cache:analysis:abc"]
    assert 0 < await client.pttl(keys[0]) <= 120_000


async def test_event_streams_are_capped_in_length_and_expire(
    redis_url: str, redis_prefix: str, client: aioredis.Redis
) -> None:
    store = RedisEventStore(
        RedisLink.from_url(redis_url, "MCP event store"),
        prefix=redis_prefix,
        events_per_stream=4,
        ttl_s=90,
    )
    for n in range(10):
        await store.store_event("1", note(n))
    await store.aclose()
    keys = [k async for k in client.scan_iter(match=redis_prefix + "*")]
    assert len(keys) == 1
    assert await client.xlen(keys[0]) == 4
    assert 0 < await client.pttl(keys[0]) <= 90_000


async def test_with_redis_down_the_cache_misses_drops_and_warns_once(
    dead_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCache(RedisLink.from_url(dead_url, "cache"))
    caplog.set_level(logging.WARNING, logger="reynolds.redis")
    started = time.perf_counter()
    for _ in range(20):
        await cache.set("k", {"x": 1}, ttl_s=60)
        assert await cache.get("k") is None
    elapsed_s = time.perf_counter() - started
    await cache.aclose()

    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "unreachable" in warnings[0] and "cache" in warnings[0]
    assert "secret" not in warnings[0]  # the password is masked
    assert elapsed_s < 2.0  # one refused connection, then straight to the fallback


async def test_with_redis_down_events_are_kept_in_process_and_still_replay(
    dead_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisEventStore(RedisLink.from_url(dead_url, "MCP event store"))
    caplog.set_level(logging.WARNING, logger="reynolds.redis")
    first = await store.store_event("1", note(0))
    later = [await store.store_event("1", note(n)) for n in (1, 2)]
    seen: list[EventMessage] = []

    async def collect(event: EventMessage) -> None:
        seen.append(event)

    assert await store.replay_events_after(first, collect) == "1"
    await store.aclose()
    assert [e.event_id for e in seen] == later
    assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]


async def test_after_an_outage_the_link_tries_again_and_says_redis_is_back(
    dead_url: str, redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    link = RedisLink(aioredis.Redis.from_url(dead_url), "cache", pause_s=5, clock=lambda: now[0])
    cache = RedisCache(link, prefix=redis_prefix)
    caplog.set_level(logging.WARNING, logger="reynolds.redis")
    await cache.set("k", 1, ttl_s=60)
    assert link.down and not link.usable()

    await link.client.aclose()
    link.client = aioredis.Redis.from_url(redis_url)  # Redis is reachable again
    await cache.set("k", 1, ttl_s=60)
    assert await cache.get("k") is None  # still pausing: nothing was sent
    now[0] += 5
    await cache.set("k", 2, ttl_s=60)
    assert await cache.get("k") == 2
    await cache.aclose()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "is back" in messages[1], messages


def test_logged_urls_never_show_a_password() -> None:
    assert masked("redis://:hunter2@cache:6380/1") == "redis://:***@cache:6380/1"
    assert masked("redis://user:hunter2@cache/0") == "redis://user:***@cache/0"
    assert masked("redis://cache:6379/0") == "redis://cache:6379/0"
