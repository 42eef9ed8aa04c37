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
of their own (`QueueListener`), so logging an attempt does not slow the scheduler.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import sys
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from reynolds.core.redaction import redact_log
from reynolds.services.log_context import LOG_CONTEXT

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
# Loggers of pools' agents: `reynolds.agent.{pool}` → `{pool}-agent.log`.
AGENT_LOGGER = "reynolds.agent"
# A record's fields, given as `extra={"fields": {...}}`.
FIELDS = "fields"
Event = MutableMapping[str, Any]
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


@dataclass
class LogSetup:
    """What `configure` started; `close` flushes and stops it."""

    listener: logging.handlers.QueueListener
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
    the message is made later, on the listener's thread."""

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

    def __call__(
        self, _: Any, __: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if isinstance(value, str) and not key.startswith("_"):
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
    for key, value in record.__dict__.items():
        if key not in _STANDARD and key not in (FIELDS, "log_context"):
            event.setdefault(key, value)
    if record.exc_text:
        event["exception"] = record.exc_text
    return event


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
    """A rotating log its owner alone may read (each file it starts, too)."""

    def _open(self) -> Any:
        fd = os.open(
            self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        return os.fdopen(fd, "a", encoding="utf-8")


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
            handler = self.files[pool] = _file(
                self.directory / f"{pool}-agent.log", self.formatter_
            )
        handler.handle(record)

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
    json_format = _formatter(structlog.processors.JSONRenderer(), secrets)
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
    listener = logging.handlers.QueueListener(lines, *targets, respect_handler_level=True)
    listener.start()
    queueing = _Queueing(lines)
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    for handler in before[0]:
        root.removeHandler(handler)
    root.addHandler(queueing)
    root.setLevel(level)
    return LogSetup(listener, [queueing], before)
