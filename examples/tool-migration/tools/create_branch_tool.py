"""Create a branch: check the name against git's ref rules and build the ref."""

from __future__ import annotations

import re
from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/create_branch"

_SHA = re.compile(r"[0-9a-f]{40}")


class CreateBranchController(Controller):
    """Check a new branch name by git's ref-name rules and build the ref to create at a commit."""

    FORBIDDEN = ("..", "@{", "//")
    FORBIDDEN_CHARS = frozenset(" ~^:?*[\\\x7f")
    RESERVED = frozenset({"HEAD", "@"})

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        name, sha = self.require(request, "name", "sha")
        problems = self._problems(name)
        if problems:
            raise BadRequest(f"invalid branch name {name!r}: {'; '.join(problems)}")
        if not _SHA.fullmatch(sha):
            raise BadRequest("sha must be 40 lowercase hexadecimal digits")
        return {"ref": f"refs/heads/{name}", "sha": sha}

    def _problems(self, name: str) -> list[str]:
        if not name:
            return ["it is empty"]
        problems = []
        if name in self.RESERVED:
            problems.append("it is reserved")
        if name.startswith(("-", "/")) or name.endswith(("/", ".", ".lock")):
            problems.append("it starts or ends badly")
        if any(part.startswith(".") for part in name.split("/")):
            problems.append("a component starts with a dot")
        found = sorted(seq for seq in self.FORBIDDEN if seq in name)
        if found:
            problems.append("it contains " + ", ".join(repr(seq) for seq in found))
        if any(char in self.FORBIDDEN_CHARS or ord(char) < 32 for char in name):
            problems.append("it contains a forbidden character")
        return problems


_SHA1 = "3f786850e387550fdab836ed7e6dc881de23001b"

TEST_CASES = [
    (
        {"name": "feature/sdk-tools", "sha": _SHA1},
        {"ref": "refs/heads/feature/sdk-tools", "sha": _SHA1},
    ),
    (
        {"name": "-x..y.lock", "sha": _SHA1},
        {"error": "invalid branch name '-x..y.lock': it starts or ends badly; it contains '..'"},
    ),
    (
        {"name": "fix/.hidden name", "sha": _SHA1},
        {
            "error": "invalid branch name 'fix/.hidden name': a component starts with a dot; "
            "it contains a forbidden character"
        },
    ),
    ({"name": "", "sha": _SHA1}, {"error": "invalid branch name '': it is empty"}),
    ({"name": "main", "sha": "HEAD"}, {"error": "sha must be 40 lowercase hexadecimal digits"}),
]
