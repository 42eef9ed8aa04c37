"""Structured logs (structlog over the standard library's logging).

Every line becomes a JSON object in `REYNOLDS_HOME/logs/{component}.log` (rotated at 10 MiB,
five kept): `{"timestamp", "level", "logger", "event", ...}` with the ids of the task, subtask
and pool it is about (services/log_context.py) and the fields its logger gave. What each pool's
agents did — one line per attempt started and ended — goes to that pool's own file,
`{pool}-agent.log`, instead; a Celery worker writes its own, `{worker}.log`. In the foreground
the same lines are printed to stderr, readable (JSON when stderr is not a terminal, as in a
container).

Secrets are hidden at one choke point, the processor every line passes through on its way to
any file or the console (`core/redaction.redact_log`): the values of the secrets the server
holds, URL passwords, credentials and values given under a secret name.

A line costs its caller the record and a queue put: formatting and writing happen on a thread
of their own, four times a second for all lines queued since (a warning at once), so logging
an attempt does not slow the scheduler.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
import re
import sys
import threading
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from reynolds.core.redaction import REDACTED, is_secret_name, redact_log
from reynolds.services import agent_log
from reynolds.services.log_context import LOG_CONTEXT

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
# How often the queued lines are written (a warning or worse is written at once).
WRITE_EVERY_S = 0.25
# Loggers of pools' agents: `reynolds.agent.{pool}` → `{pool}-agent.log`.
AGENT_LOGGER = agent_log.PREFIX.rstrip(".")
# Fields every line has and this module writes: nothing in them to hide.
OWN_FIELDS = frozenset({"level", "logger", "timestamp"})
# A record's fields, given as `extra={"fields": {...}}`.
FIELDS = "fields"
Event = MutableMapping[str, Any]
# A queued record's attributes: the standard ones, `log_context`, and `fields` when given.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_PLAIN_ATTRIBUTES = len(logging.makeLogRecord({}).__dict__) + 2


class _BatchWriter:
    """Writes the queued lines in batches, every WRITE_EVERY_S (and at once for a warning or
    worse): a line costs its caller a queue put, and the scheduler's thread gives up the
    interpreter a few times a second for all of them, not once for each."""

    def __init__(
        self, lines: queue.SimpleQueue[logging.LogRecord], handlers: list[logging.Handler]
    ):
        self.lines = lines
        self.handlers = handlers
        self.urgent = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="reynolds-logs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            self.urgent.wait(WRITE_EVERY_S)
            self.urgent.clear()
            self.drain()

    def drain(self) -> None:
        wrote = False
        while True:
            try:
                record = self.lines.get_nowait()
            except queue.Empty:
                break
            wrote = True
            for handler in self.handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)
        if wrote:
            for handler in self.handlers:
                getattr(handler, "sync", handler.flush)()

    def stop(self) -> None:
        self._stop = True
        self.urgent.set()
        self._thread.join()
        self.drain()


@dataclass
class LogSetup:
    """What `configure` started; `close` flushes and stops it."""

    listener: _BatchWriter
    handlers: list[logging.Handler] = field(default_factory=list)
    # The root logger as it was, given back by `close`.
    before: tuple[list[logging.Handler], int] = ([], logging.WARNING)

    def close(self) -> None:
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
        self.listener.stop()  # after the last line is queued: it writes them all first
        for handler in self.listener.handlers:
            handler.close()
        handlers, level = self.before
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


class _Queueing(logging.handlers.QueueHandler):
    """Takes what only the caller's thread knows — the log context — and queues the record;
    the message is made later, on the writer's thread."""

    def __init__(self, lines: queue.SimpleQueue[logging.LogRecord], urgent: threading.Event):
        super().__init__(lines)
        self.urgent = urgent

    def enqueue(self, record: logging.LogRecord) -> None:
        self.queue.put_nowait(record)
        if record.levelno >= logging.WARNING:
            self.urgent.set()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.log_context = LOG_CONTEXT.get()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None  # a traceback's frames must not cross threads
        return record


class _Redact:
    """The choke point: every string of a line passes here before it is written."""

    def __init__(self, known: Sequence[str]) -> None:
        self.known = [s for s in known if len(s) >= 4]
        # What a value must hold for `redact_log` to change it: most hold none of it, and
        # one search tells (a log line has a dozen values).
        alternatives = [r"[=:\s]", *(re.escape(s) for s in self.known)]
        self._suspect = re.compile("|".join(alternatives))
        # Whether a field's name says its value is a secret, per name (names repeat).
        self._secret_field: dict[str, bool] = {}

    def __call__(self, _: Any, __: str, event: Event) -> Event:
        for key, value in event.items():
            if not isinstance(value, str) or key in OWN_FIELDS or key.startswith("_"):
                continue
            secret = self._secret_field.get(key)
            if secret is None:
                secret = self._secret_field[key] = is_secret_name(key)
            if secret:
                event[key] = REDACTED
            elif self._suspect.search(value):
                event[key] = redact_log(value, self.known)
        return event


def _context(_: Any, __: str, event: Event) -> Event:
    """The ids the line is about, and the fields its logger gave."""
    record: logging.LogRecord | None = event.get("_record")
    if record is None:
        return event
    # When it was logged, not written: every file and the console agree.
    event["timestamp"] = (
        datetime.fromtimestamp(record.created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
    event.update(getattr(record, "log_context", None) or {})
    given = getattr(record, FIELDS, None)
    if isinstance(given, dict):
        event.update(given)
    if len(record.__dict__) > _PLAIN_ATTRIBUTES:  # given by `extra=` besides fields
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in (FIELDS, "log_context"):
                event.setdefault(key, value)
    if record.exc_text:
        event["exception"] = record.exc_text
    return event


class _JsonLines(logging.Formatter):
    """The files' format: one JSON object a line, built straight from the record (the fields
    `_context` adds, redacted by `_Redact`), a few microseconds a line — structlog's own
    formatter, at about ten times that, renders the console."""

    def __init__(self, known: Sequence[str]) -> None:
        super().__init__()
        self.redact = _Redact(known)

    def format(self, record: logging.LogRecord) -> str:
        event: Event = {"event": record.getMessage(), "level": record.levelname.lower()}
        event["logger"] = record.name
        event["_record"] = record
        _context(None, "", event)
        del event["_record"]
        self.redact(None, "", event)
        return json.dumps(event, default=str, ensure_ascii=False)


def _formatter(renderer: Any, known: Sequence[str]) -> structlog.stdlib.ProcessorFormatter:
    pre_chain: list[structlog.typing.Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _context,
        _Redact(known),
    ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


class _PrivateFile(logging.handlers.RotatingFileHandler):
    """A rotating log its owner alone may read (each file it starts, too). Lines are written
    without a flush each (`sync` flushes a batch), and it rotates once the file has reached
    MAX_BYTES, counted as it writes (the standard handler formats each line twice, and asks
    the file where it stands, to know whether the next one would pass it)."""

    size = 0

    def _open(self) -> Any:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.baseFilename, flags, 0o600)
        self.size = os.fstat(fd).st_size
        return os.fdopen(fd, "a", encoding="utf-8")

    def shouldRollover(self, record: logging.LogRecord) -> int:
        return int(self.maxBytes > 0 and self.size >= self.maxBytes)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.shouldRollover(record):
                self.doRollover()
            if self.stream is None:
                self.stream = self._open()
            line = self.format(record) + "\n"
            self.stream.write(line)
            self.size += len(line)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Nothing: lines are written in batches, and `sync` writes each batch out."""

    def sync(self) -> None:
        if self.stream is not None:
            self.stream.flush()


class _PrivateWatchedFile(logging.handlers.WatchedFileHandler):
    """A log another process rotates: opened again once it has been moved away."""

    def _open(self) -> Any:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.baseFilename, flags, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8")


def _file(path: Path, formatter: logging.Formatter, *, rotate: bool = True) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler: logging.Handler = (
        _PrivateFile(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
        if rotate
        else _PrivateWatchedFile(path, encoding="utf-8")
    )
    handler.setFormatter(formatter)
    return handler


class _PerAgent(logging.Handler):
    """Routes `reynolds.agent.{pool}` lines to `{pool}-agent.log`, opened on first use."""

    def __init__(self, directory: Path, formatter: logging.Formatter) -> None:
        super().__init__()
        self.directory = directory
        self.formatter_ = formatter
        self.files: dict[str, logging.Handler] = {}

    def emit(self, record: logging.LogRecord) -> None:
        pool = record.name[len(AGENT_LOGGER) + 1 :] or "agent"
        handler = self.files.get(pool)
        if handler is None:
            handler = _file(self.directory / f"{pool}-agent.log", self.formatter_)
            self.files[pool] = handler
        handler.handle(record)

    def sync(self) -> None:
        for handler in self.files.values():
            getattr(handler, "sync", handler.flush)()

    def close(self) -> None:
        for handler in self.files.values():
            handler.close()
        super().close()


class _OnlyAgents(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith(AGENT_LOGGER + ".")


class _NoAgents(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(AGENT_LOGGER + ".")


def configure(
    log_dir: Path,
    component: str = "server",
    *,
    console: bool = True,
    secrets: Sequence[str] = (),
    level: int = logging.INFO,
    agents_apart: bool = True,
    rotate: bool = True,
) -> LogSetup:
    """Send every log line to `log_dir/{component}.log` as JSON (with `agents_apart`, agents'
    lines to their pool's file instead) and, with `console`, to stderr; hide `secrets` and
    what looks like one. `rotate`: this process rotates the file (a Celery worker's pool
    processes leave that to the worker and reopen it once moved)."""
    json_format = _JsonLines(secrets)
    main = _file(log_dir / f"{component}.log", json_format, rotate=rotate)
    targets: list[logging.Handler] = [main]
    if agents_apart:
        main.addFilter(_NoAgents())
        agents = _PerAgent(log_dir, json_format)
        agents.addFilter(_OnlyAgents())
        targets.append(agents)
    if console:
        readable = sys.stderr.isatty()
        renderer = (
            structlog.dev.ConsoleRenderer(colors=readable)
            if readable
            else structlog.processors.JSONRenderer()
        )
        shown = logging.StreamHandler(sys.stderr)
        shown.setFormatter(_formatter(renderer, secrets))
        targets.append(shown)
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = _BatchWriter(lines, targets)
    queueing = _Queueing(lines, listener.urgent)
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    for handler in before[0]:
        root.removeHandler(handler)
    root.addHandler(queueing)
    root.setLevel(level)
    return LogSetup(listener, [queueing], before)
