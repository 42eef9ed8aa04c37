"""What every value a caller sends must be, whatever field it sits in.

Strings go on to system calls (argv, environment, paths) and into the database: NUL ends a C
string and PostgreSQL text cannot hold one, and a lone surrogate cannot be encoded as UTF-8 at
all. Numbers are stored as JSON: NaN and the infinities are not JSON, and an integer past 64
bits is beyond what most readers of that JSON (and Python's own int-to-text limit, at
thousands of digits) can take. These rules hold in every string, dict keys included, at any
depth: in free-form fields (`kwargs`, an http action's `json`) as much as in typed ones. Each
offending place is named by its path.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

NUL_REASON = "must not contain NUL (\\u0000)"
SURROGATE_REASON = "must be valid Unicode (a lone surrogate is not a character)"
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
INT_REASON = f"must be an integer from {INT_MIN} to {INT_MAX}"
# pydantic's own words for a typed float field, so both read the same.
FINITE_REASON = "Input should be a finite number"
# A body full of bad values names the first ones, not a hundred thousand.
MAX_REPORTED = 100
# 64-bit integers have at most 19 digits: a longer run of digits is worth a closer look.
_LONG_DIGITS = re.compile(r"[0-9]{19}")

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One place that breaks the rules: its path, why, and what is there."""

    loc: Loc
    reason: str
    value: Any


def text_problem(text: str) -> str | None:
    """Why `text` may not go on to a system call or the database, or None."""
    if "\x00" in text:
        return NUL_REASON
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return SURROGATE_REASON
    return None


def clean_text(text: str) -> bool:
    """Whether `text` may go on to a system call or the database."""
    return text_problem(text) is None


def printable(text: str) -> str:
    """`text` with what may not be stored spelt as escapes, to name it in a message or a
    record."""
    if clean_text(text):
        return text
    escaped = text.replace("\x00", "\\u0000")
    return escaped.encode("utf-8", "backslashreplace").decode("utf-8")


def encodable(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD, so that it encodes as UTF-8: what
    an action printed, or a decoder of the server's choosing made of it, is kept, not refused."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def problems(value: Any) -> list[Problem]:
    """Where JSON-like `value` breaks the rules, in document order (at most MAX_REPORTED)."""
    if _plainly_clean(value):
        return []
    return list(islice(_walk(value), MAX_REPORTED))


def _plainly_clean(value: Any) -> bool:
    """The usual answer, fast: serialised in C, the text holds no escaped NUL, no long run of
    digits, and encodes as UTF-8; json itself refuses NaN and the infinities. A look-alike in
    some string (a backslash and `u0000`, a long number written as text) makes this say no,
    and the walk then finds nothing."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=_opaque)
        text.encode("utf-8")
    except (TypeError, ValueError):  # UnicodeEncodeError included; a key json cannot write
        return False
    return "\\u0000" not in text and _LONG_DIGITS.search(text) is None


def _opaque(value: Any) -> None:
    # Objects that are not JSON (a model already validated, a datetime) are not walked.
    return None


def _scalar_problem(item: Any) -> str | None:
    if isinstance(item, str):
        return text_problem(item)
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return None if INT_MIN <= item <= INT_MAX else INT_REASON
    if isinstance(item, float):
        return None if math.isfinite(item) else FINITE_REASON
    return None


def _walk(value: Any) -> Iterator[Problem]:
    stack: list[tuple[Loc, Any]] = [((), value)]
    seen: set[int] = set()
    while stack:
        loc, item = stack.pop()
        if not isinstance(item, dict | list | tuple):
            reason = _scalar_problem(item)
            if reason is not None:
                yield Problem(loc, reason, item)
            continue
        if id(item) in seen:
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
