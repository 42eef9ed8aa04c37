"""Downstreams: what an action depends on beyond its pool — an executable, an HTTP host, an MCP
server, the LLM endpoint — named so that a breaker and a limiter can be kept for each, and
whether an attempt's answer said that its downstream is overloaded.

A python callable runs in Reynolds' own workers: it has no downstream of its own.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from reynolds.core.models import Action, HttpAction, LlmAction, McpAction, ShellAction

# HTTP answers that mean "not now": too many requests, service unavailable.
OVERLOAD_STATUS = frozenset({429, 503})
# What an MCP server's error result says when it is overloaded.
_MCP_OVERLOAD = re.compile(
    r"overload|rate.?limit|too many requests|\b429\b|\b503\b|try again later|at capacity",
    re.IGNORECASE,
)
# The longest hold a Retry-After may ask for; a larger one is read as this.
MAX_RETRY_AFTER_S = 3600.0


def downstream_of(action: Action | None) -> str | None:
    """The name of what `action` depends on: `exec:NAME`, `http:SCHEME://HOST:PORT`,
    `mcp:SERVER` or `llm:MODEL`; None for a python callable."""
    if isinstance(action, ShellAction):
        return "exec:" + posixpath.basename(action.argv[0].rstrip("/"))
    if isinstance(action, HttpAction):
        return "http:" + _origin(action.url)
    if isinstance(action, McpAction):
        return "mcp:" + action.server
    if isinstance(action, LlmAction):
        return "llm:" + (action.model or "default")
    return None


def _origin(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # refused on input; kept for a URL stored by an older version
        return "invalid-url"
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or (443 if scheme == "https" else 80)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


@dataclass(frozen=True, slots=True)
class Overload:
    """The downstream said "not now"; `retry_after_s` when it said for how long."""

    signal: str
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class OverloadRule:
    """How an executable says it is overloaded: exit codes, or a pattern in its output or
    error (regular expressions, searched case-insensitively)."""

    exit_codes: frozenset[int] = frozenset()
    patterns: tuple[str, ...] = ()


def overload(
    action: Action | None,
    *,
    exit_code: int | None,
    output: str,
    error: str,
    retry_after_s: float | None = None,
    rules: Mapping[str, OverloadRule] | None = None,
) -> Overload | None:
    """Whether a failed attempt's answer says its downstream is overloaded."""
    if isinstance(action, HttpAction | LlmAction):
        if exit_code in OVERLOAD_STATUS:
            return Overload(f"HTTP {exit_code}", retry_after_s)
        return None
    if isinstance(action, McpAction):
        found = _MCP_OVERLOAD.search(error[-4096:])
        return Overload(f"MCP error: {found.group(0)}") if found else None
    if isinstance(action, ShellAction) and rules:
        rule = rules.get(posixpath.basename(action.argv[0].rstrip("/")))
        if rule is None:
            return None
        if exit_code is not None and exit_code in rule.exit_codes:
            return Overload(f"exit code {exit_code}")
        return _pattern_signal(rule.patterns, output[-4096:], error[-4096:])
    return None


def _pattern_signal(patterns: Sequence[str], output: str, error: str) -> Overload | None:
    for pattern in patterns:
        for text in (error, output):
            if re.search(pattern, text, re.IGNORECASE):
                return Overload(f"output matches {pattern!r}")
    return None


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date); None when absent or
    unreadable, never negative, at most MAX_RETRY_AFTER_S."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
