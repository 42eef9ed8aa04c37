"""The Redis cache: `reynolds:cache:KEY` holds the value's JSON and expires with it."""

from __future__ import annotations

import json
from typing import Any

from reynolds.adapters.cache.values import encode
from reynolds.adapters.redis_link import FAILURES, RedisLink

PREFIX = "reynolds:cache:"


class RedisCache:
    """Values shared through Redis. While Redis is unreachable every `get` misses and every
    `set` is dropped (the link logs the outage once), so callers compute instead."""

    def __init__(self, link: RedisLink, *, prefix: str = PREFIX) -> None:
        self.link = link
        self.prefix = prefix

    async def get(self, key: str) -> Any | None:
        if not self.link.usable():
            return None
        try:
            raw = await self.link.client.get(self.prefix + key)
        except FAILURES as exc:
            self.link.failed(exc)
            return None
        self.link.succeeded()
        return None if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, ttl_s: float) -> None:
        text = encode(value, ttl_s)
        if not self.link.usable():
            return
        try:
            await self.link.client.set(self.prefix + key, text, px=max(1, round(ttl_s * 1000)))
        except FAILURES as exc:
            self.link.failed(exc)
            return
        self.link.succeeded()

    async def ping(self) -> str | None:
        try:
            await self.link.client.ping()
        except FAILURES as exc:
            self.link.failed(exc)
            return f"Redis at {self.link.shown_url}: {type(exc).__name__}: {exc}"
        self.link.succeeded()
        return None

    async def aclose(self) -> None:
        await self.link.aclose()
