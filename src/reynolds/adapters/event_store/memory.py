"""The in-process event store: bounded per stream, in bytes overall, and in time."""

from __future__ import annotations

import bisect
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

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

EVENTS_PER_STREAM = 1000
TTL_S = 300.0


@dataclass(slots=True)
class _Stream:
    stream_id: str
    touched_at: float
    events: deque[tuple[int, str]] = field(default_factory=deque)  # position, message JSON


class MemoryEventStore(ScopedEventStore):
    """Keeps the last `events_per_stream` events of each stream, for `ttl_s` after the
    stream's last event, and at most `max_bytes` of messages overall (the streams written
    longest ago go first). A replay after an event no longer kept replays nothing."""

    def __init__(
        self,
        *,
        scope: Scope = no_scope,
        events_per_stream: int = EVENTS_PER_STREAM,
        ttl_s: float = TTL_S,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(scope)
        self.events_per_stream = events_per_stream
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.clock = clock
        self._streams: OrderedDict[tuple[str, str], _Stream] = OrderedDict()
        self._positions = itertools.count(1)
        self._bytes = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        text = encode(message)
        now = self.clock()
        key = (self.scope(), stream_digest(stream_id))
        stream = self._streams.pop(key, None) or _Stream(stream_id, now)
        self._streams[key] = stream  # the newest end
        stream.touched_at = now
        position = next(self._positions)
        stream.events.append((position, text))
        self._bytes += len(text)
        while len(stream.events) > self.events_per_stream:
            self._bytes -= len(stream.events.popleft()[1])
        self._evict(now)
        return str(EventRef(key[0], key[1], str(position)))

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        ref = self.ref(last_event_id)
        if ref is None or not ref.position.isdigit():
            return None
        self._evict(self.clock())
        stream = self._streams.get((ref.scope, ref.stream))
        if stream is None:
            return None
        events = list(stream.events)  # the callback awaits; later events wait for the next replay
        at = bisect.bisect_left(events, int(ref.position), key=lambda e: e[0])
        if at == len(events) or events[at][0] != int(ref.position):
            return None  # no longer kept: replaying the rest would hide a gap
        for position, text in events[at + 1 :]:
            if text:
                event_id = str(EventRef(ref.scope, ref.stream, str(position)))
                await send_callback(EventMessage(decode(text), event_id))
        return stream.stream_id

    def _evict(self, now: float) -> None:
        """Streams idle past the TTL, then the least recently written while over budget;
        the stream just written keeps at least its newest event."""
        while self._streams:
            key, oldest = next(iter(self._streams.items()))
            if oldest.touched_at + self.ttl_s > now and self._bytes <= self.max_bytes:
                return
            if len(self._streams) == 1 and oldest.touched_at + self.ttl_s > now:
                while len(oldest.events) > 1 and self._bytes > self.max_bytes:
                    self._bytes -= len(oldest.events.popleft()[1])
                return
            del self._streams[key]
            self._bytes -= sum(len(text) for _, text in oldest.events)
