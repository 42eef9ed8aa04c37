"""A Redis client, and how its user gets through an outage without failing requests."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger("reynolds.redis")

# What an unreachable, restarting or overloaded Redis raises.
FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


class RedisLink:
    """One client for one user (the cache, the event store), with its outage state.

    The first failure logs one warning and sends callers to their fallback for `pause_s`, so
    an outage costs each request nothing, not a connect timeout; the first success after that
    logs that Redis is back. Commands are not retried: a caller that misses Redis computes
    (or stores in process) instead, which is faster than waiting.
    """

    def __init__(
        self,
        client: Redis,
        user: str,
        *,
        fallback: str = "its callers do without it",
        shown_url: str = "redis",
        pause_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.user = user
        self.fallback = fallback
        self.shown_url = shown_url
        self.pause_s = pause_s
        self.clock = clock
        self.down = False
        self._resume_at = 0.0

    @classmethod
    def from_url(
        cls,
        url: str,
        user: str,
        *,
        fallback: str = "its callers do without it",
        timeout_s: float = 1.0,
    ) -> RedisLink:
        client = Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, user, fallback=fallback, shown_url=masked(url))

    def usable(self) -> bool:
        """False while a recent failure says to go straight to the fallback."""
        return not self.down or self.clock() >= self._resume_at

    def failed(self, exc: BaseException) -> None:
        if not self.down:
            log.warning(
                "Redis at %s is unreachable for the %s (%s: %s); until it is back, %s",
                self.shown_url,
                self.user,
                type(exc).__name__,
                exc,
                self.fallback,
            )
        self.down = True
        self._resume_at = self.clock() + self.pause_s

    def succeeded(self) -> None:
        if self.down:
            log.warning("Redis at %s is back; the %s uses it again", self.shown_url, self.user)
            self.down = False

    async def aclose(self) -> None:
        await self.client.aclose()


def masked(url: str) -> str:
    """`url` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
