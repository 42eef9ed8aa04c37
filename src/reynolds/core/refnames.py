"""Branch names as git accepts them (pure), so a bad one is refused with the request."""

from __future__ import annotations

import re

# What `git check-ref-format --branch` refuses: control characters, space, ~ ^ : ? * [ \,
# "..", "@{", "//", a component starting with "." or ending with ".lock", a trailing "." or
# "/", a leading "-" or "/", the name "@" and the name HEAD.
_REF_BAD = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


def branch_problem(name: str) -> str | None:
    """Why `name` cannot be a branch (as `git check-ref-format --branch` judges), or None."""
    if not name or len(name) > 200:
        return "must be 1 to 200 characters"
    if name in ("@", "HEAD") or name.startswith(("-", "/")) or name.endswith(("/", ".")):
        return "is not a branch name git accepts"
    if _REF_BAD.search(name):
        return "holds characters or sequences git refuses in branch names"
    for part in name.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            return "has a component starting with '.' or ending with '.lock'"
    return None
