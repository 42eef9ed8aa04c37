"""The lease protocol between Celery workers and the server that dispatched a job, over the
broker's own Redis: no HTTP call, no load balancer in the way.

Each server process reads one list of its own, its inbox (`reynolds:inbox:<server>:<nonce>`,
named in every job it sends). A worker pushes its claims, heartbeats and results there; the
server drains the inbox in batches (one blocking pop, then up to `BATCH` more in one call) and
answers the claims and heartbeats that asked for an answer on the worker's own reply list.

An idempotent job's claim is not waited for: it is pushed together with a marker
(`reynolds:started:<dispatch>`, set only if absent), in one round trip, and the action starts.
A marker already there means the message was handed back by Celery after the process that had
it died: that claim waits for the server's answer, so a job that kills every process taking it
is refused after its allowed losses instead of running on. A non-idempotent job's claim is
always waited for ("never run twice" needs the server to know before it starts). The result is
pushed and not waited for, like a Celery result: a stale one is dropped by the server.

A dispatch belongs to the server whose inbox its job names, so whichever server a worker could
reach over HTTP does not matter; when that server dies, another one takes its tasks over
through the store and dispatches them again (its old dispatches are then stale everywhere).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger("reynolds.celery")

INBOX_PREFIX = "reynolds:inbox:"
REPLY_PREFIX = "reynolds:reply:"
STARTED_PREFIX = "reynolds:started:"
# Messages one read takes from an inbox.
BATCH = 500
# An inbox nobody reads (its server died) and an answer nobody waits for are gone after this.
INBOX_TTL_S = 3600
REPLY_TTL_S = 60
# How long the reader blocks in one pop: also how long stopping it may take.
POP_TIMEOUT_S = 0.5
# What an unreachable or restarting Redis raises.
FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)

Message = dict[str, Any]
Reply = tuple[str, dict[str, Any]]


def channel_client(url: str) -> Redis:
    """A client for the channel: bytes in, bytes out; a read may block for a pop's timeout."""
    return Redis.from_url(
        url,
        socket_connect_timeout=2.0,
        socket_timeout=POP_TIMEOUT_S + 10.0,
        health_check_interval=30,
    )


def inbox_key(server_id: str) -> str:
    """A fresh inbox for one server process (a restarted server starts with an empty one)."""
    return f"{INBOX_PREFIX}{server_id}:{uuid.uuid4().hex[:12]}"


class Inbox:
    """The server's side: a thread drains the inbox and hands each batch to `handle` (which
    applies it on the server's event loop) and sends the answers it returns."""

    def __init__(self, client: Redis, key: str) -> None:
        self.client = client
        self.key = key
        self.received = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, handle: Callable[[list[Message]], list[Reply]]) -> None:
        self._thread = threading.Thread(
            target=self._read, args=(handle,), name="celery-inbox", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop reading (blocking: at most one pop's timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(POP_TIMEOUT_S + 2.0)
        self.client.close()

    def _read(self, handle: Callable[[list[Message]], list[Reply]]) -> None:
        while not self._stop.is_set():
            try:
                batch = self._pop()
                if self.error is not None:
                    log.info("the Celery inbox on Redis answers again")
                    self.error = None
            except FAILURES as exc:
                if self.error is None:
                    log.warning("cannot read the Celery inbox: %s; trying again", exc)
                self.error = f"{type(exc).__name__}: {exc}"
                self._stop.wait(0.5)
                continue
            if not batch:
                continue
            self.received += len(batch)
            try:
                replies = handle(batch)
            except Exception:  # one bad batch must not stop the reader
                log.exception("handling %d worker messages failed", len(batch))
                continue
            if replies:
                self._answer(replies)

    def _pop(self) -> list[Message]:
        first = self.client.blpop([self.key], timeout=POP_TIMEOUT_S)
        if first is None:
            return []
        raw = [first[1]]
        try:
            more = self.client.lpop(self.key, BATCH - 1)
        except FAILURES:  # the rest waits for the next pop; the first is not dropped
            more = None
        if isinstance(more, list):
            raw.extend(more)
        messages = []
        for item in raw:
            try:
                message = json.loads(item)
            except ValueError:
                message = None
            if isinstance(message, dict):
                messages.append(message)
            else:
                log.warning("dropped a worker message that is not a JSON object")
        return messages

    def _answer(self, replies: list[Reply]) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, body in replies:
                pipe.rpush(key, json.dumps(body))
                pipe.expire(key, REPLY_TTL_S)
            pipe.execute()
        except FAILURES as exc:  # the workers ask again until their deadline
            log.warning("could not answer %d worker messages: %s", len(replies), exc)


class Stale(Exception):
    """The server no longer wants this dispatch: stop it and drop it."""


class Unanswered(Exception):
    """No answer from the dispatching server before the deadline (it is down or gone)."""


# A claim or heartbeat that got no answer, either way.
UNANSWERED: tuple[type[BaseException], ...] = (Unanswered, *FAILURES)


class WorkerChannel:
    """A worker process's side: claim, heartbeat, result, through the job's inbox."""

    def __init__(self, client: Redis, worker: str) -> None:
        self.client = client
        self.worker = worker

    def claim(self, inbox: str, dispatch_id: str, *, wait: bool, ttl_s: float) -> float | None:
        """Claim a dispatch: the lease in seconds when the server answered, None when the claim
        was pushed without waiting (see the module's docstring). Stale, Unanswered, or a Redis
        failure (not claimed) otherwise."""
        if not wait:
            message = {"k": "claim", "d": dispatch_id, "w": self.worker}
            pipe = self.client.pipeline(transaction=False)
            pipe.set(STARTED_PREFIX + dispatch_id, self.worker, nx=True, ex=max(1, int(ttl_s)))
            pipe.rpush(inbox, json.dumps(message))
            pipe.expire(inbox, INBOX_TTL_S)
            first = pipe.execute()[0]
            if first:
                return None
            # Handed back after its process died: this claim counts that loss; the next one
            # asks whether the dispatch may still run here.
        return self.ask(inbox, "claim", dispatch_id, deadline_s=ttl_s)

    def ask(self, inbox: str, kind: str, dispatch_id: str, *, deadline_s: float) -> float:
        """A claim or heartbeat answered by the server: the lease in seconds."""
        reply = f"{REPLY_PREFIX}{uuid.uuid4().hex}"
        message = json.dumps({"k": kind, "d": dispatch_id, "w": self.worker, "r": reply})
        deadline = time.monotonic() + deadline_s
        while True:
            pipe = self.client.pipeline(transaction=False)
            pipe.rpush(inbox, message)
            pipe.expire(inbox, INBOX_TTL_S)
            pipe.execute()
            wait_s = max(0.1, min(5.0, deadline - time.monotonic()))  # Redis 6+: seconds
            answer = self.client.blpop([reply], timeout=wait_s)
            if answer is not None:
                body = json.loads(answer[1])
                if "stale" in body:
                    raise Stale(str(body["stale"]))
                return float(body["leaseSeconds"])
            if time.monotonic() >= deadline:
                raise Unanswered(f"the server behind {inbox} did not answer the {kind}")

    def report(self, inbox: str, dispatch_id: str, result: dict[str, Any]) -> None:
        """Push the result (not waited for) and forget the dispatch's start marker."""
        message = {"k": "result", "d": dispatch_id, "w": self.worker, "result": result}
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(inbox, json.dumps(message))
        pipe.expire(inbox, INBOX_TTL_S)
        pipe.delete(STARTED_PREFIX + dispatch_id)
        pipe.execute()
