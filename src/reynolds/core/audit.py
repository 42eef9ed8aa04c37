"""The audit log's pure parts: what is recorded of an action (redacted and bounded), `since`
parsing, page cursors, the wire view. Redaction itself is in redaction.py."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from reynolds.core.models import (
    HttpAction,
    McpAction,
    PythonAction,
    ShellAction,
)
from reynolds.core.redaction import (
    DETAIL_MAX_CHARS,
    REDACTED,
    drop_split_secret,
    is_secret_name,
    looks_random,
    redact_after,
    redact_argv,
    redact_element,
    redact_text,
)
from reynolds.core.reporting import iso

__all__ = [
    "ARGV_MAX_BYTES",
    "DETAIL_MAX_CHARS",
    "ELEMENT_MAX_BYTES",
    "ENV_NAMES_MAX_BYTES",
    "NAME_MAX_BYTES",
    "PAGE_DEFAULT",
    "PAGE_MAX",
    "REDACTED",
    "audit_view",
    "cheap_to_describe",
    "decode_cursor",
    "describe_action",
    "encode_cursor",
    "is_secret_name",
    "looks_random",
    "parse_since",
    "recorded_argv",
    "redact_argv",
    "redact_element",
    "redact_text",
]

# What the audit keeps of one attempt, in UTF-8 bytes, cut marks included.
ELEMENT_MAX_BYTES = 4096  # each argv element, and the cwd
ARGV_MAX_BYTES = 65536  # the whole argv
NAME_MAX_BYTES = 256  # each environment variable name
ENV_NAMES_MAX_BYTES = 4096  # all of them
_LIST_MARK_BYTES = 32  # always kept free for a last "…[K more elements cut]"
_CUT_MIN_TEXT_BYTES = 32  # a cut element shows at least this much, or is left out
# Describing an action with no more text than this takes well under a millisecond, whatever the
# text (masking takes up to ~0.2 µs a character; see benchmarks/audit_masking.py).
CHEAP_DESCRIBE_MAX_CHARS = 4096
CHEAP_DESCRIBE_MAX_NAMES = 64
PAGE_DEFAULT, PAGE_MAX = 100, 1000  # records on one page of the log
CURSOR_MAX_CHARS = 128
_CURSOR_VERSION = "1"
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def describe_action(
    action: object, argv: Sequence[str] | None = None, secret_names: Sequence[str] = ()
) -> dict[str, Any]:
    """The audit columns that say what an action was asked to do: argv (redacted; `argv`
    is the shell action's after substitution), cwd and the names, never the values, of its
    environment variables (its pool's `secret_names` among them). Python kwargs, request
    bodies and prompts are left out. Each is bounded (ELEMENT_MAX_BYTES, ARGV_MAX_BYTES, ...),
    what is cut marked as such."""
    if isinstance(action, ShellAction):
        names = sorted({*action.env, *secret_names})
        return {
            "argv": recorded_argv(action.argv if argv is None else argv),
            "cwd": None if action.cwd is None else _bounded(action.cwd, ELEMENT_MAX_BYTES, _same),
            "env_names": _recorded_names(names) if names else None,
        }
    if isinstance(action, PythonAction):
        return {
            "argv": recorded_argv([action.callable], redact=False),
            "cwd": None,
            "env_names": None,
        }
    if isinstance(action, HttpAction):
        return {
            "argv": [action.method, *recorded_argv([action.url])],
            "cwd": None,
            "env_names": None,
        }
    if isinstance(action, McpAction):
        # The server's name and the tool; arguments are left out, like python kwargs.
        return {
            "argv": recorded_argv([action.server, action.tool], redact=False),
            "cwd": None,
            "env_names": None,
        }
    return {"argv": None, "cwd": None, "env_names": None}


def cheap_to_describe(action: object, argv: Sequence[str] | None = None) -> bool:
    """Whether describe_action(action, argv) is cheap enough for the event loop: the text it
    reads (argv, cwd, environment names; the server and URL of mcp and http) is short."""
    if isinstance(action, ShellAction):
        chars = sum(map(len, action.argv if argv is None else argv)) + len(action.cwd or "")
        if len(action.env) > CHEAP_DESCRIBE_MAX_NAMES:
            return False
        return chars + sum(map(len, action.env)) <= CHEAP_DESCRIBE_MAX_CHARS
    if isinstance(action, HttpAction):
        return len(action.url) <= CHEAP_DESCRIBE_MAX_CHARS
    return True


def recorded_argv(argv: Sequence[str], *, redact: bool = True) -> list[str]:
    """argv as the audit keeps it: each element redacted (unless `redact` is false) in at most
    ELEMENT_MAX_BYTES, its beginning and `…[cut from N bytes]` when longer (N: its whole
    length); and the list in at most ARGV_MAX_BYTES, the elements that no longer fit left out
    and counted by a last element `…[K more elements cut]`. The work is bounded too: what is
    left out is not read."""
    short = sum(map(len, argv)) <= ELEMENT_MAX_BYTES
    if redact and short and "".join(argv).isascii():
        # The usual command line, short as a whole: redacted at once, it is only checked.
        redacted = redact_argv(argv)
        if sum(map(len, redacted)) <= ELEMENT_MAX_BYTES:
            return redacted

    def shown(index: int, element: str, room: int) -> str | None:
        if not redact:
            return _bounded(element, room, _same)
        previous = argv[index - 1] if index else None
        return _bounded(element, room, lambda text: redact_after(previous, text))

    return _fit(argv, ELEMENT_MAX_BYTES, ARGV_MAX_BYTES, "elements", shown)


def _recorded_names(names: Sequence[str]) -> list[str]:
    return _fit(
        names,
        NAME_MAX_BYTES,
        ENV_NAMES_MAX_BYTES,
        "names",
        lambda _index, name, room: _bounded(name, room, _same),
    )


def _fit(
    items: Sequence[str],
    item_max_bytes: int,
    total_max_bytes: int,
    noun: str,
    shown: Callable[[int, str, int], str | None],
) -> list[str]:
    """The items as `shown(index, item, room)` makes each in at most `room` bytes (None: no
    useful part fits), while they fit in `total_max_bytes` with room left for the count of
    those that do not, `…[K more elements cut]`."""
    out: list[str] = []
    used = 0
    for index, item in enumerate(items):
        room = min(item_max_bytes, total_max_bytes - _LIST_MARK_BYTES - used)
        text = shown(index, item, room)
        if text is None:
            out.append(f"…[{len(items) - index} more {noun} cut]")
            break
        out.append(text)
        used += _utf8_len(text)
    return out


def _bounded(text: str, room: int, redact: Callable[[str], str]) -> str | None:
    """`text` redacted in at most `room` bytes: whole, or its beginning and a cut mark; None
    when there is no room for a useful part of it."""
    size = _utf8_len(text)
    if size <= room:
        shown = redact(text)
        if shown is text or _utf8_len(shown) <= room:
            return shown
        return _cut(shown, size, room, _same)  # `***` lengthened it: cut what is redacted
    return _cut(text, size, room, redact)


def _cut(text: str, size: int, room: int, redact: Callable[[str], str]) -> str | None:
    """The beginning of `text` (`size` bytes) redacted, then `…[cut from {size} bytes]`, in
    at most `room` bytes. Redacting after the cut drops what a rule could no longer
    recognise in the part kept (see drop_split_secret)."""
    mark = f"…[cut from {size} bytes]"
    keep = room - _utf8_len(mark)
    if keep < _CUT_MIN_TEXT_BYTES:
        return None
    prefix = _cut_utf8(text, keep)
    if redact is not _same:
        prefix = _cut_utf8(redact(drop_split_secret(prefix, text[len(prefix)])), keep)
    return prefix + mark


def _same(text: str) -> str:
    return text


def _utf8_len(text: str) -> int:
    # isascii() is O(1) in CPython: the long elements are usually ASCII and never encoded.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _cut_utf8(text: str, max_bytes: int) -> str:
    """The longest beginning of `text` in at most `max_bytes` UTF-8 bytes."""
    head = text[:max_bytes]
    if head.isascii():
        return head
    data = head.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return head
    end = max_bytes
    while end > 0 and (data[end] & 0xC0) == 0x80:  # a continuation byte: its character is split
        end -= 1
    return data[:end].decode("utf-8", "surrogatepass")


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


def encode_cursor(row: Mapping[str, Any]) -> str:
    """An opaque cursor for the records before `row` (its time, then its sequence)."""
    text = f"{_CURSOR_VERSION}:{float(row['at']).hex()}:{int(row['seq'])}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    """The `(at, seq)` position encode_cursor made `cursor` of; ValueError if it made none."""
    invalid = ValueError("not a cursor this server gave out (use nextCursor as it is)")
    if not 0 < len(cursor) <= CURSOR_MAX_CHARS or not cursor.isascii():
        raise invalid
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        version, at_hex, seq_text = text.split(":")
        at, seq = float.fromhex(at_hex), int(seq_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid from None
    if version != _CURSOR_VERSION or not math.isfinite(at) or seq < 0:
        raise invalid
    return at, seq


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
