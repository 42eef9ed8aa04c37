"""The Store over SQLAlchemy Core: writes are queued and committed in batches by one thread;
reads use pooled connections of their own."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Select, Table, and_, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from reynolds.adapters.store import failed_attempts, rows
from reynolds.adapters.store.batch import IN_CHUNK, Batch, BatchWriter
from reynolds.adapters.store.connect import STALL_S, describe, make_engine, migrate
from reynolds.adapters.store.integrity import (
    StoreMarker,
    adopt,
    check_before_start,
    failure,
    is_damage,
    probe,
    shown,
)
from reynolds.adapters.store.ownership import (
    HEARTBEAT_INTERVAL_S,
    UNFINISHED,
    Fence,
    Heartbeat,
    cancel_requests,
    claim,
    event_cursors,
    events_of_others,
    request_cancel,
    share_load,
)
from reynolds.adapters.store.postgres_writer import PostgresBatchWriter
from reynolds.adapters.store.schema import (
    attempts,
    audit,
    durations,
    events,
    experiments,
    orchestration_decisions,
    scaling_events,
    subtasks,
    tasks,
)
from reynolds.errors import StoreDamaged, StoreError, StoreUnavailable
from reynolds.services.ports import Distribution, Row

logger = logging.getLogger(__name__)

# Bounds one transaction's size; whatever is left waits for the next batch.
_MAX_BATCH = 20_000


class SqlStore:
    """A `Store` on SQLite (WAL) or PostgreSQL (`postgresql+psycopg://`).

    Started, it is a server in the database's `servers` (see ownership.py): `server_id` names
    it (a new one unless given: the orchestrator passes its home's) and owns the tasks it
    inserts. It starts only on a whole store, and, given its home's `marker`, only on the store
    that home had (integrity.py). A driver error becomes StoreDamaged or StoreUnavailable here,
    once; damage is remembered (`failure`) and reported by every later `probe`.
    """

    # Pauses between attempts to commit a failing batch before it is given up.
    retry_delays_s: tuple[float, ...] = (0.05, 0.25, 1.0)

    def __init__(
        self,
        url: str,
        *,
        batch_interval_s: float = 0.005,
        server_id: str | None = None,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        marker: StoreMarker | None = None,
        stall_s: float = STALL_S,
    ) -> None:
        self._url = url
        self._batch_interval_s = batch_interval_s
        self._engine = make_engine(url, stall_s=stall_s)
        self._shown = shown(url)
        self._marker = marker
        self.identity: str | None = None  # the store's, once started
        # A failure no retry cures (damage, a stopped writer): every later health check says so.
        self._failure: StoreUnavailable | None = None
        self._last_error = ""
        self.server_id = server_id or str(uuid.uuid4())
        self._heartbeat = Heartbeat(self._engine, self.server_id, heartbeat_interval_s)
        # Events name their server where others follow them (`events_elsewhere`)
        self._event_server = self.server_id if self.shared else None
        dialect = self._engine.dialect
        owned = {tasks: {"owner": self.server_id}}
        # The epoch of each task this server claimed (one it inserted: 0), and who is told of
        # the tasks another server took. Servers share only PostgreSQL: there each commit is
        # fenced by ownership; a SQLite store has one server (its home's lock).
        self._epochs: dict[str, int] = {}
        self._lost_callbacks: list[Callable[[set[str]], None]] = []
        self._writer = (
            PostgresBatchWriter(
                dialect, owned, Fence(self.server_id, self._epochs, self._tell_lost)
            )
            if self.shared
            else BatchWriter(dialect, owned)
        )
        self._queue: queue.SimpleQueue[rows.Item] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._marks = itertools.count(1)
        self._enqueued = 0  # the mark of the last queued write
        self._collected = 0  # the mark read by the writer before its latest drain
        self._durable = 0  # every write up to this mark is committed
        self._thread: threading.Thread | None = None
        self._closed = False
        self._callbacks: list[Callable[[list[Row]], None]] = []
        # Batches given up, and how many of those some flush has already reported.
        self._dropped = 0
        self._reported = 0

    # -- lifecycle --

    def start(self) -> None:
        """Check the store, bring the schema up to date, register as a server and start the
        writer thread. StoreDamaged or StoreUnavailable, in one line, when it cannot."""
        if self._thread is not None:
            return
        check_before_start(self._url, self._marker)
        migrate(self._url)
        self.identity = adopt(self._url, self._marker)
        with self._guard():
            self._heartbeat.start()
        self._thread = threading.Thread(target=self._run, name="reynolds-store-writer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Commit what is queued, stop the writer, leave `servers` (this server's unfinished
        tasks may then be claimed by another) and release the connections."""
        failure: StoreError | None = None
        if self._thread is not None and not self._closed:
            try:
                self.flush_sync()
            except StoreError as exc:
                failure = exc
            self._closed = True
            self._queue.put((rows.STOP, None))
            self._wake.set()
            self._thread.join(timeout=60)
            if self._thread.is_alive():
                logger.error("store writer did not stop within 60 s")
        self._closed = True
        self._heartbeat.stop()
        self._engine.dispose()
        if failure is not None:
            raise failure

    @property
    def failure(self) -> StoreUnavailable | None:
        """The failure found earlier that no retry cures (damage, a stopped writer), if any."""
        return self._failure

    def probe(self) -> None:
        """Read the store afresh (see integrity.probe); raise what is wrong with it, the
        remembered failure first. Blocking: call it from a thread when on the event loop."""
        if self._failure is not None:
            raise self._failure
        if self.identity is None:
            raise StoreUnavailable(f"the store {self._shown} is not started", store=self._shown)
        with self._guard():
            try:
                probe(self._url, self._engine, self.identity)
            except StoreDamaged as exc:
                self._remember(exc)
                raise

    def probe_write(self) -> None:
        """Write this server's heartbeat now: raise what keeps the store from taking a write.
        Blocking: call it from a thread when on the event loop."""
        if self._failure is not None:
            raise self._failure
        if not self._heartbeat.running:
            raise StoreUnavailable(f"the store {self._shown} is not started", store=self._shown)
        with self._guard():
            self._heartbeat.beat(time.time())

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Driver errors inside become StoreDamaged (remembered) or StoreUnavailable."""
        try:
            yield
        except (SQLAlchemyError, sqlite3.Error) as exc:
            found = failure(exc, self._url)
            if isinstance(found, StoreDamaged):
                self._remember(found)
            raise found from exc

    def _remember(self, found: StoreUnavailable) -> None:
        if self._failure is None:
            self._failure = found
            logger.error("%s", found.message)

    # -- queued writes --

    def put_task(self, row: Row) -> None:
        self._put(tasks, row)

    def put_subtask(self, row: Row) -> None:
        self._put(subtasks, row)

    def put_attempt(self, row: Row) -> None:
        self._put(attempts, row)

    def put_experiment(self, row: Row) -> None:
        self._put(experiments, row)

    def add_event(self, row: Row) -> None:
        self._enqueue(rows.EVENT, rows.event_row(row, server=self._event_server))

    def add_audit(self, row: Row) -> None:
        """Append one audit record (committed with the batch it lands in)."""
        self._enqueue(rows.AUDIT, rows.audit_row(row))

    def add_audit_later(self, build: Callable[[], Row]) -> None:
        """Append the audit record `build()` returns, called on the writer thread when the
        batch it lands in is made; one it fails to make is logged and left out."""
        self._enqueue(rows.AUDIT_LATER, build)

    def add_decision(self, row: Row) -> None:
        """Append one routing decision; the row names every column but `seq`."""
        self._enqueue(rows.DECISION, rows.decision_row(row))

    def add_scaling_event(self, row: Row) -> None:
        """Append one change of a pool's replicas; the row names every column but `id`."""
        self._enqueue(rows.SCALING, rows.scaling_row(row))

    def record_duration(self, keys: Sequence[str], seconds: float, ok: bool) -> None:
        self._enqueue(rows.DURATION, rows.duration(keys, seconds, ok))

    def on_commit(self, callback: Callable[[list[Row]], None]) -> None:
        """Register a callback run (in the writer thread) with the events of each commit."""
        self._callbacks.append(callback)

    @property
    def shared(self) -> bool:
        """Whether other servers may share this store (PostgreSQL; a SQLite file has one)."""
        return self._engine.dialect.name == "postgresql"

    def on_lost(self, callback: Callable[[set[str]], None]) -> None:
        """Register a callback run (in the writer thread) with the ids of tasks another server
        has claimed since this one did: their writes were left out of the commit."""
        self._lost_callbacks.append(callback)

    def _tell_lost(self, task_ids: set[str]) -> None:
        for task_id in task_ids:
            self._epochs.pop(task_id, None)
        for callback in tuple(self._lost_callbacks):
            try:
                callback(task_ids)
            except Exception:
                logger.exception("store on_lost callback failed")

    async def flush(self) -> None:
        await asyncio.wrap_future(self._enqueue_flush())

    def flush_sync(self) -> None:
        self._enqueue_flush().result()

    def _put(self, table: Table, row: Row) -> None:
        self._enqueue(table, rows.table_row(table, row))

    def _enqueue(self, kind: Table | str, payload: Any) -> None:
        if self._closed:
            raise StoreError("the store is closed")
        self._queue.put((kind, payload))
        # After the put: a writer that reads this mark will find the item in the queue.
        self._enqueued = next(self._marks)

    def write_mark(self) -> int:
        """A mark for everything queued so far; see `durable`."""
        return self._enqueued

    def durable(self, mark: int) -> bool:
        """Whether everything queued up to `mark` has been committed (a flush would not wait)."""
        return self._durable >= mark

    def _enqueue_flush(self) -> Future[None]:
        if self._failure is not None:
            # Nothing written to a damaged store is to be trusted: every flush says so.
            raise self._failure
        if self._thread is None or not self._thread.is_alive() or self._closed:
            raise StoreUnavailable(f"the store {self._shown} is not running", store=self._shown)
        if threading.current_thread() is self._thread:
            raise StoreError("an on_commit callback cannot flush: it would wait for itself")
        future: Future[None] = Future()
        self._queue.put((rows.FLUSH, (future, self._dropped)))
        self._wake.set()
        return future

    # -- the writer thread --

    def _run(self) -> None:
        try:
            while True:
                items = self._collect()
                try:
                    self._commit(items)
                except Exception:  # a bug here must not stop every later commit
                    logger.exception("store writer failed on a batch")
                    self._dropped += 1
                    self._resolve(items)
                if any(kind == rows.STOP for kind, _ in items):
                    return
        except BaseException as exc:
            # Nothing is committed any more: say so loudly, and in every health check.
            logger.critical("store writer stopped", exc_info=True)
            self._remember(
                StoreUnavailable(
                    f"the store {self._shown} stopped committing: {exc!r}", store=self._shown
                )
            )
            raise
        finally:
            self._fail_leftovers()

    def _collect(self) -> list[rows.Item]:
        """The first item, then whatever else arrives within the batch interval; a flush or
        a stop cuts the wait short so that it is answered at once.

        The writer sleeps through the interval instead of waking for each item: every wake
        would take the GIL from the event loop that is producing the items.
        """
        items = [self._queue.get()]
        if items[0][0] not in (rows.FLUSH, rows.STOP):
            self._wake.wait(self._batch_interval_s)
        self._wake.clear()
        # Read before draining: every item counted in the mark is in the queue by now.
        self._collected = self._enqueued
        while len(items) < _MAX_BATCH:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _commit(self, items: list[rows.Item]) -> None:
        batch = rows.to_batch(items)
        dropped = self._dropped
        committed = self._write(batch) if len(batch) else []
        if self._dropped == dropped and len(items) < _MAX_BATCH:
            self._durable = max(self._durable, self._collected)
        if committed:
            for callback in tuple(self._callbacks):
                try:
                    callback(committed)
                except Exception:
                    logger.exception("store on_commit callback failed")
        self._resolve(items)

    def _write(self, batch: Batch) -> list[Row]:
        attempts_left = len(self.retry_delays_s)
        while True:
            try:
                with self._engine.begin() as conn:
                    return self._writer.write(conn, batch)
            except Exception as exc:
                self._last_error = describe(exc)
                if is_damage(exc):
                    # Retrying cannot mend the file.
                    self._remember(failure(exc, self._url))
                    attempts_left = 0
                if attempts_left == 0:
                    self._dropped += 1
                    logger.error(
                        "store commit failed; %d writes given up: %s", len(batch), describe(exc)
                    )
                    return []
                delay_s = self.retry_delays_s[-attempts_left]
                attempts_left -= 1
                logger.warning(
                    "store commit failed, retrying in %.2f s: %s", delay_s, describe(exc)
                )
                time.sleep(delay_s)

    def _resolve(self, items: list[rows.Item]) -> None:
        """Answer the flushes in `items`: each fails if a batch was given up since it was
        asked for, or since the last flush that reported one."""
        flushed = False
        for kind, payload in items:
            if kind != rows.FLUSH:
                continue
            future, dropped_before = payload
            flushed = True
            if future.done() or not future.set_running_or_notify_cancel():
                continue
            if self._dropped > dropped_before or self._dropped > self._reported:
                future.set_exception(
                    self._failure
                    or StoreUnavailable(
                        f"some writes could not be committed to the store {self._shown}: "
                        f"{self._last_error}",
                        store=self._shown,
                    )
                )
            else:
                future.set_result(None)
        if flushed:
            self._reported = self._dropped

    def _fail_leftovers(self) -> None:
        while True:
            try:
                kind, payload = self._queue.get_nowait()
            except queue.Empty:
                return
            if kind == rows.FLUSH and payload[0].set_running_or_notify_cancel():
                payload[0].set_exception(self._failure or StoreError("the store is closed"))

    # -- reads --

    def get_task(self, task_id: str) -> Row | None:
        found = self._fetch(select(tasks).where(tasks.c.id == task_id))
        return found[0] if found else None

    def get_subtasks(self, task_id: str) -> list[Row]:
        return self._fetch(
            select(subtasks).where(subtasks.c.task_id == task_id).order_by(subtasks.c.seq)
        )

    def list_tasks(self, status: str | None = None, limit: int = 50) -> list[Row]:
        query = select(tasks).order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(tasks.c.status == status)
        return self._fetch(query)

    def unfinished_tasks(self) -> list[Row]:
        return self._fetch(
            select(tasks).where(tasks.c.status.in_(UNFINISHED)).order_by(tasks.c.created_at)
        )

    def claim_unfinished(
        self, stale_after_s: float, limit: int | None = None, *, others_only: bool = False
    ) -> list[Row]:
        """Take the unfinished tasks that are this server's (unless `others_only`), nobody's,
        or a dead server's (no heartbeat for `stale_after_s`), at most `limit`, and return
        them oldest first; this server's writes of them count under the epoch of this claim."""
        with self._guard(), self._engine.begin() as conn:
            claimed = claim(
                conn,
                self.server_id,
                stale_before=time.time() - stale_after_s,
                limit=limit,
                skip_locked=self._engine.dialect.name == "postgresql",
                others_only=others_only,
            )
        for row in claimed:
            self._epochs[row["id"]] = row["owner_epoch"]
        return claimed

    def share_load(self, load: Row, stale_after_s: float) -> tuple[bool, list[Row]]:
        with self._guard(), self._engine.begin() as conn:
            return share_load(conn, self.server_id, load, time.time() - stale_after_s)

    def request_cancel(self, task_id: str) -> bool:
        with self._guard(), self._engine.begin() as conn:
            return request_cancel(conn, task_id, time.time())

    def cancel_requests(self) -> list[str]:
        with self._guard(), self._engine.connect() as conn:
            return cancel_requests(conn, self.server_id)

    def task_counts(self) -> dict[str, int]:
        query = select(tasks.c.status, func.count()).group_by(tasks.c.status)
        with self._guard(), self._engine.connect() as conn:
            return {status: count for status, count in conn.execute(query)}

    def durations(self, keys: Iterable[str]) -> Mapping[str, float]:
        wanted = sorted(set(keys))
        found: dict[str, float] = {}
        with self._guard(), self._engine.connect() as conn:
            for start in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[start : start + IN_CHUNK]
                query = select(durations.c.key, durations.c.mean_s).where(
                    durations.c.key.in_(chunk)
                )
                found.update({key: mean_s for key, mean_s in conn.execute(query)})
        return found

    def get_attempts(self, task_id: str) -> list[Row]:
        c = attempts.c
        return self._fetch(
            select(attempts).where(c.task_id == task_id).order_by(c.subtask_id, c.attempt)
        )

    def get_experiment(self, experiment_id: str) -> Row | None:
        found = self._fetch(select(experiments).where(experiments.c.id == experiment_id))
        return found[0] if found else None

    def list_experiments(self, limit: int = 50) -> list[Row]:
        order = (experiments.c.created_at.desc(), experiments.c.id.desc())
        return self._fetch(select(experiments).order_by(*order).limit(limit))

    def distributions(self, keys: Iterable[str]) -> Mapping[str, Distribution]:
        wanted = sorted(set(keys))
        found: dict[str, Distribution] = {}
        c = durations.c
        with self._guard(), self._engine.connect() as conn:
            for start in range(0, len(wanted), IN_CHUNK):
                query = select(c.key, c.count, c.failures, c.mean_s, c.m2, c.recent).where(
                    c.key.in_(wanted[start : start + IN_CHUNK])
                )
                for key, n, bad, mean, m2, recent in conn.execute(query):
                    found[key] = (n, bad, mean, m2, tuple(recent or ()))
        return found

    def outcomes(self, keys: Iterable[str]) -> Mapping[str, tuple[int, int, float]]:
        wanted = sorted(set(keys))
        found: dict[str, tuple[int, int, float]] = {}
        columns = (durations.c.key, durations.c.count, durations.c.failures, durations.c.mean_s)
        with self._guard(), self._engine.connect() as conn:
            for start in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[start : start + IN_CHUNK]
                query = select(*columns).where(durations.c.key.in_(chunk))
                found.update(
                    {key: (n, failed, mean) for key, n, failed, mean in conn.execute(query)}
                )
        return found

    def events(self, task_id: str, after_seq: int = 0, limit: int = 1000) -> list[Row]:
        query = select(events).where(events.c.task_id == task_id, events.c.seq > after_seq)
        return self._fetch(query.order_by(events.c.seq).limit(limit))

    def last_event_seq(self, task_id: str) -> int:
        query = select(func.max(events.c.seq)).where(events.c.task_id == task_id)
        with self._guard(), self._engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def event_cursors(self) -> tuple[dict[str, int], int]:
        with self._guard(), self._engine.connect() as conn:
            return event_cursors(conn, self.server_id)

    def events_elsewhere(
        self, after: Mapping[str, int], start: int, limit: int = 1000
    ) -> list[Row]:
        shared = self.shared
        return self._fetch(events_of_others(self.server_id, after, start, limit)) if shared else []

    def audit(
        self,
        task_id: str | None = None,
        since: float | None = None,
        limit: int = 100,
        before: tuple[float, int] | None = None,
    ) -> list[Row]:
        """The newest `limit` audit records (of one task, at or after `since`, before the
        `(at, seq)` position `before`), oldest first: ordered by time, then sequence."""
        limit = max(1, min(int(limit), rows.AUDIT_MAX_LIMIT))
        query = select(audit).order_by(audit.c.at.desc(), audit.c.seq.desc()).limit(limit)
        if task_id is not None:
            query = query.where(audit.c.task_id == task_id)
        if since is not None:
            query = query.where(audit.c.at >= since)
        if before is not None:
            at, seq = before
            query = query.where(or_(audit.c.at < at, and_(audit.c.at == at, audit.c.seq < seq)))
        found = self._fetch(query)
        found.reverse()
        return found

    def decisions(self, task_id: str) -> dict[str, Row]:
        """The latest routing decision of each subtask of a task, by subtask id."""
        table = orchestration_decisions
        query = select(table).where(table.c.task_id == task_id).order_by(table.c.seq)
        return {row["subtask_id"]: row for row in self._fetch(query)}

    def scaling_events(self, limit: int = 20) -> list[Row]:
        """The newest `limit` scaling events, newest first."""
        limit = max(1, min(int(limit), rows.AUDIT_MAX_LIMIT))
        table = scaling_events
        return self._fetch(select(table).order_by(table.c.id.desc()).limit(limit))

    def failure_patterns(self, limit_rows: int = 5000) -> list[Row]:
        """The newest `limit_rows` failed attempts, newest first, with their subtask's action
        and output and their task's type (see failed_attempts.py)."""
        return [
            failed_attempts.from_query(row)
            for row in self._fetch(failed_attempts.query(limit_rows))
        ]

    def _fetch(self, query: Select[Any]) -> list[Row]:
        with self._guard(), self._engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]
