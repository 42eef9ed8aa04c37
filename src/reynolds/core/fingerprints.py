"""Signatures of what an attempt did and fingerprints of how it ended, for loop detection.

A signature names the call: the pool, the action's kind and its arguments after substitution.
A fingerprint names the outcome: whether it succeeded, the exit code, and the output and error
with what changes between two runs of the same failure masked — timestamps, UUIDs, hex ids,
memory addresses, temporary paths, durations, process ids and ports — so that the same failure
twice has the same fingerprint. Other small integers are kept ("attempt 1" and "attempt 2"
differ), so an action that reports its progress is not mistaken for one that makes none.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# How much of the end of each stream is fingerprinted: failures say what they are at the end,
# and a bounded text keeps the masking cheap.
TAIL_CHARS = 4096

_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    # ISO-8601 and common log timestamps, dates, times of day.
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
        ),
        "<time>",
    ),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<time>"),
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<uuid>",
    ),
    (re.compile(r"\b0x[0-9a-fA-F]{4,}\b"), "<addr>"),
    # Numbers that name a process, thread or port, however short: they change on every run.
    (re.compile(r"\b(pid|tid|process|thread|port)\b([\s:=#]*)\d+", re.IGNORECASE), r"\1\2<num>"),
    # Temporary paths: /tmp/..., /var/tmp/..., /var/folders/..., /dev/shm/...
    (re.compile(r"(?:/var/tmp|/tmp|/var/folders|/dev/shm)/[^\s'\":,;)\]]*"), "<tmp>"),
    # Hex ids of 8 or more characters holding a digit and a letter (commit ids, container ids).
    (re.compile(r"\b(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"), "<hex>"),
    # Epoch seconds or milliseconds, and other long numbers (pids, ports, byte counts).
    (re.compile(r"\b\d{5,}(?:\.\d+)?\b"), "<num>"),
    # Durations: 1.23s, 45 ms, 0.5 seconds.
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|µs|us|ns|s|sec|secs|seconds?)\b"), "<duration>"),
)  # fmt: skip


def normalise(text: str) -> str:
    """`text`'s last TAIL_CHARS characters with what varies between identical failures masked."""
    tail = text[-TAIL_CHARS:]
    for pattern, mask in _MASKS:
        tail = pattern.sub(mask, tail)
    return " ".join(tail.split())


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def signature(pool: str, kind: str, arguments: Sequence[str] | str) -> str:
    """What an attempt called: the pool, the action's kind and its substituted arguments."""
    args = arguments if isinstance(arguments, str) else json.dumps(list(arguments))
    return _digest("sig", pool, kind, args)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended, as loop detection sees it."""

    ok: bool
    fingerprint: str  # the whole outcome: status, exit code, output and error
    output: str  # the output's own fingerprint ("" when there was none)
    reason: str | None = None


def outcome(
    ok: bool, exit_code: int | None, output: str, error: str, reason: str | None
) -> Outcome:
    """The fingerprinted outcome of an attempt."""
    out = normalise(output)
    err = normalise(error)
    whole = _digest("out", str(ok), str(exit_code), reason or "", out, err)
    return Outcome(ok, whole, _digest("o", out) if out else "", reason)


# What makes two submissions the same task: the work, not how it was described or scheduled.
_TASK_KEYS = ("type", "components", "steps", "subtasks", "decompose")


def task_fingerprint(spec: Mapping[str, Any]) -> str:
    """The task's input as submitted (its camelCase JSON), canonically: type, components,
    steps or subtasks; not its description, priority, deadline or strategy."""
    canonical = json.dumps(
        {key: spec.get(key) for key in _TASK_KEYS}, sort_keys=True, separators=(",", ":")
    )
    return _digest("task", canonical)


def task_outcome(failures: Iterable[tuple[str, str, str]]) -> str:
    """How a task failed: each unsucceeded subtask's id, status and outcome fingerprint."""
    return _digest("ended", *("|".join(parts) for parts in sorted(failures)))
