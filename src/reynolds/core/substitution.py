"""Placeholders inside argv elements, with the rule that values never become options."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from reynolds.errors import ActionDenied

PLACEHOLDER = re.compile(r"\{(component|taskId|subtaskId|step|taskType|attempt)\}")


def substitute(
    argv: Sequence[str], values: Mapping[str, str], *, allow_option_values: bool
) -> list[str]:
    """Replace `{component}`, `{taskId}`, ... inside each element, in one pass per element.

    A substituted value that would start an element with `-` is refused (it would be read
    as an option) unless `allow_option_values` is set. Values are never split or re-read.
    """
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
