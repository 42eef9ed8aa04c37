"""The audit log's pure parts: redaction of what is recorded, `since` parsing, the wire view.

Redaction errs on the side of hiding: a long random-looking string is hidden even when it is
only an id, because a key that slipped into argv must never reach the database.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from reynolds.core.models import (
    HttpAction,
    McpAction,
    McpServerCommand,
    PythonAction,
    ShellAction,
)
from reynolds.core.reporting import iso

REDACTED = "***"
DETAIL_MAX_CHARS = 500

# Option and variable names whose values are secrets (matched anywhere in the case-folded
# name). The lookahead lets a position that starts no branch be passed over at once.
_SECRET_NAME = re.compile(
    r"(?=[acpst._-])(?:pass(?:word|wd|phrase)?(?:$|[-_.])|(?:^|[-_.])(?:pwd|auth)(?:$|[-_.])|"
    r"secret|token|api[-_]?key|access[-_]?key|private[-_]?key|credential|authorization|"
    r"cookie|session[-_]?id|signature)"
)
# Options whose next element is `user:password`.
_USER_OPTIONS = frozenset({"-u", "--user", "--proxy-user"})

# Every pattern below does work in proportion to the text, whatever the text: each repeat is
# possessive (never given back) and can start only where nothing before it could have, so no
# character is read again for each position a match might start from. A scan that would read
# on to the end of the text from every letter, `?` or space took quadratic time.

# `://user:password@`: user and password are single runs, so one pass from each `://` decides;
# the scheme before it is checked by `_has_scheme` (a run that holds a letter).
_USERINFO = re.compile(r"://[^/@\s:]*+:([^/@\s]*+)(?=@)")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
# `?name=value` (or `&`, `;`). When a name is not followed by `=`, the second branch takes the
# whole run: a `?` inside it would end at the same place and fail the same way.
_QUERY_PARAM = re.compile(r"[?&;](?:([^=&#;\s]++)=([^&#;\s]*+)|[^=&#;\s]*+)")
_BEARER = re.compile(r"\b(?:bearer|basic)\s++(\S++)", re.IGNORECASE)
_HEADER_NAME = re.compile(r"([A-Za-z0-9_-]++):")
# Runs of characters keys are made of; "/", "." and "=" split paths, names and options. Only
# from the start of a run: a run shorter than 20 is then read once, not once per character.
_RUN = re.compile(r"(?<![A-Za-z0-9+_\-~])[A-Za-z0-9+_\-~]{20,}+")
_HEX = frozenset("0123456789abcdefABCDEF")
# Every rule below needs one of these, or 20 characters: most elements skip them all.
_MAYBE_SECRET = re.compile(r"[=:\s]")
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def is_secret_name(name: str) -> bool:
    """Whether an option or variable name says its value is a secret."""
    return bool(_SECRET_NAME.search(name.lstrip("-").casefold()))


def looks_random(text: str) -> bool:
    """A long string of key characters with the entropy of a generated secret."""
    n = len(text)
    if n < 20:
        return False
    counts = Counter(text)
    if not (any(c.isdigit() for c in counts) and any(c.isalpha() for c in counts)):
        return False
    entropy = -sum(k / n * math.log2(k / n) for k in counts.values())
    if n >= 32 and all(c in _HEX or c == "-" for c in counts):
        return entropy >= 3.0  # hex keys, UUID-shaped ones included
    # Random text of n characters has close to log2(n) bits each; words and names much less.
    return entropy >= 0.85 * math.log2(min(n, 64))


def redact_element(element: str) -> str:
    """One argv element with what looks secret replaced by `***`."""
    if len(element) < 20 and not _MAYBE_SECRET.search(element):
        return element
    name, sep, _value = element.partition("=")
    if sep and name and not name.startswith(("http:", "https:")) and is_secret_name(name):
        return f"{name}={REDACTED}"
    header = _HEADER_NAME.match(element)
    if header and is_secret_name(header[1]):
        value = element[header.end() :]
        if value and not value.isspace():
            return f"{header[1]}: {REDACTED}"
    text = _mask_url_passwords(element)
    text = _mask_groups(text, _QUERY_PARAM, lambda m: is_secret_name(m[1]) if m[1] else False)
    folded = text.casefold()
    if "bearer" in folded or "basic" in folded:  # a plain search first: the pattern is slower
        text = _mask_groups(text, _BEARER, lambda m: True)
    return _RUN.sub(lambda m: REDACTED if looks_random(m[0]) else m[0], text)


def _mask_url_passwords(text: str) -> str:
    if "://" not in text:
        return text
    return _mask_groups(text, _USERINFO, lambda m: _has_scheme(text, m.start()))


def _has_scheme(text: str, end: int) -> bool:
    """Whether `text[:end]` ends with a URL scheme: a run of scheme characters with a letter.
    (The runs read here end at different `://` and hold no `/`: each character is read once.)"""
    i = end - 1
    while i >= 0 and text[i] in _SCHEME_CHARS:
        if text[i].isalpha():
            return True
        i -= 1
    return False


def _mask_groups(
    text: str, pattern: re.Pattern[str], secret: Callable[[re.Match[str]], bool]
) -> str:
    """`text` with the last group of each match of `pattern` that `secret` accepts replaced."""
    pieces: list[str] = []
    done = 0
    for match in pattern.finditer(text):
        group = match.lastindex
        if group is None or match[group] is None or not secret(match):
            continue
        pieces.append(text[done : match.start(group)])
        pieces.append(REDACTED)
        done = match.end(group)
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """argv as it may be recorded: secret values, and values of secret options, hidden."""
    out: list[str] = []
    hide_next = user_next = False
    for element in argv:
        if hide_next:
            out.append(REDACTED)
        elif user_next:
            user, sep, _ = element.partition(":")
            out.append(f"{user}:{REDACTED}" if sep else redact_element(element))
        else:
            out.append(redact_element(element))
        hide_next = element.startswith("-") and "=" not in element and is_secret_name(element)
        user_next = element in _USER_OPTIONS
    return out


def describe_action(action: object, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The audit columns that say what an action was asked to do: argv (redacted; `argv`
    is the shell action's after substitution), cwd and the names, never the values, of its
    environment variables. Python kwargs, request bodies and prompts are left out."""
    if isinstance(action, ShellAction):
        return {
            "argv": redact_argv(action.argv if argv is None else argv),
            "cwd": action.cwd,
            "env_names": sorted(action.env) if action.env else None,
        }
    if isinstance(action, PythonAction):
        return {"argv": [action.callable], "cwd": None, "env_names": None}
    if isinstance(action, HttpAction):
        return {"argv": [action.method, redact_element(action.url)], "cwd": None, "env_names": None}
    if isinstance(action, McpAction):
        server = action.server
        target = (
            [server.command, *server.args] if isinstance(server, McpServerCommand) else [server.url]
        )
        return {"argv": [*redact_argv(target), action.tool], "cwd": None, "env_names": None}
    return {"argv": None, "cwd": None, "env_names": None}


def redact_text(text: str, limit: int = DETAIL_MAX_CHARS) -> str:
    """A message (a denial's reason, say) word by word, cut to `limit` characters."""
    words = []
    for word in text[: limit * 2].split(" "):
        core = word.strip("'\"`,;()[]")
        words.append(word.replace(core, redact_element(core)) if core else word)
    out = " ".join(words)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def parse_since(text: str, now: float) -> float:
    """`10m`, `2h`, `1d` (before `now`), an ISO-8601 time (UTC unless it says otherwise) or
    epoch seconds, as epoch seconds. ValueError names what was not understood."""
    relative = _RELATIVE.match(text)
    if relative:
        return now - float(relative[1]) * _UNITS_S[relative[2]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (30s, 10m, 2h, 1d, 1w) nor an ISO-8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def audit_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """One audit row as it crosses the wire (camelCase, ISO-8601 UTC)."""
    return {
        "seq": row.get("seq"),
        "at": iso(row.get("at")),
        "kind": row.get("kind"),
        "tokenName": row.get("token_name"),
        "tool": row.get("tool"),
        "actionKind": row.get("action"),
        "pool": row.get("pool"),
        "taskId": row.get("task_id"),
        "subtaskId": row.get("subtask_id"),
        "attempt": row.get("attempt"),
        "argv": row.get("argv"),
        "cwd": row.get("cwd"),
        "envNames": row.get("env_names"),
        "decision": row.get("decision"),
        "outcome": row.get("outcome"),
        "detail": row.get("detail"),
        "exitCode": row.get("exit_code"),
        "durationSeconds": row.get("duration_s"),
        "outputBytes": row.get("output_bytes"),
    }
