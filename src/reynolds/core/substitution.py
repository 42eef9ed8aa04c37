"""Placeholders inside argv elements, with the rule that values never become options, and
inside the strings of an mcp action's arguments."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from reynolds.errors import ActionDenied

PLACEHOLDER = re.compile(
    r"\{(component|taskId|subtaskId|step|taskType|attempt|instruction|workspace)\}"
)
# Linux runs no program with an argument of more than 128 KiB (MAX_ARG_STRLEN, its NUL
# included); argv and environment share about 2 MiB. A request of 1 MiB that repeats
# `{component}` could otherwise build tens of megabytes for each running subtask.
MAX_ELEMENT_BYTES = 128 * 1024 - 1
MAX_ARGV_BYTES = 1024 * 1024


def substitute(
    argv: Sequence[str], values: Mapping[str, str], *, allow_option_values: bool
) -> list[str]:
    """Replace `{component}`, `{taskId}`, ... inside each element, in one pass per element.

    A substituted value that would start an element with `-` is refused (it would be read
    as an option) unless `allow_option_values` is set. Values are never split or re-read.
    """
    _check_sizes(argv, values)
    out: list[str] = []
    for element in argv:
        if "{" not in element:
            out.append(element)
            continue
        replaced = PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), element)
        if not allow_option_values and replaced.startswith("-") and not element.startswith("-"):
            raise ActionDenied(
                f"argument {replaced[:80]!r} would start with '-' after substitution and be "
                "read as an option; set allowOptionValues: true if that is intended",
                reason="option_value",
            )
        out.append(replaced)
    return out


def _check_sizes(argv: Sequence[str], values: Mapping[str, str]) -> None:
    """Refuse, before building anything, an element or an argv that substitution would make
    larger than a program may be given (UTF-8 bytes; elements without placeholders count as
    written)."""
    lengths: dict[str, int] | None = None
    total = 0
    for index, element in enumerate(argv):
        if "{" not in element:
            total += len(element)
            continue
        if lengths is None:
            lengths = {name: len(value.encode()) for name, value in values.items()}
        size = len(element.encode())
        for match in PLACEHOLDER.finditer(element):
            name = match.group(1)
            if name in lengths:
                size += lengths[name] - len(match.group(0))
        if size > MAX_ELEMENT_BYTES:
            raise ActionDenied(
                f"argument {index} would be {size:,} bytes after substitution; "
                f"a program may be given at most {MAX_ELEMENT_BYTES:,} bytes an argument",
                reason="too_long",
            )
        total += size
    if total > MAX_ARGV_BYTES:
        raise ActionDenied(
            f"the arguments would be {total:,} bytes after substitution; "
            f"at most {MAX_ARGV_BYTES:,} bytes in all",
            reason="too_long",
        )


# The most text the strings of one mcp action's arguments may hold after substitution.
MAX_ARGUMENTS_BYTES = 1024 * 1024


def substitute_arguments(arguments: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """`arguments` with `{component}`, `{taskId}`, ... replaced inside every string value, at
    any depth of dicts and lists (keys are left as written). A value may start with `-` here:
    it is a JSON value, never read as an option. ActionDenied (`too_long`) when the strings
    would hold more than MAX_ARGUMENTS_BYTES, refused before they are built."""
    lengths = {name: len(value.encode()) for name, value in values.items()}
    total = _substituted_size(arguments, lengths)
    if total > MAX_ARGUMENTS_BYTES:
        raise ActionDenied(
            f"the arguments would hold {total:,} bytes of text after substitution; "
            f"at most {MAX_ARGUMENTS_BYTES:,}",
            reason="too_long",
        )
    replaced = _replaced(dict(arguments), values)
    assert isinstance(replaced, dict)
    return replaced


def _substituted_size(value: Any, lengths: Mapping[str, int]) -> int:
    if isinstance(value, str):
        size = len(value.encode())
        if "{" in value:
            for match in PLACEHOLDER.finditer(value):
                size += lengths.get(match.group(1), len(match.group(0))) - len(match.group(0))
        return size
    if isinstance(value, Mapping):
        return sum(_substituted_size(item, lengths) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(_substituted_size(item, lengths) for item in value)
    return 0


def _replaced(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        if "{" not in value:
            return value
        return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, Mapping):
        return {key: _replaced(item, values) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_replaced(item, values) for item in value]
    return value


def fill(text: str, values: Mapping[str, str]) -> str:
    """Replace `{component}`, `{taskId}`, ... in a prompt, in one pass: a prompt is text, never
    an argv, so no option rule applies; unknown braces are left as written."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)
