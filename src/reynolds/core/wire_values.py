"""What every value a caller sends must be, whatever field it sits in.

Strings go on to system calls (argv, environment, paths) and into the database: NUL ends a C
string, and PostgreSQL text cannot hold one. So NUL is refused in every string, dict keys
included, at any depth: in free-form fields (`kwargs`, an http action's `json`) as much as in
typed ones. Each offending place is named by its path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

NUL_REASON = "must not contain NUL (\\u0000)"
# A body full of bad strings names the first ones, not a hundred thousand.
MAX_REPORTED = 100

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One place that breaks the rules: its path, why, and what is there."""

    loc: Loc
    reason: str
    value: Any


def clean_text(text: str) -> bool:
    """Whether `text` may go on to a system call or the database."""
    return "\x00" not in text


def printable(text: str) -> str:
    """`text` with what may not be stored spelt as escapes, to name it in a message."""
    return text if clean_text(text) else text.replace("\x00", "\\u0000")


def problems(value: Any) -> list[Problem]:
    """Where JSON-like `value` breaks the rules, in document order (at most MAX_REPORTED)."""
    if _plainly_clean(value):
        return []
    return list(islice(_walk(value), MAX_REPORTED))


def _plainly_clean(value: Any) -> bool:
    """The usual answer, fast: serialised in C, the text holds no escaped NUL. A backslash
    followed by `u0000` in some string makes this say no, and the walk then finds nothing."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=_opaque)
    except (TypeError, ValueError):  # a key json cannot write, a cycle: walk to be sure
        return False
    return "\\u0000" not in text


def _opaque(value: Any) -> None:
    # Objects that are not JSON (a model already validated, a datetime) are not walked.
    return None


def _walk(value: Any) -> Iterator[Problem]:
    stack: list[tuple[Loc, Any]] = [((), value)]
    seen: set[int] = set()
    while stack:
        loc, item = stack.pop()
        if isinstance(item, str):
            if not clean_text(item):
                yield Problem(loc, NUL_REASON, item)
            continue
        if not isinstance(item, dict | list | tuple) or id(item) in seen:
            continue
        seen.add(id(item))
        children: list[tuple[Loc, Any]] = []
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and not clean_text(key):
                    children.append(((*loc, printable(key)), key))
                else:
                    children.append(((*loc, key), child))
        else:
            children = [((*loc, i), child) for i, child in enumerate(item)]
        stack.extend(reversed(children))
