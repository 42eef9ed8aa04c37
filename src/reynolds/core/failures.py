"""Failure classes, learned from what failed attempts said: which failures are worth retrying.

An attempt that failed is put in one class — timeout, connection, authentication, not_found,
validation, permission, resource, unknown — from its reason, exit code, HTTP status and the
words of its error. Authentication, validation, not_found and permission failures do not go
away on retry, so such an attempt is not retried.
"""

from __future__ import annotations

import re

CLASSES = (
    "timeout",
    "connection",
    "authentication",
    "not_found",
    "validation",
    "permission",
    "resource",
    "unknown",
)
NOT_RETRYABLE = frozenset({"authentication", "validation", "not_found", "permission"})

_BY_STATUS = {
    400: "validation",
    401: "authentication",
    403: "permission",
    404: "not_found",
    405: "validation",
    408: "timeout",
    409: "validation",
    410: "not_found",
    413: "resource",
    422: "validation",
    429: "resource",
    502: "connection",
    503: "resource",
    504: "timeout",
    507: "resource",
}
# Searched in order over the error's text, lower-cased: the first class that matches wins.
_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("timeout", re.compile(r"timed? ?out|timeout|deadline exceeded")),
    (
        "connection",
        re.compile(
            r"connection (?:refused|reset|aborted|closed)|could not connect|couldn't connect|"
            r"unreachable|name or service not known|temporary failure in name resolution|"
            r"no route to host|broken pipe|econnrefused|econnreset|network is down"
        ),
    ),
    (
        "authentication",
        re.compile(
            r"unauthori[sz]ed|authentication failed|not authenticated|"
            r"invalid (?:api )?(?:key|token)|bad credentials|login failed|"
            r"password authentication failed|access token"
        ),
    ),
    (
        "permission",
        re.compile(r"permission denied|forbidden|not permitted|eacces|eperm|access denied"),
    ),
    (
        "not_found",
        re.compile(
            r"not found|no such file|no such|does not exist|doesn't exist|enoent|"
            r"unknown (?:host|command)"
        ),
    ),
    (
        "resource",
        re.compile(
            r"out of memory|cannot allocate|no space left|disk full|"
            r"too many (?:open files|requests)|resource temporarily unavailable|"
            r"rate limit|quota|overloaded|killed"
        ),
    ),
    (
        "validation",
        re.compile(
            r"invalid|validation|syntax error|usage:|unrecognized (?:option|argument)|"
            r"unknown option|bad request|malformed|expected [^\n]{0,200} got|must be"
        ),
    ),
)  # fmt: skip


def classify(
    reason: str | None,
    exit_code: int | None = None,
    error: str = "",
    http_status: int | None = None,
) -> str:
    """The class of a failed attempt."""
    if reason == "timeout":
        return "timeout"
    if reason == "denied":
        return "permission"
    if reason == "not_found" or exit_code == 127:
        return "not_found"
    if exit_code == 126:
        return "permission"
    if http_status is not None and http_status in _BY_STATUS:
        return _BY_STATUS[http_status]
    if exit_code is not None and exit_code in (-9, 137):
        return "resource"  # SIGKILL: the memory limit or the OOM killer, most often
    text = error[-4096:].lower()
    for name, pattern in _WORDS:
        if pattern.search(text):
            return name
    return "unknown"


def retryable(failure_class: str) -> bool:
    """Whether another attempt may end otherwise."""
    return failure_class not in NOT_RETRYABLE
