"""The Redis event store: one Redis stream per session scope and MCP stream,
`reynolds:mcp:events:SCOPE:STREAM`, capped in length and expiring after its last event."""

from __future__ import annotations

from typing import Any

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, StreamId
from mcp_types import JSONRPCMessage

from reynolds.adapters.event_store.base import (
    EventRef,
    Scope,
    ScopedEventStore,
    decode,
    encode,
    no_scope,
    stream_digest,
)
from reynolds.adapters.event_store.memory import EVENTS_PER_STREAM, TTL_S, MemoryEventStore
from reynolds.adapters.redis_link import FAILURES, RedisLink

PREFIX = "reynolds:mcp:events:"


class RedisEventStore(ScopedEventStore):
    """Events in Redis streams (XADD with an exact MAXLEN, PEXPIRE on every event).

    While Redis is unreachable, events go to an in-process store instead (the link logs the
    outage once), so a session never fails for it; their ids say where they are kept, and a
    replay reads from there. A replay that would span an outage's edge misses the other side.
    """

    def __init__(
        self,
        link: RedisLink,
        *,
        scope: Scope = no_scope,
        prefix: str = PREFIX,
        events_per_stream: int = EVENTS_PER_STREAM,
        ttl_s: float = TTL_S,
    ) -> None:
        super().__init__(scope)
        self.link = link
        self.prefix = prefix
        self.events_per_stream = events_per_stream
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.fallback = MemoryEventStore(
            scope=scope, events_per_stream=events_per_stream, ttl_s=ttl_s
        )

    def key(self, scope: str, stream: str) -> str:
        return f"{self.prefix}{scope}:{stream}"

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        if self.link.usable():
            scope, stream = self.scope(), stream_digest(stream_id)
            key = self.key(scope, stream)
            try:
                async with self.link.client.pipeline(transaction=True) as pipe:
                    pipe.xadd(
                        key,
                        {"s": stream_id.encode("utf-8", "surrogatepass"), "m": encode(message)},
                        maxlen=self.events_per_stream,
                        approximate=False,
                    )
                    pipe.pexpire(key, self.ttl_ms)
                    entry_id, _ = await pipe.execute()
            except FAILURES as exc:
                self.link.failed(exc)
            else:
                self.link.succeeded()
                return str(EventRef(scope, stream, _text(entry_id)))
        return await self.fallback.store_event(stream_id, message)

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        ref = self.ref(last_event_id)
        if ref is None:
            return None
        if "-" not in ref.position:  # kept in process during an outage
            return await self.fallback.replay_events_after(last_event_id, send_callback)
        if not self.link.usable():
            return None
        try:
            raw = await self.link.client.xrange(
                self.key(ref.scope, ref.stream), min=ref.position, count=self.events_per_stream
            )
        except FAILURES as exc:
            self.link.failed(exc)
            return None
        self.link.succeeded()
        entries = _entries(raw)
        if not entries or entries[0][0] != ref.position:
            return None  # expired or trimmed: replaying the rest would hide a gap
        for entry_id, fields in entries[1:]:
            text = fields[b"m"].decode()
            if text:
                event_id = str(EventRef(ref.scope, ref.stream, entry_id))
                await send_callback(EventMessage(decode(text), event_id))
        return entries[0][1][b"s"].decode("utf-8", "surrogatepass")

    async def aclose(self) -> None:
        await self.link.aclose()


def _entries(raw: Any) -> list[tuple[str, dict[bytes, bytes]]]:
    """XRANGE's reply as (entry id, fields); redis-py types it loosely (Any: it never is None)."""
    return [(_text(entry_id), fields) for entry_id, fields in raw or ()]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
