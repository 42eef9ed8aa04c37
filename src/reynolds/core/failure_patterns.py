"""Failure patterns: what keeps failing, on which pool, in which way and saying what.

Failed attempts are grouped by their action's signature — a short, stable, readable name of
what was run, written before substitution so that every component's run of a step shares it
(`shell:pytest {component}`, `python:mod:fn`, `http:GET host/path`, `mcp:server/tool`,
`llm:model`) — and by the pool that ran them. Each group counts its failures, their classes
(core/failures.py) and its most common messages: the last meaningful line of the error (else
of the output) with what varies between identical failures masked (core/fingerprints.py) and
what looks secret hidden (core/redaction.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from reynolds.core.failures import retryable
from reynolds.core.fingerprints import normalise
from reynolds.core.redaction import redact_argv, redact_text

SIGNATURE_MAX_CHARS = 120
MESSAGE_MAX_CHARS = 200
TOP_MESSAGES = 3
# How much of the end of an error or output is searched for its last meaningful line.
_TAIL_CHARS = 4096
_MCP_SERVER_MAX_CHARS = 80


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _basename(path: str) -> str:
    return path.rstrip("/").rpartition("/")[2] or path


def _host_path(url: str) -> str:
    """`host[:port]/path` of a URL: no scheme, user, password, query or fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.partition("?")[0]
    host = parts.netloc.rpartition("@")[2]
    return f"{host}{parts.path}" if host else url.partition("?")[0]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _mcp_server(server: Any) -> str:
    if isinstance(server, str):  # a server's name, as the pool declares it
        return _cut(server, _MCP_SERVER_MAX_CHARS)
    # Tasks recorded before servers were declared by name carry the command or the URL.
    if not isinstance(server, Mapping):
        return "?"
    if isinstance(server.get("url"), str):
        return _host_path(server["url"])
    args = [a for a in server.get("args") or [] if isinstance(a, str)]
    words = redact_argv([_basename(_text(server.get("command"))), *args])
    return _cut(" ".join(words), _MCP_SERVER_MAX_CHARS)


def action_signature(action: Mapping[str, Any] | None) -> str:
    """What an action runs, as a short stable string, from its wire form (camelCase JSON, as
    a subtask's spec keeps it): its placeholders are kept, secrets hidden, and it is cut to
    SIGNATURE_MAX_CHARS characters."""
    if not isinstance(action, Mapping):
        return "none"
    kind = _text(action.get("kind")) or "unknown"
    if kind == "shell":
        argv = [a for a in action.get("argv") or [] if isinstance(a, str)]
        shown = redact_argv([_basename(argv[0]), *argv[1:]]) if argv else []
        text = f"shell:{' '.join(shown)}"
    elif kind == "python":
        text = f"python:{_text(action.get('callable'))}"
    elif kind == "http":
        text = f"http:{_text(action.get('method')) or 'GET'} {_host_path(_text(action.get('url')))}"
    elif kind == "mcp":
        text = f"mcp:{_mcp_server(action.get('server'))}/{_text(action.get('tool'))}"
    elif kind == "llm":
        text = f"llm:{_text(action.get('model')) or 'default'}"
    else:
        text = kind
    return _cut(text, SIGNATURE_MAX_CHARS)


def _last_meaningful_line(text: str) -> str:
    for line in reversed(text[-_TAIL_CHARS:].splitlines()):
        if any(c.isalnum() for c in line):
            return line
    return ""


def failure_message(error: str | None, output: str | None) -> str:
    """The last line of `error` with a letter or digit in it (else of `output`), masked,
    redacted and cut to MESSAGE_MAX_CHARS characters; "" when neither has one."""
    for text in (error, output):
        line = _last_meaningful_line(text or "")
        if line:
            return _message(line)
    return ""


# The same line is masked once, and lines that differ only in what is masked are redacted once.
@lru_cache(maxsize=4096)
def _message(line: str) -> str:
    return _shown(normalise(line))


@lru_cache(maxsize=4096)
def _shown(masked: str) -> str:
    return redact_text(masked, MESSAGE_MAX_CHARS)


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    """One failed attempt, as patterns are learned from it."""

    signature: str
    pool: str
    failure_class: str
    message: str  # failure_message(error, output)
    task_type: str | None = None


@dataclass(frozen=True, slots=True)
class FailurePattern:
    """How one action failed on one pool: counts, classes and messages, most common first."""

    signature: str
    pool: str
    failures: int
    classes: tuple[tuple[str, int], ...]
    top_messages: tuple[tuple[str, int], ...]
    task_types: tuple[str, ...]

    @property
    def main_class(self) -> str:
        """The most common class (of equals, the one seen first)."""
        return self.classes[0][0] if self.classes else "unknown"

    @property
    def retryable(self) -> bool:
        """Whether another attempt may end otherwise, judged by the main class."""
        return retryable(self.main_class)

    def view(self) -> dict[str, Any]:
        """The wire form (camelCase)."""
        return {
            "signature": self.signature,
            "pool": self.pool,
            "failures": self.failures,
            "classes": dict(self.classes),
            "topMessages": [{"message": m, "count": n} for m, n in self.top_messages],
            "retryable": self.retryable,
            "taskTypes": list(self.task_types),
        }


def aggregate(
    attempts: Iterable[FailedAttempt], top_messages: int = TOP_MESSAGES
) -> list[FailurePattern]:
    """One pattern per (signature, pool), most failures first (then by signature and pool).
    Attempts come newest first: of classes or messages seen equally often, the newest leads."""
    groups: dict[tuple[str, str], list[FailedAttempt]] = {}
    for attempt in attempts:
        groups.setdefault((attempt.signature, attempt.pool), []).append(attempt)
    patterns = [
        _pattern(signature, pool, group, top_messages)
        for (signature, pool), group in groups.items()
    ]
    patterns.sort(key=lambda p: (-p.failures, p.signature, p.pool))
    return patterns


def _pattern(
    signature: str, pool: str, group: Sequence[FailedAttempt], top_messages: int
) -> FailurePattern:
    # Counter.most_common keeps the order first met among equal counts: the newest first.
    classes = Counter(a.failure_class or "unknown" for a in group)
    messages = Counter(a.message for a in group if a.message)
    types = Counter(a.task_type for a in group if a.task_type)
    return FailurePattern(
        signature=signature,
        pool=pool,
        failures=len(group),
        classes=tuple(classes.most_common()),
        top_messages=tuple(messages.most_common(top_messages)),
        task_types=tuple(t for t, _ in types.most_common()),
    )


def relevant_signatures(
    signed: Iterable[tuple[str, str | None]], task_type: str, wanted: Iterable[str]
) -> set[str]:
    """Of failed attempts given as (signature, task type), the signatures whose patterns
    concern a task of `task_type` with actions of the `wanted` signatures: those wanted, and
    those of the attempts of tasks of that type."""
    found = set(wanted)
    found.update(signature for signature, of_type in signed if of_type == task_type)
    return found
