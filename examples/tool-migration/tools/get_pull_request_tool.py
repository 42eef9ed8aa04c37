"""Summarise a pull request: its size, the folders it touches and the review decision."""

from __future__ import annotations

import posixpath
from typing import Any

from tools._controller import BadRequest, Controller

ROUTE = "/tools/get_pull_request"


class GetPullRequestController(Controller):
    """Summarise a pull request: size label, folders touched and the reviewers' decision."""

    SIZE_LABELS = ((10, "XS"), (50, "S"), (250, "M"), (1000, "L"))

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        pull = self.require(request, "pullRequest")
        files = pull.get("files", [])
        if any(f["additions"] < 0 or f["deletions"] < 0 for f in files):
            raise BadRequest("additions and deletions cannot be negative")
        additions = sum(f["additions"] for f in files)
        deletions = sum(f["deletions"] for f in files)
        return {
            "number": pull["number"],
            "title": pull["title"],
            "changedFiles": len(files),
            "additions": additions,
            "deletions": deletions,
            "size": self._size(additions + deletions),
            "folders": sorted({posixpath.dirname(f["path"]) or "." for f in files}),
            "reviewDecision": self._decision(pull.get("reviews", [])),
        }

    def _size(self, lines: int) -> str:
        for limit, label in self.SIZE_LABELS:
            if lines <= limit:
                return label
        return "XL"

    @staticmethod
    def _decision(reviews: list[dict[str, str]]) -> str:
        latest: dict[str, str] = {}
        for review in reviews:  # oldest first; comments do not change a decision
            if review["state"] in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
                latest[review["author"]] = review["state"]
        states = set(latest.values())
        if "CHANGES_REQUESTED" in states:
            return "changes_requested"
        if "APPROVED" in states:
            return "approved"
        return "review_required"


TEST_CASES = [
    (
        {
            "pullRequest": {
                "number": 7,
                "title": "Faster launch",
                "files": [
                    {"path": "src/engine.py", "additions": 30, "deletions": 12},
                    {"path": "src/fuel.py", "additions": 5, "deletions": 0},
                    {"path": "README.md", "additions": 3, "deletions": 1},
                ],
                "reviews": [
                    {"author": "ann", "state": "CHANGES_REQUESTED"},
                    {"author": "bob", "state": "APPROVED"},
                    {"author": "ann", "state": "COMMENTED"},
                    {"author": "ann", "state": "APPROVED"},
                ],
            }
        },
        {
            "number": 7,
            "title": "Faster launch",
            "changedFiles": 3,
            "additions": 38,
            "deletions": 13,
            "size": "M",
            "folders": [".", "src"],
            "reviewDecision": "approved",
        },
    ),
    (
        {
            "pullRequest": {
                "number": 8,
                "title": "Typo",
                "files": [{"path": "docs/a.md", "additions": 1, "deletions": 1}],
                "reviews": [{"author": "ann", "state": "COMMENTED"}],
            }
        },
        {
            "number": 8,
            "title": "Typo",
            "changedFiles": 1,
            "additions": 1,
            "deletions": 1,
            "size": "XS",
            "folders": ["docs"],
            "reviewDecision": "review_required",
        },
    ),
    (
        {
            "pullRequest": {
                "number": 9,
                "title": "Bad",
                "files": [{"path": "a", "additions": -1, "deletions": 0}],
            }
        },
        {"error": "additions and deletions cannot be negative"},
    ),
]
