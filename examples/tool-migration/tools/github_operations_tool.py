"""Small GitHub helpers: parse a URL, normalise a ref, build a compare link."""

from __future__ import annotations

import re
from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/github_operations"

_URL = re.compile(
    r"^https://github\.com/(?P<owner>[A-Za-z0-9-]+)/(?P<repo>[A-Za-z0-9._-]+?)(?:\.git)?"
    r"(?:/(?P<kind>issues|pull|discussions)/(?P<number>[0-9]+))?/?$"
)
_KINDS = {"pull": "pull_request", "issues": "issue", "discussions": "discussion"}


class GitHubOperationsController(Controller):
    """GitHub helpers chosen by `operation`: parse_url, normalize_ref or compare_url."""

    OPERATIONS = ("compare_url", "normalize_ref", "parse_url")
    REF_PREFIXES = ("refs/heads/", "refs/tags/", "origin/")

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        operation = self.require(request, "operation")
        if operation == "parse_url":
            return self._parse_url(self.require(request, "url"))
        if operation == "normalize_ref":
            return {"ref": self._normalize_ref(self.require(request, "ref"))}
        if operation == "compare_url":
            repository, base, head = self.require(request, "repository", "base", "head")
            base, head = self._normalize_ref(base), self._normalize_ref(head)
            return {"url": f"https://github.com/{repository}/compare/{base}...{head}"}
        raise BadRequest(
            f"unknown operation {operation!r}; expected one of {', '.join(self.OPERATIONS)}"
        )

    def _parse_url(self, url: str) -> dict[str, Any]:
        match = _URL.match(url)
        if not match:
            raise BadRequest(f"not a GitHub URL: {url!r}")
        parsed: dict[str, Any] = {
            "owner": match["owner"],
            "repo": match["repo"],
            "kind": _KINDS.get(match["kind"] or "", "repository"),
        }
        if match["number"]:
            parsed["number"] = int(match["number"])
        return parsed

    def _normalize_ref(self, ref: str) -> str:
        for prefix in self.REF_PREFIXES:
            if ref.startswith(prefix):
                return ref[len(prefix) :]
        return ref


TEST_CASES = [
    (
        {"operation": "parse_url", "url": "https://github.com/acme/rocket.git"},
        {"owner": "acme", "repo": "rocket", "kind": "repository"},
    ),
    (
        {"operation": "parse_url", "url": "https://github.com/acme/rocket/pull/42/"},
        {"owner": "acme", "repo": "rocket", "kind": "pull_request", "number": 42},
    ),
    (
        {"operation": "normalize_ref", "ref": "refs/heads/feature/x"},
        {"ref": "feature/x"},
    ),
    (
        {
            "operation": "compare_url",
            "repository": "acme/rocket",
            "base": "refs/tags/v1.0",
            "head": "origin/main",
        },
        {"url": "https://github.com/acme/rocket/compare/v1.0...main"},
    ),
    (
        {"operation": "parse_url", "url": "https://gitlab.com/acme/rocket"},
        {"error": "not a GitHub URL: 'https://gitlab.com/acme/rocket'"},
    ),
    (
        {"operation": "delete_repo"},
        {
            "error": "unknown operation 'delete_repo'; expected one of "
            "compare_url, normalize_ref, parse_url"
        },
    ),
]
