"""Orchestrators sharing one database: each is a row in `servers` kept alive by a heartbeat,
and each unfinished task has an owner, so that no two of them resume the same task.

A server is an orchestrator's REYNOLDS_HOME: its id is kept there, so a server started again on
the same home (after a crash, too) is the same server and takes its own tasks back at once. A
task belongs to the server that inserted it or last claimed it; another server may claim it
once the owner's heartbeat is older than `stale_after_s`, or the owner has no row (it stopped
cleanly, or was found dead). On PostgreSQL a claim skips the rows another claim has locked
(FOR UPDATE SKIP LOCKED), so concurrent claimers neither wait for each other nor share a task.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from reynolds.adapters.home import writing
from reynolds.adapters.store.connect import reason
from reynolds.adapters.store.schema import events, servers, tasks
from reynolds.errors import StoreError
from reynolds.services.ports import SERVER_STALE_AFTER_S, Row

logger = logging.getLogger(__name__)

UNFINISHED = ("pending", "ready", "running")
# Three beats to a stale server: one late beat is not a death.
HEARTBEAT_INTERVAL_S = SERVER_STALE_AFTER_S / 3


def home_server_id(path: Path) -> str:
    """The server id kept in the file at `path`, created on first use. Call it holding the
    home's lock: two processes must never make two ids for one home."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        text = ""
    if text:
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise StoreError(f"{path} does not hold a server id (a UUID)") from None
    server_id = str(uuid.uuid4())
    partial = path.with_name(path.name + ".partial")
    with writing(path.parent):
        partial.write_text(server_id + "\n", encoding="utf-8")
        os.replace(partial, path)
    return server_id


def claim(
    conn: Connection,
    server_id: str,
    *,
    stale_before: float,
    limit: int | None = None,
    skip_locked: bool = False,
    others_only: bool = False,
) -> list[Row]:
    """Make `server_id` the owner of the unfinished tasks that are its own (unless
    `others_only`: a running server's own tasks are in its memory), nobody's, or a dead
    server's (no heartbeat since `stale_before`), raising each one's `owner_epoch`, and
    return them oldest first; then forget the dead servers. Runs in the caller's
    transaction."""
    live = select(servers.c.id).where(servers.c.heartbeat_at >= stale_before)
    whose: list[ColumnElement[bool]] = [tasks.c.owner.is_(None), tasks.c.owner.not_in(live)]
    mine = [tasks.c.owner != server_id] if others_only else []
    if not others_only:
        whose.append(tasks.c.owner == server_id)
    claimable = (
        select(tasks.c.id)
        .where(tasks.c.status.in_(UNFINISHED), or_(*whose), *mine)
        .order_by(tasks.c.created_at, tasks.c.id)
        .limit(limit)
    )
    dead = select(servers.c.id).where(
        servers.c.heartbeat_at < stale_before, servers.c.id != server_id
    )
    if skip_locked:
        # A row another claim has locked is about to be that claim's: waiting for it would
        # only find it taken.
        claimable = claimable.with_for_update(skip_locked=True)
        dead = dead.with_for_update(skip_locked=True)
    claimed = conn.execute(
        update(tasks)
        .where(tasks.c.id.in_(claimable))
        .values(owner=server_id, owner_epoch=tasks.c.owner_epoch + 1)
        .returning(*tasks.c)
    ).mappings()
    rows = sorted((dict(row) for row in claimed), key=lambda row: (row["created_at"], row["id"]))
    conn.execute(delete(servers).where(servers.c.id.in_(dead)))
    return rows


def request_cancel(conn: Connection, task_id: str, now: float) -> bool:
    """Mark an unfinished task for its owner to cancel; False when it is not unfinished."""
    marked = conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id, tasks.c.status.in_(UNFINISHED))
        .values(cancel_requested_at=now)
    ).rowcount
    return bool(marked)


def cancel_requests(conn: Connection, server_id: str) -> list[str]:
    """The unfinished tasks of `server_id` that another server was asked to cancel."""
    query = select(tasks.c.id).where(
        tasks.c.owner == server_id,
        tasks.c.status.in_(UNFINISHED),
        tasks.c.cancel_requested_at.is_not(None),
    )
    return [str(task_id) for task_id in conn.execute(query).scalars()]


def share_load(
    conn: Connection, server_id: str, load: Row, stale_before: float
) -> tuple[bool, list[Row]]:
    """Write this server's `load`; whether it is the live server whose id sorts first (the one
    that acts for all), and the loads the other live servers last wrote."""
    conn.execute(update(servers).where(servers.c.id == server_id).values(load=load))
    live = conn.execute(
        select(servers.c.id, servers.c.load).where(servers.c.heartbeat_at >= stale_before)
    ).all()
    ids = sorted({str(row.id) for row in live} | {server_id})
    others = [dict(row.load) for row in live if row.id != server_id and row.load]
    return ids[0] == server_id, others


def events_of_others(
    server_id: str, after: Mapping[str, int], start: int, limit: int
) -> Select[Any]:
    """The events servers other than `server_id` committed: of a server in `after`, past its
    seq there; of any other, past `start`; oldest first. (Each server commits its events in
    `seq` order, so a cursor per server misses none of them.)"""
    seq, server = events.c.seq, events.c.server
    seen = [and_(server == name, seq > last) for name, last in after.items()]
    others = and_(server.notin_([*after, server_id]), seq > start)
    return select(events).where(or_(*seen, others)).order_by(seq).limit(limit)


def event_cursors(conn: Connection, server_id: str) -> tuple[dict[str, int], int]:
    """Where a follower of the other servers' events starts (see `events_of_others`): each
    registered server's newest committed event, and the newest of all, read first, for the
    servers that register later (all their events come after it)."""
    start = int(conn.execute(select(func.max(events.c.seq))).scalar() or 0)
    others = conn.execute(select(servers.c.id).where(servers.c.id != server_id)).scalars()
    newest = select(func.max(events.c.seq))
    after = {
        str(other): int(conn.execute(newest.where(events.c.server == other)).scalar() or 0)
        for other in others.all()
    }
    return after, start


class Heartbeat:
    """A server's row in `servers`, renewed every `interval_s` by a thread of its own rather
    than the writer's: a long batch, or its retries, must not make a live server look dead."""

    def __init__(self, engine: Engine, server_id: str, interval_s: float) -> None:
        self._engine = engine
        self._server_id = server_id
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = 0.0

    def start(self) -> None:
        """Register the server (replacing a row a crashed run of it left) and start beating."""
        self._started_at = time.time()
        with self._engine.begin() as conn:
            conn.execute(delete(servers).where(servers.c.id == self._server_id))
            self._insert(conn, self._started_at)
        self._thread = threading.Thread(
            target=self._run, name="reynolds-store-heartbeat", daemon=True
        )
        self._thread.start()

    @property
    def running(self) -> bool:
        """Started and not stopped: its row is there to renew."""
        return self._thread is not None

    def stop(self) -> None:
        """Stop beating and remove the row: the server's unfinished tasks are free to claim."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=30)
        try:
            with self._engine.begin() as conn:
                conn.execute(delete(servers).where(servers.c.id == self._server_id))
        except Exception as exc:  # the row goes stale instead, and is swept by a later claim
            logger.warning("could not remove this server from `servers`: %s", reason(exc))

    def beat(self, now: float) -> None:
        """Renew the heartbeat; register again if another server found this one dead."""
        with self._engine.begin() as conn:
            renewed = conn.execute(
                update(servers).where(servers.c.id == self._server_id).values(heartbeat_at=now)
            ).rowcount
            if renewed == 0:
                logger.warning(
                    "another server found this one's heartbeat stale and removed it; "
                    "tasks this server ran may have been claimed by another"
                )
                self._insert(conn, now)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.beat(time.time())
            except Exception as exc:  # the next beat tries again
                logger.warning("heartbeat failed: %s", reason(exc))

    def _insert(self, conn: Connection, now: float) -> None:
        conn.execute(
            insert(servers).values(
                id=self._server_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                started_at=self._started_at,
                heartbeat_at=now,
            )
        )


class Fence:
    """What a server may still write: the tasks it owns under the epoch of its own claim
    (`epochs`; 0 for a task it inserted). Checked in each commit's transaction, holding the
    tasks' rows (FOR SHARE) so that no claim slips between the check and the write; the rows
    of a task taken by another server are left out of the commit and `lost` is told its id
    (in the writer's thread), so that the server stops its own run of it."""

    def __init__(
        self, server_id: str, epochs: dict[str, int], lost: Callable[[set[str]], None]
    ) -> None:
        self.server_id = server_id
        self.epochs = epochs
        self.lost = lost

    def check(self, conn: Connection, task_ids: set[str]) -> set[str]:
        """The ids among `task_ids` this server no longer owns (a task not stored yet is its
        own: it is being inserted)."""
        taken: set[str] = set()
        ordered = sorted(task_ids)
        for start in range(0, len(ordered), 1000):
            query = (
                select(tasks.c.id, tasks.c.owner, tasks.c.owner_epoch)
                .where(tasks.c.id.in_(ordered[start : start + 1000]))
                .with_for_update(read=True)
            )
            for task_id, owner, epoch in conn.execute(query):
                if owner != self.server_id or epoch != self.epochs.get(task_id, 0):
                    taken.add(task_id)
        if taken:
            logger.warning(
                "%d task(s) now belong to another server; this server's writes of them are "
                "dropped and its runs of them stopped: %s",
                len(taken),
                ", ".join(sorted(taken)[:10]),
            )
            self.lost(taken)
        return taken
